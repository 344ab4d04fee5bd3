"""The committed embedded results are internally consistent: each claim's verdict follows
from the numbers stored beside it, and achieved sparsities match their targets.

Nothing is recomputed from a model: the verdict rules are written out here again, on the
stored rows, so that a table edited by hand or written by a buggy builder fails.
"""

import json
import math
import re
import statistics
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "results" / "embedded"
PPL = ("wikitext2", "ptb", "c4")


def _load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    if not path.exists():
        pytest.skip(f"{path} has not been produced yet")
    return json.loads(path.read_text())


def _pick(rows, **where) -> dict:
    found = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, where
    return found[0]


def _scored_streams(rows, models, **where) -> int:
    """How many (model, stream) perplexities the rows matching `where` hold (NaN: not scored)."""
    scored = [_pick(rows, model=m, **where) for m in models]
    return sum(len([k for k in PPL if k in r and r[k] == r[k]]) for r in scored)


def _unmatched(items: list[dict]) -> list[dict]:
    """Rows or cells without the matched arms of the new format (claims.FORMAT 2)."""
    return [x for x in items if not x.get("matched") and "matched (baseline" not in x.get("text", "")]


def test_table1_verdicts_and_sparsities():
    result = _load("table1")
    rows, models, p = result["rows"], result["settings"]["models"], result["settings"]["sparsities"][0]
    mixed = result["settings"]["allocation"]
    c2 = "C2" if mixed == "paper" else f"C2-{mixed}"
    # one cell a model and stream (test_three_valued_cells_… checks the cells' outcomes)
    cells = {c["claim"]: len(_unmatched(c["cells"])) for c in result["claims"] if c["claim"] != "C0"}
    streams = _scored_streams(_unmatched(rows), models, allocation="uniform", saliency="obs")
    assert cells == {"C1": streams, c2: 2 * streams}
    assert {r["allocation"] for r in rows} == {"uniform", mixed}
    for row in _unmatched(rows):
        if row["allocation"] == "paper":  # Algorithm 1 as printed drifts from p (either way)
            assert abs(row["achieved_sparsity"] - p) <= 0.1
        else:
            assert row["achieved_sparsity"] == pytest.approx(p, abs=1e-3)


def test_table2_verdict_and_sparsities():
    result = _load("table2")
    rows, models, p = result["rows"], result["settings"]["models"], result["settings"]["sparsities"][0]
    # T2 split in two, one cell a model and stream (test_three_valued_cells_… checks the cells)
    streams = _scored_streams(_unmatched(rows), models, method="ours")
    assert {c["claim"]: len(_unmatched(c["cells"])) for c in result["claims"]
            if c["claim"] != "C0"} == {
        "T2-magnitude": streams, "T2-sparsegpt": streams}
    for row in _unmatched(rows):
        if row["method"] == "dense":
            assert row["achieved_sparsity"] < 0.01
        elif row["method"] == "ours":  # Algorithm 1 as printed drifts from p (either way)
            assert abs(row["achieved_sparsity"] - p) <= 0.1
        else:
            assert row["achieved_sparsity"] == pytest.approx(p, abs=1e-3)


def test_table3_verdict_and_averages():
    result = _load("table3")
    rows, models = result["rows"], result["settings"]["models"]
    tasks = ("arc", "hellaswag", "truthfulqa", "piqa")
    for row in rows:
        assert row["avg"] == pytest.approx(sum(row[t] for t in tasks) / 4, abs=1e-2)
        assert all(0 <= row[t] <= 100 for t in tasks)
    # paired per document, one cell a model and setting (test_three_valued_cells_… checks them)
    assert len(result["claims"][0]["cells"]) == len(models) * len(result["settings"]["zero_shot_settings"])


def test_table4_verdict_and_compression_ratios():
    result = _load("table4")
    rows, models = result["rows"], result["settings"]["models"]
    streams = _scored_streams(_unmatched(rows), models, method="ours+gptq")  # a model and stream
    assert {c["claim"]: len(_unmatched(c["cells"])) for c in result["claims"]
            if c["claim"] != "C0"} == {"C4": streams}
    for row in _unmatched(rows):
        assert row["ratio"] == pytest.approx(16 / row["wbits"] / (1 - row["sparsity"]), abs=0.01)
        if row["method"] == "ours+gptq":  # Algorithm 1 as printed drifts from p (either way)
            assert abs(row["achieved_sparsity"] - row["sparsity"]) <= 0.1
        elif row["wbits"] < 16:  # weights rounded to the grid's zero add zeros
            assert row["achieved_sparsity"] >= row["sparsity"] - 1e-3
        else:
            assert row["achieved_sparsity"] == pytest.approx(row["sparsity"], abs=1e-3)


def test_figure3_verdict():
    result = _load("figure3")
    if result.get("format", 1) >= 2:  # fitted on achieved sparsity against matched arms:
        return  # recomputed from window_nll by test_committed_results_in_the_new_format_…
    rows, slopes = result["rows"], []
    ps = result["settings"]["figure3_sparsities"]
    for m in result["settings"]["models"]:
        logs = [math.log(_pick(rows, model=m, method="ours", sparsity=p)["ptb"]
                         / _pick(rows, model=m, method="sparsegpt", sparsity=p)["ptb"]) for p in ps]
        # the least-squares slope of log(ppl ours / ppl SparseGPT) against sparsity: each row's
        # perplexity is exp(mean NLL over seeds and windows), so its log-ratio is the mean gain
        mean_p, mean_log = statistics.mean(ps), statistics.mean(logs)
        slopes.append(sum((p - mean_p) * (y - mean_log) for p, y in zip(ps, logs))
                      / sum((p - mean_p) ** 2 for p in ps))
    cells = result["claims"][0]["cells"]  # a trend with its interval, one cell a model
    assert [c["slope"] for c in cells] == pytest.approx(slopes, rel=1e-6, abs=1e-9)


def _above_every(value, others) -> str:
    """(trace, stderr) above every one of `others`: each difference decided by a 95% normal
    interval; holds when all are decided above, fails when any is decided below."""
    below = above = 0
    for other in others:
        diff, half = value[0] - other[0], 1.959964 * math.hypot(value[1], other[1])
        above += diff - half > 0
        below += diff + half < 0
    return "holds" if above == len(others) else "fails" if below else "inconclusive"


def _outcomes(result: dict) -> list[str]:
    return [c["outcome"] for c in result["claims"][0]["cells"]]


def _paired_above_every(samples, unit, others) -> str:
    """`unit` above every one of `others` from per-probe samples ({unit: per-seed lists}):
    each difference paired probe by probe; one seed: the probes' t interval; several: the t
    interval of the per-seed means (docs/method.md §7)."""
    from scipy.stats import t

    above = below = 0
    for other in others:
        diffs = [[a - b for a, b in zip(x, y)] for x, y in zip(samples[unit], samples[other])]
        values = diffs[0] if len(diffs) == 1 else [statistics.mean(d) for d in diffs]
        mean, n = statistics.mean(values), len(values)
        half = t.ppf(0.975, n - 1) * statistics.stdev(values) / math.sqrt(n)
        above += mean - half > 0
        below += mean + half < 0
    return "holds" if above == len(others) else "fails" if below else "inconclusive"


def test_figure1_and_figure2_verdicts():
    layers = _load("figure1")
    if layers.get("format", 1) >= 2:
        outcomes = []
        for m, units in layers["probe_samples"].items():
            names = list(units)
            outcomes += [_paired_above_every(units, u, names[1:-1]) for u in (names[0], names[-1])]
        assert _outcomes(layers) == outcomes
        matrices = _load("figure2")
        outcomes = []
        for m, units in matrices["probe_samples"].items():
            down = "fc2" if "fc2" in units else "down_proj"
            outcomes += [_paired_above_every(units, u, [o for o in units if o not in (u, partner)])
                         for u, partner in (("v_proj", down), (down, "v_proj"))]
        assert _outcomes(matrices) == outcomes
        return
    outcomes = []  # first and last layer each above every middle layer, with standard errors
    for m in layers["settings"]["models"]:
        rows = sorted((r for r in layers["rows"] if r["model"] == m), key=lambda r: r["index"])
        middle = [(r["trace"], r["stderr"]) for r in rows[1:-1]]
        outcomes += [_above_every((r["trace"], r["stderr"]), middle) for r in (rows[0], rows[-1])]
    assert _outcomes(layers) == outcomes

    matrices = _load("figure2")
    outcomes = []  # v_proj and the down projection each above every other type
    for m in matrices["settings"]["models"]:
        by_type = {}
        for r in matrices["rows"]:
            if r["model"] == m:
                by_type.setdefault(r["type"], []).append((r["trace"], r["stderr"]))
        down = "fc2" if "fc2" in by_type else "down_proj"  # OPT's down projection
        # a type's mean over layers, with the standard error of that mean
        typed = {t: (statistics.mean(x for x, _ in v),
                     math.sqrt(sum(se ** 2 for _, se in v)) / len(v)) for t, v in by_type.items()}
        outcomes += [_above_every(typed[t], [typed[o] for o in typed if o not in (t, partner)])
                     for t, partner in (("v_proj", down), (down, "v_proj"))]
    assert _outcomes(matrices) == outcomes


@pytest.mark.parametrize("name", ["table1", "table2", "table3", "table4"])
def test_the_paper_folder_holds_the_papers_numbers(name):
    """results/paper/<table>.csv carries every printed number of paper_reference.json."""
    import csv

    reference = json.loads((Path(__file__).resolve().parents[1] / "samrepro"
                            / "study" / "paper_reference.json").read_text())["paper"][name]["rows"]
    with open(RESULTS.parent / "paper" / f"{name}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(reference)
    for row, ref in zip(rows, reference):
        for key, value in ref.items():
            if isinstance(value, (int, float)):
                assert float(row[key]) == pytest.approx(value), (name, key)
            else:
                assert row[key] == str(value), (name, key)


def test_allocations_verdicts_and_sparsities():
    result = _load("allocations")
    rows, models = result["rows"], result["settings"]["models"]
    # one cell a model, sparsity, saliency and scored stream (test_three_valued_cells_… checks
    # the cells)
    saliencies = result["settings"]["allocation_saliencies"]
    pairs = [(a, "uniform") for a in ("paper", "exact", "layer", "owl", "paper-code",
                                      "random", "depth")] + [("exact", "random"), ("exact", "depth")]
    expected = {}
    for mixed, base in pairs:
        label = ("C2" if mixed == "paper" else f"C2-{mixed}") if base == "uniform" \
            else f"control-{base}"
        expected[label] = sum(
            _scored_streams([r for r in _unmatched(rows) if r["sparsity"] == p], models,
                            allocation=mixed, saliency=sal)
            for p in result["settings"]["sparsities"] for sal in saliencies
            if mixed != "paper-code" or p < 0.8)
    assert {c["claim"]: len(_unmatched(c["cells"])) for c in result["claims"]
            if c["claim"] != "C0"} == expected
    assert {r["allocation"] for r in rows} == {"uniform", *(m for m, _ in pairs)}
    for row in _unmatched(rows):  # what was counted after pruning is what the allocation planned
        assert row["achieved_sparsity"] == pytest.approx(row["planned_sparsity"], abs=1e-3)
        if row["allocation"] not in ("paper", "paper-code"):  # the two rank-linear
            # schedules that ignore matrix sizes miss the target; the others are shifted to it
            assert row["achieved_sparsity"] == pytest.approx(row["sparsity"], abs=1e-3)


def _results_files() -> list[Path]:
    return sorted(p for p in RESULTS.glob("*.json") if "rows" in json.loads(p.read_text()))


def test_three_valued_cells_follow_their_intervals_and_the_counts_follow_the_cells():
    """A cell holds when its interval lies wholly below 0 (the claimed side), fails when wholly above, else is inconclusive; the claim's counts are
    its cells' outcomes. Written out here again, independently of samrepro.study.stats."""
    checked = 0
    for path in _results_files():
        for claim in json.loads(path.read_text())["claims"]:
            for cell in claim["cells"]:
                if "low" in cell and "high" in cell and cell.get("statistic") != "slope" \
                        and cell["outcome"] not in ("identical", "confounded", "undecided"):
                    low, high = cell["low"], cell["high"]
                    if "difference" in cell:  # accuracy: claimed above 0
                        low, high = -high, -low
                    expected = "holds" if high < 0 else "fails" if low > 0 else "inconclusive"
                    assert cell["outcome"] == expected, (path.name, claim["claim"], cell)
                    checked += 1
            counts = {o: sum(c["outcome"] == o for c in claim["cells"])
                      for o in ("holds", "fails", "inconclusive")}
            assert claim["counts"] == counts, (path.name, claim["claim"])
            if json.loads(path.read_text()).get("format", 1) < 2:  # new: chance, outside
                assert claim["verdict"] == ", ".join(f"{o} {n}" for o, n in counts.items())
    assert checked, "no committed cell has an interval"


def test_the_committed_results_come_from_the_current_code():
    """Every results file records its code hash (samrepro.io.provenance.code_hash). A result
    made before a change to the code that computes the numbers is allowed only while
    results/embedded/RERUN.md lists it as awaiting a re-run (the README says so); a listed
    file that has been re-run is taken off. So a change to NUMERIC_MODULES fails here until
    its results are re-run or listed."""
    from samrepro.io.provenance import code_hash

    hashes = {path.name: json.loads(path.read_text()).get("code") for path in _results_files()}
    assert None not in hashes.values(), f"results without a code hash (re-run them): {hashes}"
    listed = set(re.findall(r"^- `(\w+\.json)`", (RESULTS / "RERUN.md").read_text(), re.M))
    older = {name for name, h in hashes.items() if h != code_hash()}
    assert older <= listed, f"made by earlier code, not listed in RERUN.md: {sorted(older - listed)}"
    assert listed <= older, f"re-run, still listed in RERUN.md: {sorted(listed - older)}"


# ---- results in the new format (claims.FORMAT 2): every interval recomputes from the data ----
# Written out here again with numpy and scipy, independently of samrepro.stats: the crossed
# seeds × units interval of docs/method.md §7 from a two-way analysis of variance by sums of
# squares (SS_total = SS_seed + SS_unit + SS_residual), Satterthwaite's degrees of freedom,
# floored at the residual term.

def _anova(d):
    """(grand mean, MS_seed, MS_unit, MS_residual) of a seeds × units array."""
    import numpy as np

    S, K = d.shape
    grand = d.mean()
    ss_seed = K * ((d.mean(1) - grand) ** 2).sum()
    ss_unit = S * ((d.mean(0) - grand) ** 2).sum()
    ss_res = ((d - grand) ** 2).sum() - ss_seed - ss_unit
    return grand, ss_seed / max(S - 1, 1), ss_unit / (K - 1), \
        ss_res / ((S - 1) * (K - 1)) if S > 1 else np.nan


def _independent_interval(parts):
    """(estimate, low, high) of the average over parts (seeds × units each) of their means."""
    import numpy as np
    from scipy.stats import t

    parts = [np.asarray(p, dtype=float) for p in parts]
    T, S = len(parts), parts[0].shape[0]
    positive, negative = [], []  # (variance term, its degrees of freedom)
    if S > 1:
        per_seed = np.mean([p.mean(1) for p in parts], axis=0)
        positive.append((((per_seed - per_seed.mean()) ** 2).sum() / (S - 1) / S, S - 1))
    for p in parts:
        K = p.shape[1]
        _, _, ms_unit, ms_res = _anova(p)
        positive.append((ms_unit / (S * K) / T**2, K - 1))
        if S > 1:
            negative.append((ms_res / (S * K) / T**2, (S - 1) * (K - 1)))
    estimate = float(np.mean([p.mean() for p in parts]))
    variance = sum(v for v, _ in positive) - sum(v for v, _ in negative)
    terms = positive + negative
    if negative and variance < sum(v for v, _ in negative):
        variance, terms = sum(v for v, _ in negative), negative
    if variance <= 0:
        return estimate, estimate, estimate
    df = variance**2 / sum(v**2 / f for v, f in terms)
    half = t.ppf(0.975, df) * math.sqrt(variance)
    return estimate, estimate - half, estimate + half


def _recompute(result: dict, cell: dict):
    """(estimate, low, high) of a cell, from the result's window_nll / document_scores."""
    import numpy as np

    nll = result.get("window_nll", {})
    stat = cell["statistic"]
    if stat in ("relative_change", "mean_log_change"):
        a, b = cell["arms"]
        streams = [cell["stream"]] if stat == "relative_change" else cell["streams"]
        parts = [np.subtract(*np.broadcast_arrays(np.array(nll[a][s]), np.array(nll[b][s])))
                 for s in streams]
        return tuple(math.expm1(v) for v in _independent_interval(parts))
    if stat == "slope":
        x = np.array(cell["x"])
        gains = [np.array(nll[a][cell["stream"]]) - np.array(nll[b][cell["stream"]])
                 for a, b in cell["pairs"]]
        seeds = max(g.shape[0] for g in gains)
        gains = [np.broadcast_to(g, (seeds, g.shape[1])) for g in gains]
        centred = x - x.mean()
        slope = sum(c * g for c, g in zip(centred, gains)) / (centred**2).sum()
        return _independent_interval([slope])
    if stat == "accuracy_difference":
        a, b = cell["arms"]
        scores = result["document_scores"]
        parts = [np.array(scores[a][cell["setting"]][t]) - np.array(scores[b][cell["setting"]][t])
                 for t in cell["tasks"]]
        return _independent_interval(parts)
    return None


def check_new_format(result: dict) -> int:
    """Every interval of a format-2 result recomputed from its data; the outcome rules and
    the counts checked. Returns how many intervals were recomputed."""
    from samrepro.study.claims import TOLERANCE

    checked = 0
    for claim in result["claims"]:
        cells = [*claim.get("headlines", []), *claim["cells"]]
        for cell in cells:
            got = _recompute(result, cell)
            if got is not None:
                estimate = cell.get("change", cell.get("difference", cell.get("slope")))
                assert (estimate, cell["low"], cell["high"]) == pytest.approx(
                    got, rel=1e-7, abs=1e-12), (claim["claim"], cell["text"])
                checked += 1
            pair = cell.get("achieved")
            if pair and abs(pair[0] - pair[1]) > TOLERANCE and cell["outcome"] != "identical":
                assert cell["outcome"] == "confounded", cell["text"]
                assert cell["label"] == f"confounded (Δ {100 * (pair[0] - pair[1]):+.2f} points)"
            if cell["outcome"] in ("holds", "fails", "inconclusive") and "low" in cell \
                    and cell["statistic"] != "slope":
                low, high = cell["low"], cell["high"]
                if cell["statistic"] == "accuracy_difference":
                    low, high = -high, -low
                assert cell["outcome"] == ("holds" if high < 0 else "fails" if low > 0
                                           else "inconclusive"), cell["text"]
        counts = {o: sum(c["outcome"] == o for c in claim["cells"])
                  for o in ("holds", "fails", "inconclusive")}
        assert claim["counts"] == counts, claim["claim"]
    return checked


def test_new_format_results_recompute_from_their_own_data(tmp_path, monkeypatch):
    """Table 1 at the smoke preset, written to a scratch folder: every interval of its
    claims recomputes from the per-seed, per-window NLLs it carries; every confounded pair
    has its matched cell."""
    from samrepro.study import report, settings, tables

    s = settings.settings("smoke", output_dir=str(tmp_path))
    df, claims, paper = tables.table1(s)
    folder = report.write(s, "table1", df, claims, paper)
    result = json.loads((folder / "table1.json").read_text())
    assert result["format"] == 2 and result["window_nll"]
    assert check_new_format(result) >= len(result["claims"][0]["cells"])
    assert (folder / "table1-forest.png").exists()
    c2 = next(c for c in result["claims"] if c["claim"].startswith("C2"))
    for cell in c2["cells"]:
        if cell["outcome"] == "confounded":
            assert any(o["arms"][0] == cell["arms"][0] and o["stream"] == cell["stream"]
                       and abs(o["achieved"][0] - o["achieved"][1]) <= 0.001
                       for o in c2["cells"]), cell["text"]
    c0 = next(c for c in result["claims"] if c["claim"] == "C0")
    for cell in c0["cells"]:
        assert cell["outcome"] == ("holds" if abs(cell["achieved_sparsity"] - cell["target"])
                                   <= 0.001 else "fails")


def test_committed_results_in_the_new_format_recompute_from_their_data():
    """The same check on every committed result that carries the new format (none before
    the re-run of issue 31's item 9)."""
    for path in _results_files():
        result = json.loads(path.read_text())
        if result.get("format", 1) >= 2:
            check_new_format(result)
