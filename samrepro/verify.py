"""A reviewer's check: re-run a committed result from a scratch cache and compare, cell by cell.

    samrepro verify results/embedded/table1.json        (or: make verify NOTEBOOK=table1)

The notebook named by the file (notebooks/table1.ipynb) runs again under papermill with the
committed settings, into a scratch folder with an empty run cache, so that every number is
computed anew on this machine. Then each new value is checked against the committed 95%
interval of its cell (values without an interval: within 5%), and each claim's verdict
against the committed one. Exit status 0 when everything matches, 1 when something differs.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import UserError

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
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
    return tuple((k, v) for k, v in row.items() if isinstance(v, str) or k == "sparsity")


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
                    or isinstance(value, bool) or column == "sparsity":
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
    new_claims = {c["claim"]: c["verdict"] for c in fresh["claims"]}
    for claim in committed["claims"]:
        got = new_claims.get(claim["claim"])
        ok = got == claim["verdict"]
        lines.append((ok, f"claim {claim['claim']}: {got} vs committed {claim['verdict']}"
                          f"{'' if ok else '  <- DIFFERS'}"))
    return lines


def rerun(path, scratch: str | None = None) -> dict:
    """Run the file's notebook with its committed settings from an empty cache; the new results."""
    path = Path(path)
    committed = read_results(path)
    scratch = Path(scratch or tempfile.mkdtemp(prefix="samrepro-verify-"))
    parameters = {k: v for k, v in committed["settings"].items() if v is not None}
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


def verify(path, scratch: str | None = None) -> int:
    """Re-run and compare; prints one line a cell, returns the exit status."""
    committed = read_results(path)
    lines = compare(committed, rerun(path, scratch))
    for ok, line in lines:
        print(("  ok   " if ok else "  DIFF ") + line)
    bad = sum(not ok for ok, _ in lines)
    print(f"{len(lines) - bad} of {len(lines)} cells match the committed {path}")
    return 0 if bad == 0 else 1
