"""A run of your own, kept apart from the committed results: `make table1` (any notebook target)
writes to results/local/<preset>/ (git-ignored), never over results/<preset>/. Then

    python -m samrepro.study.local compare table1     (make compare NOTEBOOK=table1)
    python -m samrepro.study.local promote table1     (make promote NOTEBOOK=table1)

`compare` sets the local results against the committed ones by samrepro.study.verify's rule
(docs/method.md §7: a claim cell contradicts the committed one only when the two decide opposite
ways or their intervals do not overlap); `promote` copies the local files over the committed
ones and records in results/<preset>/CHANGES.md how each claim's verdict moved, after which
`make readme` rewrites the README's claim table from them.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from samrepro.errors import UserError
from samrepro.io.files import write_text
from samrepro.study.settings import results_dir
from samrepro.study.verify import compare as verify_compare
from samrepro.study.verify import read_results

LOCAL = "local"  # results/local/<preset>/: runs of your own


def paths(name: str, preset: str = "embedded", root: Path | None = None) -> tuple[Path, Path]:
    """(the local results JSON, the committed one) of notebook `name`."""
    root = Path(root or results_dir())
    return root / LOCAL / preset / f"{name}.json", root / preset / f"{name}.json"


def _read(path: Path, what: str) -> dict:
    if not path.is_file():
        hint = (f"run `make {path.stem}` first" if what == "local"
                else "there is nothing committed to compare with")
        raise UserError(f"no {what} results {path}: {hint}")
    return read_results(path)


def summary(name: str, preset: str = "embedded", root: Path | None = None) -> tuple[int, str]:
    """(number of contradictions, the report): claim lines, then the values outside the
    committed intervals, then what to do next."""
    local, committed = paths(name, preset, root)
    mine, theirs = _read(local, "local"), _read(committed, "committed")
    lines = verify_compare(theirs, mine)
    claims = [(ok, text) for ok, text in lines if text.startswith("claim ")]
    values = [(ok, text) for ok, text in lines if not text.startswith("claim ")]
    bad = [text for ok, text in lines if not ok]
    seeds = mine["settings"].get("seeds"), theirs["settings"].get("seeds")
    out = [f"{name}: your run ({seeds[0]} seeds, {local}) against the committed one "
           f"({seeds[1]} seeds, {committed}), by the rule of `make verify` (docs/method.md §7):"]
    out += [("  ok   " if ok else "  DIFF ") + text for ok, text in claims]
    out.append(f"values: {sum(ok for ok, _ in values)} of {len(values)} inside the committed "
               "95% interval (or within 5% where it has none)"
               + ("; another seed count than committed: a value's spread is not the committed "
                  "interval's" if seeds[0] != seeds[1] else ""))
    out += ["  DIFF " + text for ok, text in values if not ok]
    out.append(f"{len(bad)} contradiction(s) in {len(lines)} lines. "
               + (f"To make your run the committed one: make promote NOTEBOOK={name}"
                  if not bad else "Committed and local results disagree: see the DIFF lines"))
    return len(bad), "\n".join(out)


def verdict_changes(name: str, before: dict, after: dict) -> str:
    """A Markdown section: each claim's verdict (and headline verdict) in the replaced result
    against the new one, with the seeds and code versions of both."""
    def claims(data):
        return {c["claim"]: c for c in data.get("claims", [])}
    old, new = claims(before), claims(after)
    lines = [f"## {name}", "",
             f"Replaced: {before['settings'].get('seeds')} seeds, code {before.get('code')}, "
             f"format {before.get('format', 1)}. New: {after['settings'].get('seeds')} seeds, "
             f"code {after.get('code')}, format {after.get('format', 1)}.", "",
             "| claim | before | after |", "|---|---|---|"]
    for claim in [*old, *(c for c in new if c not in old)]:
        cells = []
        for data in (old, new):
            c = data.get(claim)
            text = "–" if c is None else c["verdict"]
            if c and c.get("headline_verdict"):
                text += f"; headline cells: {c['headline_verdict']}"
            cells.append(text)
        lines.append(f"| {claim} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def record_changes(name: str, before: dict, after: dict, path: Path) -> Path:
    """Put `name`'s section of verdict_changes into `path` (CHANGES.md), in place of an earlier one."""
    head = ("# How the verdicts moved when a result was replaced\n\n"
            "Written by `make promote` (samrepro.study.local): per notebook, its latest replacement.\n")
    text = path.read_text(encoding="utf-8") if path.is_file() else head
    sections = re.split(r"(?m)^(?=## )", text)
    kept = [s for s in sections[1:] if not s.startswith(f"## {name}\n")]
    body = sorted([*kept, verdict_changes(name, before, after)])
    return write_text(path, sections[0].rstrip("\n") + "\n\n" + "\n".join(s.rstrip("\n") + "\n" for s in body))


def promote(name: str, preset: str = "embedded", root: Path | None = None) -> list[Path]:
    """Copy results/local/<preset>/<name>.* (and <name>-*.png) over results/<preset>/, after
    recording how the verdicts moved (record_changes). A notebook that writes no results
    file (the walkthrough) has only its executed copy, and no verdicts, to promote."""
    local, committed = paths(name, preset, root)
    only_notebook = not local.is_file() and local.with_suffix(".ipynb").is_file()
    mine = None if only_notebook else _read(local, "local")
    files = sorted({*local.parent.glob(f"{name}.*"), *local.parent.glob(f"{name}-*.png")})
    committed.parent.mkdir(parents=True, exist_ok=True)
    if mine is not None and committed.is_file():
        record_changes(name, read_results(committed), mine, committed.parent / "CHANGES.md")
    return [Path(shutil.copy2(f, committed.parent / f.name)) for f in files]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m samrepro.study.local", description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("compare", "promote"))
    p.add_argument("notebook", help="e.g. table1")
    p.add_argument("--preset", default="embedded")
    p.add_argument("--strict", action="store_true",
                   help="compare: exit status 1 when something contradicts the committed result")
    args = p.parse_args(argv)
    try:
        if args.action == "compare":
            bad, text = summary(args.notebook, args.preset)
            print(text)
            return 1 if bad and args.strict else 0
        copied = promote(args.notebook, args.preset)
        print("\n".join(f"promoted {f}" for f in copied))
        print("now `make readme` (the README's claim table) and commit results/ and README.md")
        return 0
    except UserError as e:
        print(f"samrepro: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
