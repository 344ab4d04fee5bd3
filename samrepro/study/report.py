"""Results: written beside the paper's, checked against the stored regression values, shown.

The settings a notebook runs with and its run configs are samrepro.study.settings'. Every table
notebook writes results/<preset>/<name>.{json,csv,md} (figures a .png beside
them) with its settings, library versions, device and wall time, and a verdict for each of
the paper's claims it covers (docs/method.md §7).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from importlib import resources
from pathlib import Path

from samrepro.io.files import write_json, write_text
from samrepro.machine.hardware import default_device, machine
from samrepro.io.inputs import of as inputs_of
from samrepro.io.provenance import code_hash, git_commit, versions, warn_if_versions_differ
from samrepro.study.names import labelled, model_label
from samrepro.study.settings import recorded_settings, regression_skip, results_dir

# The keys of a results JSON shown under "Provenance" in its Markdown file
PROVENANCE = ("preset", "settings", "versions", "device", "machine", "code", "git_commit",
              "wall_seconds", "inputs")


def paper_reference() -> dict:
    """The paper's printed numbers and peer anchors (reference.json from the paper folder)."""
    return json.loads(resources.files("samrepro.study").joinpath("paper_reference.json").read_text())


def _close(value: float, stored: float, rtol: float, atol: float) -> bool:
    return math.isclose(value, stored, rel_tol=rtol, abs_tol=max(atol, 1e-6))


# Each table's tolerance (relative, absolute) for check_regression: 3× the largest move that
# benchmarks/regression_variation.py measured against the tests' own set-up (2 threads) when
# the smoke tables are recomputed with 1 thread, or on AVX2 kernels (other microkernels and
# bf16 products in every matmul: what another CPU of this kind changes; it moves them most);
# tests/regression/README.md lists the measurements.
TOLERANCES = {"figure1": (0.003, 0.0),  # layer traces: 9.6e-4 relative
              "figure2": (0.003, 4.5e-4),  # matrix traces: 1.5e-4 absolute (2.1e-2 relative
              # on a trace of 2.6e-4, the smallest), 9.6e-4 relative in figure1 on the same probes
              "table3": (0.05, 5.0)}  # accuracies on 2 documents: one flipped answer is 50 points
DEFAULT_TOLERANCE = (0.005, 0.0)  # perplexities and their interval bounds: 1.6e-3 measured
IGNORED_COLUMNS = ("stderr",)  # Hutchinson's standard errors: checked through the traces


def check_regression(s: dict, name: str, table, partial: bool = False) -> str:
    """At the smoke preset's own values, compare `table`'s numbers with
    tests/regression/<name>.json; skipped, saying why, for any other run (regression_skip).

    The test suite runs every notebook at smoke; this is what makes a silent change of the
    numbers fail it. Set SAMREPRO_UPDATE_REGRESSION=1 to rewrite the stored values.
    `atol` is for values near 0 that another rounding moves by an absolute amount (small
    Hutchinson traces; Table 3's accuracies on 2 documents, in %).
    `partial`: the table holds only the first rows of the stored one (e.g. the first model's).
    """
    skip = regression_skip(s)
    if skip:
        return (f"regression check skipped: only at the smoke preset with its own values "
                f"(those stored); this run {skip}")
    rtol, atol = TOLERANCES.get(name, DEFAULT_TOLERANCE)
    table = table.drop(columns=[c for c in IGNORED_COLUMNS if c in table.columns])
    path = Path(__file__).resolve().parents[2] / "tests" / "regression" / f"{name}.json"
    numbers = {f"{i}:{col}": float(v) for i, row in enumerate(table.to_dict(orient="records"))
               for col, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
               and not math.isnan(v)}  # NaN: a cell not evaluated (the stand-in's WikiText-2)
    if os.environ.get("SAMREPRO_UPDATE_REGRESSION") == "1":
        write_json(path, numbers)
        return f"regression values written to {path.name}"
    if not path.exists():
        raise AssertionError(f"no stored values {path}: run the notebook at the smoke preset "
                             "with SAMREPRO_UPDATE_REGRESSION=1 once, and commit the file")
    stored = json.loads(path.read_text())
    if not (set(numbers) <= set(stored) if partial else set(stored) == set(numbers)):
        raise AssertionError(f"{name}: the table's cells changed: {sorted(set(stored) ^ set(numbers))[:5]}")
    bad = [(k, stored[k], v) for k, v in numbers.items()
           if not _close(v, stored[k], rtol, atol)]
    if bad:
        raise AssertionError(f"{name}: {len(bad)} values moved beyond {rtol:.1%}: {bad[:5]}")
    return f"regression check: {len(numbers)} values within {rtol:.1%} of the stored ones"


def show_claims(claims: list[dict]) -> None:
    """Display each claim's verdict counts and evidence lines in a notebook."""
    from IPython.display import Markdown, display

    for c in claims:
        display(Markdown(f"**{c['claim']}** {c['statement']}: **{c['verdict']}**  \n"
                         + "  \n".join(c["evidence"])))


def _markdown(table) -> str:
    """The table in Markdown: a value with its own 95% interval reads `70.9 [69.8, 72.1]`
    (one arm's interval, not a comparison: the claims give those), — marks cells not
    evaluated (NaN)."""
    table = table.copy()
    for column in [c for c in table.columns if f"{c}_low" in table.columns]:
        low, high = table.pop(f"{column}_low"), table.pop(f"{column}_high")
        table[column] = [None if math.isnan(v) else f"{v:.4g} [{lo:.4g}, {h:.4g}]"
                         for v, lo, h in zip(table[column], low, high)]
    return table.astype(object).where(table.notna(), None).to_markdown(
        index=False, floatfmt=".4g", missingval="—")


def write(s: dict, name: str, table, claims: list[dict], paper_table=None, notes: str = "",
          extra: dict | None = None) -> Path:
    """results/<preset>/<name>.{json,csv,md}: our table, the paper's, the claims, provenance."""
    folder = Path(s["output_dir"]) / s["preset"]
    folder.mkdir(parents=True, exist_ok=True)
    previous = folder / f"{name}.json"
    if previous.exists():  # say so when results made with other library versions are replaced
        try:
            stored = json.loads(previous.read_text(encoding="utf-8")).get("versions")
        except (OSError, ValueError, AttributeError):
            stored = None
        warn_if_versions_differ(stored, f"the replaced {previous}")
    provenance = {"preset": s["preset"], "settings": recorded_settings(s, name),
                  "versions": versions(), "device": str(default_device(s["device"])),
                  "machine": machine(), "code": code_hash(), "git_commit": git_commit(),
                  "wall_seconds": round(time.time() - s["started"], 1),
                  "inputs": inputs_of(s)}  # weights' and texts' hashes and sources
    data = table.attrs.get("result", {})  # the format and per-window data (tables._data)
    result = {**provenance, "rows": table.to_dict(orient="records"), "claims": claims,
              "paper": None if paper_table is None else paper_table.to_dict(orient="records"),
              **data, **(extra or {})}
    write_json(folder / f"{name}.json", result)
    _draw_forest(result, folder / f"{name}-forest.png")
    write_text(folder / f"{name}.csv", table.to_csv(index=False))
    write_text(folder / f"{name}.md", markdown(name, result, notes, folder))
    return folder


def _draw_forest(result: dict, path: Path) -> None:
    """The forest plot of a result in the current format (claims.FORMAT 2) with claim cells."""
    if result.get("format", 1) >= 2 and any(c.get("cells") for c in result.get("claims") or []):
        from samrepro.study.plots import forest
        forest(result["claims"], path)


def markdown(name: str, result: dict, notes: str = "", folder: Path | None = None) -> str:
    """The Markdown result of a results JSON: our table, the paper's, the claims (with the
    forest plot when `folder` holds <name>-forest.png), the provenance. Models are named by
    what they are (samrepro.study.names)."""
    import pandas as pd

    table = pd.DataFrame(result["rows"])
    if "model" in table.columns:
        table["model"] = [model_label(m) for m in table["model"]]
    lines = [f"# {name} ({result['preset']} preset)", "", notes, "", "## Ours", "",
             _markdown(table), ""]
    if any(f"{c}_low" in table.columns for c in table.columns):
        lines += ["A value in brackets is that arm's own 95% interval over seeds and windows, "
                  "not a comparison; the claims below compare arms, paired.", ""]
    if table.isna().any().any():
        lines += ["— : not evaluated (e.g. the OPT stand-in is scored on PTB only)", ""]
    samples = [k for k in (result.get("inputs") or {}).get("data", {}) if "sample" in k.lower()]
    if "c4" in table.columns and samples:
        lines += [f"`c4`: scored on a sample of C4's validation split ({', '.join(samples)}), "
                  "not on the paper's C4 evaluation windows (docs/method.md §8).", ""]
    if result.get("paper"):
        paper = pd.DataFrame(result["paper"])
        lines += ["## The paper", "", paper.to_markdown(index=False, floatfmt=".4g"), ""]
    claims = result.get("claims") or []
    if claims:
        lines += ["## The paper's claims", ""]
        for c in claims:
            lines.append(f"- **{c['claim']}** {c['statement']}: **{c['verdict']}**")
            lines += [f"  - {labelled(e)}" for e in c["evidence"]]
        lines.append("")
    if folder is not None and (Path(folder) / f"{name}-forest.png").is_file():
        lines += [f"![{name}-forest]({name}-forest.png)", "",
                  f"*{name}-forest.png: every comparison cell's paired change with its 95% "
                  "interval, grouped by claim and coloured by model; diamonds are headline cells "
                  "(the average over the streams); confounded cells are left out "
                  "(docs/method.md §7).*", ""]
    provenance = {k: result.get(k) for k in PROVENANCE if k in result}
    lines += ["## Provenance", "", "```json", json.dumps(provenance, indent=2), "```", ""]
    return "\n".join(lines)


def rerender(path: str | os.PathLike) -> Path:
    """Write results/<preset>/<name>.md (and its forest plot) again from its JSON, after a
    change of presentation alone (no re-run): the notes and the figures a notebook added
    (plots.embed) are kept from the Markdown file it replaces."""
    path = Path(path)
    result = json.loads(path.read_text(encoding="utf-8"))
    _draw_forest(result, path.parent / f"{path.stem}-forest.png")
    target = path.with_suffix(".md")
    old = target.read_text(encoding="utf-8") if target.is_file() else ""
    notes = old.split("\n\n## Ours")[0].partition("\n\n")[2].strip() if old else ""
    pictures = [p for p in re.findall(r"!\[[^\]]*\]\([^)]*\)\n\n\*[^\n]*\*\n", old)
                if "-forest.png" not in p]
    text = markdown(path.stem, result, notes, path.parent)
    head, mark, tail = text.rpartition("## Provenance")
    return write_text(target, head + "".join(p + "\n" for p in pictures) + mark + tail)


def tidy_notebook(path: str | os.PathLike) -> Path:
    """Keep only the last state of each progress-bar line in an executed notebook's text
    streams, as a terminal shows them. Progress bars redraw a line with a carriage return on
    every update; lm-evaluation-harness draws several bars a run, so an executed table3
    notebook stores thousands of redraws (1.3 MB of stderr). The Makefile tidies each output
    notebook after papermill; nothing but stream text changes."""
    import nbformat

    path = Path(path)
    notebook = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    for cell in notebook.cells:
        outputs = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and outputs and outputs[-1].output_type == "stream" \
                    and outputs[-1].name == out.name:
                outputs[-1].text += out.text  # consecutive writes to one stream: one text
            else:
                outputs.append(out)
        for out in outputs:
            if out.output_type == "stream":
                out.text = _last_redraws(out.text)
        if "outputs" in cell:
            cell.outputs = [o for o in outputs if o.output_type != "stream" or o.text]
    return write_text(path, nbformat.writes(notebook))


def _last_redraws(text: str) -> str:
    """`text` as a terminal ends up showing it: a carriage return goes back to the start of
    the line, which the next characters overwrite; the cursor-up code (nested bars) goes one
    line up; blank lines go."""
    lines, row, col = [""], 0, 0
    for token in re.split(r"(\r|\n|\x1b\[A)", text):
        if token == "\n":
            row, col = row + 1, 0
        elif token == "\r":
            col = 0
        elif token == "\x1b[A":
            row = max(0, row - 1)
        elif token:
            lines += [""] * (row + 1 - len(lines))
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token):]
            col += len(token)
    return "".join(f"{line.rstrip()}\n" for line in lines if line.strip())


def write_paper(folder: Path | None = None) -> Path:
    """results/paper/: the paper's printed tables (table1-4 .json/.csv/.md) and what its
    figures show (figures.md), from paper_reference.json, for side-by-side reading.

        python -m samrepro.study.report
    """
    import pandas as pd

    reference = paper_reference()["paper"]
    folder = Path(folder or results_dir() / "paper")
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("table1", "table2", "table3", "table4"):
        table = reference[name]
        rows = pd.DataFrame(table["rows"])
        about = {k: v for k, v in table.items() if k != "rows"}
        write_json(folder / f"{name}.json", {**about, "setup": reference["setup"],
                                             "rows": table["rows"]})
        write_text(folder / f"{name}.csv", rows.to_csv(index=False))
        write_text(folder / f"{name}.md", "\n".join([
            f"# {name}: the paper's numbers", "", table["caption"], "",
            rows.to_markdown(index=False, floatfmt=".4g"), "",
            "Setup: " + "; ".join(f"{k}: {v}" for k, v in reference["setup"].items()), ""]))
    write_text(folder / "figures.md", "\n".join(
        ["# The paper's figures (no numbers printed; what they show and claim)", ""]
        + [f"- **{name}**: {text}" for name, text in reference["figures"].items()] + [""]))
    return folder


if __name__ == "__main__":
    print(f"wrote {write_paper()}")
