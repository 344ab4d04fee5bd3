"""Claims verdicts and the regression check of the notebooks (no model runs)."""

import numpy as np
import pandas as pd
import pytest

from samrepro.study import report, settings, tables


def _units(traces, noise, probes=16, seeds=2, seed=0):
    """{unit: per-seed arrays of per-probe samples} around `traces`: each probe moves every
    unit by a shared amount (one calibration batch a probe) plus its own noise."""
    rng = np.random.default_rng(seed)
    shared = [rng.normal(0, 1.0, probes) for _ in range(seeds)]
    return {f"l.{i}": [t + shared[s] + rng.normal(0, noise, probes) for s in range(seeds)]
            for i, t in enumerate(traces)}


def test_figure_claims_follow_the_numbers_and_their_errors():
    """C5/C6 by hand: decided above every other when the paired 95% intervals say so,
    undecided when the noise is as large as the gap."""
    c5 = tables.figure1_claim({"m": _units([5.0, 1.0, 2.0, 1.5, 4.0], 0.1)})
    assert c5["counts"] == {"holds": 2, "fails": 0, "inconclusive": 0}
    c5 = tables.figure1_claim({"m": _units([1.0, 5.0, 2.0, 1.5, 0.5], 0.1)})
    assert c5["counts"] == {"holds": 0, "fails": 2, "inconclusive": 0}
    noisy = tables.figure1_claim({"m": _units([5.0, 1.0, 2.0, 1.5, 4.0], 30.0)})
    assert noisy["counts"]["inconclusive"] == 2
    by_type = _units([1.0, 3.0, 0.5, 2.0], 0.1)
    matrices = {"m": dict(zip(["q_proj", "v_proj", "down_proj", "up_proj"], by_type.values()))}
    assert tables.figure2_claim(matrices)["counts"] == {"holds": 1, "fails": 1, "inconclusive": 0}
    opt = {"m": dict(zip(["q_proj", "v_proj", "fc1", "fc2"], by_type.values()))}  # fc2: OPT's down
    assert tables.figure2_claim(opt)["counts"] == {"holds": 2, "fails": 0, "inconclusive": 0}


def test_regression_check_fails_when_numbers_move(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "__file__", str(tmp_path / "samrepro" / "study" / "report.py"))
    s = {"preset": "smoke"}
    df = pd.DataFrame({"model": ["a"], "ppl": [10.0]})
    with pytest.raises(AssertionError, match="no stored values"):
        report.check_regression(s, "t", df)
    monkeypatch.setenv("SAMREPRO_UPDATE_REGRESSION", "1")
    report.check_regression(s, "t", df)
    monkeypatch.delenv("SAMREPRO_UPDATE_REGRESSION")
    assert "within" in report.check_regression(s, "t", pd.DataFrame({"model": ["a"], "ppl": [10.04]}))
    with pytest.raises(AssertionError, match="moved"):  # beyond the default 0.5%
        report.check_regression(s, "t", pd.DataFrame({"model": ["a"], "ppl": [10.06]}))
    # a table holding the first rows only (partial) is compared on those
    two = pd.DataFrame({"model": ["a", "b"], "ppl": [10.0, 20.0]})
    monkeypatch.setenv("SAMREPRO_UPDATE_REGRESSION", "1")
    report.check_regression(s, "two", two)
    monkeypatch.delenv("SAMREPRO_UPDATE_REGRESSION")
    with pytest.raises(AssertionError, match="cells changed"):
        report.check_regression(s, "two", two.iloc[:1])
    assert "within" in report.check_regression(s, "two", two.iloc[:1], partial=True)
    assert "only at the smoke" in report.check_regression({"preset": "embedded"}, "t", df)


def test_paper_reference_is_packaged():
    ref = report.paper_reference()
    assert ref["paper"]["table1"]["rows"][0]["wikitext2"] == 7.79


def test_cache_reads_back_what_it_wrote_and_recomputes_foreign_entries(tmp_path, monkeypatch):
    from samrepro.io import cache

    monkeypatch.setenv("SAMREPRO_CACHE_DIR", str(tmp_path))
    calls = []
    compute = lambda: calls.append(1) or {"value": len(calls)}  # noqa: E731
    key = {"model": "m", "eval": ("ptb", "c4"), "nm": None}  # tuples, as RunConfig has
    assert cache.cached("runs", key, compute) == {"value": 1}
    assert cache.cached("runs", key, compute) == {"value": 1} and len(calls) == 1
    (entry,) = (tmp_path / "runs").iterdir()
    entry.write_text('{"key": {"model": "other"}, "value": {"value": 99}}')  # a foreign entry
    with pytest.warns(UserWarning, match="foreign"):
        assert cache.cached("runs", key, compute) == {"value": 2}
    entry.write_text("{truncated")
    with pytest.warns(UserWarning, match="damaged"):
        assert cache.cached("runs", key, compute) == {"value": 3}


def test_the_method_rows_follow_the_notebook_parameters(monkeypatch):
    """alpha / saliency / allocation (the notebooks' parameters) reach the runs of "ours";
    alpha leaves the uniform runs (and their cache keys) alone."""
    from samrepro.errors import UserError

    seen = []

    def fake_run_all(s, configs, desc=""):
        seen.extend(configs)
        return [{"achieved_sparsity": c.sparsity, "planned_sparsity": c.sparsity,
                 "perplexity": {"ptb": {"ppl": 1.0, "window_nll": [0.0, 0.1]}}} for c in configs]

    monkeypatch.setattr(tables, "run_all", fake_run_all)
    s = settings.settings("smoke", models=["tiny-opt"], alpha=0.05, saliency="obs",
                        allocation="exact")
    tables.table2(s)
    by_saliency = {(c.saliency, c.allocation): c for c in seen}
    ours = by_saliency[("obs", "exact")]
    assert ours.alpha == 0.05 and ours.sparsity == 0.5
    assert ("isc", "paper") not in by_saliency  # the default method is replaced, not added
    assert all(c.alpha is None for c in seen if c.allocation == "uniform")

    seen.clear()  # Table 1: uniform against the parameter's mixed allocation, both saliencies
    df, claims, _ = tables.table1(settings.settings("smoke", models=["tiny-opt"], allocation="exact"))
    assert {(c.allocation, c.saliency) for c in seen} == {
        (a, sal) for a in ("uniform", "exact") for sal in ("obs", "isc")}
    assert [c["claim"] for c in claims] == ["C1", "C2-exact", "C0"] and len(df) == 4
    assert {c.seed for c in seen} == {0, 1}  # every arm once per seed of the smoke preset
    with pytest.raises(UserError, match="mixed allocation"):
        tables.table1(settings.settings("smoke", models=["tiny-opt"], allocation="uniform"))

    seen.clear()
    tables.figure3(settings.settings("smoke", models=["tiny-opt"]))
    assert {(c.saliency, c.allocation, c.alpha) for c in seen if c.saliency == "isc"} == {
        ("isc", "paper", None)}  # presets.METHOD: the paper's version by default


def test_a_too_wide_alpha_is_refused_before_any_run():
    from samrepro.errors import UserError
    from samrepro.study.experiments import run

    with pytest.raises(UserError, match="too wide"):  # the settings refuse it (checks.alpha)
        settings.settings("smoke", models=["tiny-opt"], alpha=0.6)
    s = settings.settings("smoke", models=["tiny-opt"])
    with pytest.raises(UserError, match="too wide"):
        run(settings.config(s, "tiny-opt", sparsity=0.5, allocation="paper", alpha=0.6))


def test_regression_atol_forgives_small_moves_near_zero_only(tmp_path, monkeypatch):
    """Table 3's accuracies (in %, two documents a task at smoke) have an absolute
    tolerance (report.TOLERANCES); other tables do not."""
    monkeypatch.setattr(report, "__file__", str(tmp_path / "samrepro" / "study" / "report.py"))
    s = {"preset": "smoke"}
    monkeypatch.setenv("SAMREPRO_UPDATE_REGRESSION", "1")
    for name in ("acc", "table3"):
        report.check_regression(s, name, pd.DataFrame({"truthfulqa": [2.8], "piqa": [50.0]}))
    monkeypatch.delenv("SAMREPRO_UPDATE_REGRESSION")
    moved = pd.DataFrame({"truthfulqa": [5.2], "piqa": [50.0]})
    with pytest.raises(AssertionError, match="moved"):
        report.check_regression(s, "acc", moved)
    assert "within" in report.check_regression(s, "table3", moved)
    with pytest.raises(AssertionError, match="moved"):  # a flipped document still fails
        report.check_regression(s, "table3", pd.DataFrame({"truthfulqa": [2.8], "piqa": [0.0]}))


def test_the_models_trained_on_ptb_are_calibrated_and_scored_on_ptb_only():
    s = settings.settings("smoke")
    for name in ("opt-ptb-standin", "smoke-opt", "smoke-llama"):
        trained = settings.config(s, name, sparsity=0.5)
        assert (trained.calib, trained.eval) == ("ptb", ("ptb",))
    llama = settings.config(s, "embedded@2", sparsity=0.5)
    assert (llama.calib, llama.eval) == ("c4", ("wikitext2", "ptb", "c4"))
    assert settings.config(s, "opt-ptb-standin", eval=()).eval == ()  # Table 3: no perplexity


def test_written_tables_mark_cells_not_evaluated(tmp_path):
    """A model scored on PTB only shows — in the other columns of the Markdown, not `nan`;
    the JSON keeps the row's measured numbers as they were."""
    import json
    import re

    s = settings.settings("smoke", output_dir=tmp_path)
    df = pd.DataFrame([{"model": "embedded", "ptb": 76.42, "c4": 32.32},
                       {"model": "opt-ptb-standin", "ptb": 216.6, "c4": float("nan")}])
    folder = report.write(s, "t", df, [])
    md = (folder / "t.md").read_text()
    standin = next(line for line in md.splitlines() if "OPT stand-in" in line)
    assert not re.search(r"\bnan\b", md) and "—" in standin and "216.6" in standin
    assert "SmolLM2-135M" in md and "| embedded" not in md  # models named by what they are
    assert json.loads((folder / "t.json").read_text())["rows"][0]["c4"] == 32.32


def test_results_record_the_alpha_used_and_rerender_keeps_notes_and_pictures(tmp_path):
    """α left to the allocation is recorded as the value used (0.1 for `paper`), not null; a
    Markdown result written again from its JSON (report.rerender) keeps the notebook's notes
    and the pictures embedded after it, and shows the forest plot once."""
    import json

    from samrepro.study import plots

    s = settings.settings("smoke", output_dir=tmp_path)
    claims = [{"claim": "C1", "statement": "ISC beats OBS", "verdict": "holds 1",
               "evidence": ["embedded isc vs obs ptb: -3% [-5%, -1%]: holds"]}]
    folder = report.write(s, "t", pd.DataFrame([{"model": "embedded", "ptb": 1.5}]), claims,
                          notes="Table t: a note")
    assert json.loads((folder / "t.json").read_text())["settings"]["alpha"] == 0.1
    (folder / "t.png").write_bytes(b"png")
    (folder / "t-forest.png").write_bytes(b"png")
    plots.embed(folder / "t.md", folder / "t.png", "a caption")
    report.rerender(folder / "t.json")
    md = (folder / "t.md").read_text()
    assert "Table t: a note" in md and "*t.png: a caption*" in md and md.count("(t-forest.png)") == 1
    assert "SmolLM2-135M isc vs obs ptb" in md
    assert md.index("## The paper's claims") < md.index("(t.png)") < md.index("## Provenance")
    report.rerender(folder / "t.json")  # again: nothing doubles
    assert (folder / "t.md").read_text() == md


def test_every_table_and_figure_notebook_plans_first_at_the_paper_preset(monkeypatch):
    """Issue 19: at the paper preset a notebook prints the plan (and refuses what cannot fit)
    in its settings cell, before any run: every notebook's settings cell is settings.notebook,
    which shows the plan at the paper preset only."""
    import json
    from pathlib import Path

    from samrepro.machine import plan

    shown = []
    monkeypatch.setattr(plan, "show", lambda s, lm_eval: shown.append((s["preset"], lm_eval)))
    folder = Path(__file__).resolve().parents[1] / "notebooks"
    for path in sorted(folder.glob("*.ipynb")):
        if path.stem == "walkthrough":
            continue
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        assert f'settings.notebook("{path.stem}", globals())' in "".join(cells[1]["source"])
        for preset in ("paper", "smoke"):
            settings.notebook(path.stem, {"preset": preset}, show=False)
        assert shown.pop() == ("paper", path.stem == "table3") and not shown, path.name


def test_tidy_notebook_keeps_the_last_redraw_of_each_progress_bar_line(tmp_path):
    import json

    def stream(text, name="stderr"):
        return {"name": name, "output_type": "stream", "text": text}

    result = {"output_type": "execute_result", "execution_count": 1, "metadata": {},
              "data": {"text/plain": ["42"]}}
    cells = [{"cell_type": "code", "id": "a", "source": "", "metadata": {}, "execution_count": 1,
              "outputs": [
        stream(["\r", "run:   0%| 0/2"]), stream("\r"), stream("run:  50%| 1/2"),
        # a nested bar one line down, returning with the cursor-up code
        stream("\n\rtask: 1/3\x1b[A"), stream("\n\rtask: 3/3\x1b[A"),
        stream("\rrun: 100%| 2/2\n\n"), stream("kept as printed\n", "stdout"), result,
        stream(["\rshort\rlonger line\rmid"])]},
        {"cell_type": "markdown", "id": "b", "source": "text", "metadata": {}}]
    path = tmp_path / "out.ipynb"
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))
    report.tidy_notebook(path)
    tidied = json.loads(path.read_text())["cells"]
    outputs = tidied[0]["outputs"]
    assert [o.get("name", o["output_type"]) for o in outputs] == [
        "stderr", "stdout", "execute_result", "stderr"]
    def text(out):  # stored as a list of lines
        return "".join(out["text"])

    assert text(outputs[0]) == "run: 100%| 2/2\ntask: 3/3\n"
    assert text(outputs[1]) == "kept as printed\n" and outputs[2] == result
    assert text(outputs[3]) == "midger line\n"  # what a terminal would show
    assert tidied[1] == {**cells[1], "source": ["text"]}


def test_run_all_hides_the_per_model_loading_bar_and_restores_it(monkeypatch):
    """One bar over a notebook's runs; transformers' bar over each model's weights would print
    one more a run into the output notebook."""
    from transformers.utils import logging as hf_logging

    inside = []
    monkeypatch.setattr(settings, "run", lambda cfg, *a, **k: inside.append(
        hf_logging.is_progress_bar_enabled()) or {"config": cfg})
    hf_logging.enable_progress_bar()
    s = settings.settings("smoke", models=["tiny-opt"])
    assert settings.run_all(s, ["a", "b"]) == [{"config": "a"}, {"config": "b"}]
    assert inside == [False, False] and hf_logging.is_progress_bar_enabled()


def test_atomic_writes_give_a_plain_file_s_permissions(tmp_path):
    """Results written through a temporary file are readable as any file the user writes
    (mkstemp alone makes them owner-only)."""
    import os
    import stat

    from samrepro.io.files import write_text

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = write_text(tmp_path / "r.json", "{}")
    assert stat.S_IMODE(os.stat(written).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


def test_markdown_says_when_c4_is_a_local_sample():
    result = {"preset": "embedded", "rows": [{"model": "embedded", "c4": 60.0}], "claims": [],
              "inputs": {"data": {"local:c4/c4_validation_2k.jsonl (C4 sample)": {"sha256": "x"}}}}
    assert "sample of C4's validation split" in report.markdown("t", result)
    result["inputs"]["data"] = {"hub:allenai/c4 validation": {"sha256": "x"}}
    assert "sample of C4" not in report.markdown("t", result)
