"""The generated parts of README.md and docs/install.md, written from results/ and samrepro.machine.memory.

    python -m samrepro.study.readme            # rewrite every generated block in place (make readme)
    python -m samrepro.study.readme --check    # exit 1, saying which, if a block is not up to date

A generated block sits between the lines `<!-- samrepro.readme:NAME -->` and
`<!-- /samrepro.readme:NAME -->`; everything else in the files is left as it is. Blocks:

- `claims`: the results at a glance, one row per claim of every results/embedded/*.json, each
  a statistical verdict (docs/method.md §7): {"claim", "statement", "verdict",
  "counts": {"holds", "fails", "inconclusive"}, "evidence"}.
- `forest`: the forest plot of every result in the new format (claims.FORMAT 2: cells with
  labels, matched arms and `window_nll` beside them), written with it as
  `<name>-forest.png` (report.write); empty while no result has that format.
- `gpu`, `gpu-all`: predicted memory (samrepro.machine.memory.estimate_memory) and projected time
  (samrepro.machine.memory.estimate_time, with the probe cost measured in results/embedded/scaling.json)
  at the paper's protocol, for the paper's models and for every model the estimate knows.

tests/test_readme.py checks that every block equals what this module writes now, so a
changed result fails the tests until the README is regenerated.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from samrepro.study.names import labelled, model_label

ROOT = Path(__file__).resolve().parents[2]
FILES = ("README.md", "docs/install.md")
RESULTS = Path("results/embedded")  # relative to the checkout; links in the README use it
# the order of the rows: the paper's claims, then the tables' own
CLAIM_ORDER = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "T2", "T3")
# the table notebooks first, then the other results, as a reader meets them
SOURCE_ORDER = ("table1", "table2", "table3", "table4", "figure1", "figure2", "figure3",
                "allocations")
BLOCK = re.compile(r"(<!-- samrepro\.readme:(?P<name>[\w-]+) -->\n)(?P<body>.*?)"
                   r"(<!-- /samrepro\.readme:(?P=name) -->)", re.S)


# ---- claims ---------------------------------------------------------------------------------

def _check_counts(path: Path, claim: dict) -> None:
    """A claim carries its cells' outcome counts; a results file from before intervals does not."""
    if not isinstance(claim.get("counts"), dict):
        raise SystemExit(f"{path}: claim {claim.get('claim')!r} has no verdict counts (written "
                         "before verdicts had intervals); re-run its notebook")


def _results(results: Path):
    """(path, parsed JSON) of every results JSON in `results`, by name."""
    for path in sorted(results.glob("*.json")):
        try:
            yield path, json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise SystemExit(f"{path}: not JSON ({e})") from None


def claim_rows(results: Path) -> list[dict]:
    """Every claim of every results JSON in `results`, in reading order."""
    rows = []
    for path, data in _results(results):
        if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
            continue
        for claim in data["claims"]:
            _check_counts(path, claim)
            rows.append({"source": path.stem, "claim": str(claim["claim"]),
                         "statement": str(claim.get("statement", "")),
                         "verdict": str(claim["verdict"]),
                         "evidence": [str(e) for e in claim.get("evidence") or []],
                         "settings": data.get("settings", {}), "preset": data.get("preset")})

    def order(row):
        base = row["claim"].split("-")[0]
        return (CLAIM_ORDER.index(base) if base in CLAIM_ORDER else len(CLAIM_ORDER),
                row["claim"] != base, row["claim"],
                SOURCE_ORDER.index(row["source"]) if row["source"] in SOURCE_ORDER else 99,
                row["source"])

    return sorted(rows, key=order)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _settings_line(rows: list[dict]) -> str:
    """The sizes the table notebooks ran at (table1's) and the seeds of every result, from the
    settings each claim row carries."""
    by_result = {r["source"]: r for r in rows}
    if "table1" not in by_result:
        return ""
    s = by_result["table1"]["settings"]
    parts = [f"preset `{by_result['table1']['preset'] or '?'}`"]
    if s.get("models"):
        parts.append("models " + ", ".join(f"{model_label(m)} (`{m}`)" for m in s["models"]))
    if s.get("nsamples") and s.get("seqlen"):
        parts.append(f"{s['nsamples']} calibration windows of {s['seqlen']} tokens")
    if s.get("eval_windows"):
        parts.append(f"{s['eval_windows']} evaluation windows a dataset")
    if s.get("probes"):
        parts.append(f"Hutchinson estimates from up to {s['probes']} probes")
    groups: dict[str, list[str]] = {}  # the seed count of each result (a larger one costs more)
    for source in sorted(by_result):
        seeds = by_result[source]["settings"].get("seeds")
        count = len(seeds) if isinstance(seeds, list) else seeds
        key = f"{count} calibration seeds" if isinstance(count, int) and count > 1 else \
            "one run per arm"
        groups.setdefault(key, []).append(source)
    parts += [f"{key} ({', '.join(names)})" for key, names in groups.items()]
    return "Settings (those of table1; each result records its own): " + "; ".join(parts) + "."


def claims_block(results: Path | None = None) -> str:
    results = results or ROOT / RESULTS
    rows = claim_rows(results)
    rerun = results / "RERUN.md"  # results made by an earlier code version, awaiting a re-run
    older = set(re.findall(r"^- `(\w+)\.json`", rerun.read_text(encoding="utf-8"), re.M)) \
        if rerun.exists() else set()
    lines = ["| claim | the paper says | verdict | first cell | all cells |",
             "|---|---|---|---|---|"]
    for r in rows:
        first = labelled(r["evidence"][0]) if r["evidence"] else ""
        link = f"[{r['source']}.md]({RESULTS.as_posix()}/{r['source']}.md)" \
            if (results / f"{r['source']}.md").exists() else f"`{r['source']}.json`"
        if r["source"] in older:
            link += f" (earlier code: [RERUN.md]({RESULTS.as_posix()}/RERUN.md))"
        lines.append(f"| {r['claim']} | {_cell(r['statement'])} | **{_cell(r['verdict'])}** | "
                     f"{_cell(first)} | {link} |")
    settings = _settings_line(rows)
    return "\n".join(lines + ([""] + [settings] if settings else [])) + "\n"


def forest_block(results: Path | None = None) -> str:
    """The forest plots of the results in the new format, in reading order ("" if none)."""
    results = results or ROOT / RESULTS
    found = []
    for path, data in _results(results):
        image = results / f"{path.stem}-forest.png"
        if isinstance(data, dict) and data.get("format", 1) >= 2 and image.exists():
            found.append(path.stem)
    if not found:
        return ""
    found.sort(key=lambda n: (SOURCE_ORDER.index(n) if n in SOURCE_ORDER else 99, n))
    lines = ["Every comparison cell of the results below: the paired change of A against B with "
             "its 95% interval (a row is one comparison, never one arm's own interval), grouped "
             "by claim, coloured by model; diamonds mark the headline cells (the average over "
             "the streams); cells whose arms differ in sparsity are left out (their matched "
             "cells are shown).", ""]
    lines += [f"![{name}: every cell with its interval]({RESULTS.as_posix()}/{name}-forest.png)"
              for name in found]
    return "\n".join(lines) + "\n"


# ---- paper scale: memory and time -----------------------------------------------------------

PAPER_SCALE = ("llama-7b", "llama-2-7b", "llama-13b", "llama-2-13b", "opt-1.3b")


def _probe_forwards(results: Path) -> float:
    """A probe's cost in forwards of one window, measured by benchmarks/scaling.py."""
    data = json.loads((results / "scaling.json").read_text(encoding="utf-8"))
    return float(data["rates"]["probe_in_forwards"])


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def gpu_block(models=PAPER_SCALE, results: Path | None = None, device_gib=(80,)) -> str:
    import torch

    from samrepro.machine.memory import GIB, PAPER_MODELS, estimate_memory, estimate_time

    results = results or ROOT / RESULTS
    forwards = _probe_forwards(results)
    head = ["model", "parameters", "fp16 weights (download, host RAM)"]
    for g in device_gib:
        head += [f"pruning: peak on one {g} GB GPU", f"Hutchinson probe (1×2048) on {g} GB GPUs"]
    head += ["pruning time", "64 probes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in models or PAPER_MODELS:
        row = None
        for g in device_gib:
            e = estimate_memory(name, 128, 2048, g * 1e9, torch.float16)
            if row is None:
                row = [name, f"{e['parameters'] / 1e9:.2f} B",
                       f"{e['parameters'] * 2 / GIB:.1f} GiB"]
            p, h = e["pruning"], e["hutchinson"]
            row.append(f"{p['peak'] / GIB:.1f} GiB" + (" (does not fit)"
                                                       if p["placement"] == "does not fit" else ""))
            row.append(f"{h['peak'] / GIB:.0f} GiB on {h['min_devices']} GPU"
                       + ("s" if h["min_devices"] > 1 else ""))
        t = estimate_time(name, 128, 2048, probe_forwards=forwards)
        row += [f"~{_minutes(t['pruning_seconds'])}", f"~{_minutes(64 * t['probe_seconds'])}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def gpu_all_block(results: Path | None = None) -> str:
    from samrepro.machine.memory import PAPER_MODELS

    return gpu_block(tuple(PAPER_MODELS), results, device_gib=(80, 24))


BLOCKS = {"forest": forest_block, "claims": claims_block, "gpu": gpu_block,
          "gpu-all": gpu_all_block}


# ---- rewriting ------------------------------------------------------------------------------

def render(text: str) -> str:
    """`text` with every generated block replaced by what the generators write now."""
    def replace(match):
        name = match.group("name")
        if name not in BLOCKS:
            raise SystemExit(f"unknown generated block {name!r}: known {', '.join(BLOCKS)}")
        return match.group(1) + BLOCKS[name]() + match.group(4)

    return BLOCK.sub(replace, text)


def blocks(text: str) -> dict[str, str]:
    """{name: body} of the generated blocks in `text`."""
    return {m.group("name"): m.group("body") for m in BLOCK.finditer(text)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samrepro.study.readme",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a block is not what would be written")
    args = parser.parse_args(argv)
    stale = []
    for name in FILES:
        path = ROOT / name
        text = path.read_text(encoding="utf-8")
        new = render(text)
        if new != text:
            stale.append(name)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "out of date" if args.check else "rewritten"
    print(f"{verb}: {', '.join(stale)}" if stale else "generated blocks up to date")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
