"""A reviewer's check: re-run a committed result from a scratch cache and compare, cell by cell.

    samrepro verify results/embedded/table1.json        (or: make verify NOTEBOOK=table1)

The notebook named by the file (notebooks/table1.ipynb) runs again under papermill with the
committed settings, into a scratch folder with an empty run cache, so that every number is
computed anew on this machine. Then each new value is checked against the committed 95%
interval of its cell (values without an interval: within 5%), and each claim cell's verdict
against the committed one. Exit status 0 when everything matches, 1 when something differs.

`seeds=N` re-runs with fewer calibration seeds than were committed (results may be committed
from more seeds than a reviewer's hour affords). A verdict is itself uncertain, the more so
with fewer seeds, so a claim cell contradicts the committed one only when the two decide
opposite ways (holds against fails) or their intervals do not overlap; a cell decided on one
side and inconclusive on the other, with overlapping intervals, is reported but agrees
(docs/method.md §7).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from samrepro.errors import UserError

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
RTOL_WITHOUT_INTERVAL = 0.05


def read_results(path) -> dict:
    """A committed results JSON, or a UserError naming what is wrong with it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable results JSON ({type(e).__name__}); give a "
                        "file such as results/embedded/table1.json") from None
    if not isinstance(data, dict) or not {"rows", "claims", "preset", "settings"} <= set(data):
        raise UserError(f"{path}: not a samrepro results file (needs rows, claims, preset and "
                        "settings); give a file such as results/embedded/table1.json")
    if not (NOTEBOOKS / f"{path.stem}.ipynb").is_file():
        known = ", ".join(sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")))
        raise UserError(f"{path}: no notebook {path.stem}.ipynb made it; known: {known}")
    return data


def _labels(row: dict) -> tuple:
    return tuple((k, v) for k, v in row.items() if (isinstance(v, str) and v) or k == "sparsity")


def compare(committed: dict, fresh: dict) -> list[tuple[bool, str]]:
    """(matches, line) for every numeric cell of the committed rows and every claim."""
    new_rows = {_labels(r): r for r in fresh["rows"]}
    lines = []
    for row in committed["rows"]:
        label = _labels(row)
        name = " ".join(str(v) for _, v in label)
        new = new_rows.get(label)
        if new is None:
            lines.append((False, f"{name}: row missing from the re-run"))
            continue
        for column, value in row.items():
            if column.endswith(("_low", "_high")) or not isinstance(value, (int, float)) \
                    or isinstance(value, bool) or column in ("sparsity", "seeds"):
                continue
            got = new.get(column)
            if got is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if f"{column}_low" in row:
                low, high = row[f"{column}_low"], row[f"{column}_high"]
                ok = low <= got <= high
                lines.append((ok, f"{name} {column}: {got:.4g} {'inside' if ok else 'OUTSIDE'} "
                                  f"the committed [{low:.4g}, {high:.4g}]"))
            else:
                ok = math.isclose(got, value, rel_tol=RTOL_WITHOUT_INTERVAL, abs_tol=1e-3)
                lines.append((ok, f"{name} {column}: {got:.4g} vs committed {value:.4g} "
                                  f"({'within' if ok else 'beyond'} {RTOL_WITHOUT_INTERVAL:.0%})"))
    new_claims = {c["claim"]: c for c in fresh["claims"]}
    for claim in committed["claims"]:
        new = new_claims.get(claim["claim"], {})
        if claim.get("cells") and new.get("cells"):
            lines += _compare_cells(claim, new)
            continue
        ok = new.get("verdict") == claim["verdict"]
        lines.append((ok, f"claim {claim['claim']}: {new.get('verdict')} vs committed "
                          f"{claim['verdict']}{'' if ok else '  <- DIFFERS'}"))
    return lines


def _cell_label(cell: dict) -> str:
    """What a cell compares: its text up to the first number ("embedded isc vs obs ptb"), or
    up to a C5/C6 cell's count ("embedded: first layer above every middle layer"). A matched
    cell's baseline sparsity is left out: it is the other arm's achieved sparsity, a mean over
    the seeds, so runs with other seeds name it differently ("matched (baseline at 51.70%)");
    so is a C3 cell's range of achieved sparsities ("over achieved sparsity 51.70%–81.70%")."""
    match = re.match(r"(.*?): (?:[-+]?\d|decided )", cell["text"])
    label = match.group(1) if match else cell["text"]
    label = re.sub(r" over achieved sparsity [\d.]+%–[\d.]+%", "", label)
    return re.sub(r"matched \(baseline at [-+\d.]+%\)", "matched", label)


def _compare_cells(claim: dict, fresh: dict) -> list[tuple[bool, str]]:
    """One line a claim cell: its outcome and interval now against the committed ones."""
    new_cells = {_cell_label(c): c for c in fresh["cells"]}
    lines = []
    for cell in claim["cells"]:
        name = f"claim {claim['claim']} {_cell_label(cell)}"
        new = new_cells.get(_cell_label(cell))
        if new is None:
            lines.append((False, f"{name}: cell missing from the re-run"))
            continue
        was, now = cell["outcome"], new["outcome"]
        overlap = _overlap(cell, new)
        if {was, now} == {"holds", "fails"} or overlap is False:
            ok, note = False, "  <- DIFFERS"
        elif was == now:
            ok, note = True, ""
        else:  # one side decided, the other not, intervals overlapping: no contradiction
            ok, note = True, " (undecided on one side; the intervals overlap)"
        lines.append((ok, f"{name}: {now} {_interval(new)} vs committed {was} "
                          f"{_interval(cell)}{note}"))
    lines.append((True, f"claim {claim['claim']}: {fresh['verdict']} "
                        f"(committed: {claim['verdict']})"))
    return lines


def _overlap(a: dict, b: dict) -> bool | None:
    """Whether two cells' intervals overlap; None when either has none."""
    if None in (a.get("low"), a.get("high"), b.get("low"), b.get("high")):
        return None
    return a["low"] <= b["high"] and b["low"] <= a["high"]


def _interval(cell: dict) -> str:
    if cell.get("low") is None or cell.get("high") is None:
        return ""
    return f"[{cell['low']:+.4g}, {cell['high']:+.4g}]"


def rerun(path, scratch: str | None = None, seeds: int | None = None) -> dict:
    """Run the file's notebook with its committed settings (`seeds` instead of the committed
    count, if given) from an empty cache; the new results."""
    path = Path(path)
    committed = read_results(path)
    _check_seeds(seeds)
    scratch = Path(scratch or tempfile.mkdtemp(prefix="samrepro-verify-"))
    parameters = {k: v for k, v in committed["settings"].items() if v is not None}
    if seeds is not None:
        parameters["seeds"] = seeds
    parameters.update(preset=committed["preset"], output_dir=str(scratch / "results"))
    notebook = NOTEBOOKS / f"{path.stem}.ipynb"
    known = _parameters_of(notebook)
    args = [sys.executable, "-m", "papermill", "--cwd", str(NOTEBOOKS), str(notebook),
            str(scratch / f"{path.stem}.ipynb")]
    for key, value in parameters.items():
        if key in known:
            args += ["-y", json.dumps({key: value})]
    env = {**os.environ, "SAMREPRO_CACHE_DIR": str(scratch / "cache")}
    embedded = Path(os.environ.get("SAMREPRO_CACHE_DIR") or Path.home() / ".cache" / "samrepro")
    (scratch / "cache").mkdir(parents=True, exist_ok=True)
    if (embedded / "smollm2-135m").is_dir():  # the converted model, not a result
        (scratch / "cache" / "smollm2-135m").symlink_to(embedded / "smollm2-135m")
    subprocess.run(args, check=True, env=env)
    return json.loads((scratch / "results" / committed["preset"] / path.name).read_text())


def _parameters_of(notebook: Path) -> set[str]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"])
            return {line.split("=")[0].strip() for line in source.splitlines() if "=" in line}
    return set()


def _check_seeds(seeds) -> None:
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise UserError(f"seeds={seeds!r}: give a whole number of calibration seeds ≥ 1 "
                        "(or none: the committed count)")


def verify(path, scratch: str | None = None, seeds: int | None = None) -> int:
    """Re-run and compare; prints one line a cell, returns the exit status."""
    committed = read_results(path)
    _check_seeds(seeds)
    if seeds is not None:
        print(f"re-running {Path(path).stem} with {seeds} seed(s); committed from "
              f"{committed['settings'].get('seeds')}")
    lines = compare(committed, rerun(path, scratch, seeds))
    for ok, line in lines:
        print(("  ok   " if ok else "  DIFF ") + line)
    bad = sum(not ok for ok, _ in lines)
    print(f"{len(lines) - bad} of {len(lines)} cells match the committed {path}")
    return 0 if bad == 0 else 1
