"""Claim rules (samrepro.study.claims) on hand-built runs whose answer is known."""

import numpy as np
import pytest

from samrepro.study.claims import (growing_gain, higher_accuracy, keeps_sparsity, lower_perplexity,
                                   paired_probe_interval, seed_free, verdict)

TASKS = ("arc_challenge", "hellaswag", "truthfulqa_mc2", "piqa")


def _runs(per_task: dict[str, np.ndarray]) -> list[dict]:
    """One run per row (seed) of each task's seeds × documents scores."""
    seeds = len(next(iter(per_task.values())))
    return [{"accuracy": {"zero-shot": {t: {"per_document": list(map(float, x[s]))}
                                        for t, x in per_task.items()}}} for s in range(seeds)]


@pytest.fixture
def base():
    rng = np.random.default_rng(0)  # documents of every difficulty: about half answered right
    return {t: np.repeat(rng.integers(0, 2, (1, 40)), 3, axis=0) for t in TASKS}


def _flip(scores: dict, count: int, to: int) -> dict:
    """The same answers with the first `count` documents that differ from `to` set to it."""
    out = {}
    for t, x in scores.items():
        x = x.copy()
        x[:, np.flatnonzero(x[0] != to)[:count]] = to
        out[t] = x
    return out


def test_the_same_answers_are_identical_and_outside_the_counts(base):
    cell = higher_accuracy(_runs(base), _runs(base), "zero-shot", TASKS, "same")
    assert cell["outcome"] == "identical" and cell["difference"] == 0
    record = verdict("T3", "x", [cell])
    assert record["counts"] == {"holds": 0, "fails": 0, "inconclusive": 0}
    assert record["outside"] == {"identical": 1}


def test_eight_more_right_answers_in_forty_hold_and_eight_fewer_fail(base):
    """Unpaired, 50% vs 70% on 40 documents is within the noise (SE ≈ 11 points each);
    paired, the other 32 documents cancel and +20 points is decided."""
    better = higher_accuracy(_runs(_flip(base, 8, 1)), _runs(base), "zero-shot", TASKS, "better")
    assert better["difference"] == pytest.approx(100 * 8 / 40)
    assert better["outcome"] == "holds"
    worse = higher_accuracy(_runs(_flip(base, 8, 0)), _runs(base), "zero-shot", TASKS, "worse")
    assert worse["difference"] == pytest.approx(-100 * 8 / 40)
    assert worse["outcome"] == "fails"


def test_one_more_right_answer_in_a_hundred_and_sixty_is_inconclusive(base):
    ours = {**base, "piqa": _flip({"piqa": base["piqa"]}, 1, 1)["piqa"]}
    cell = higher_accuracy(_runs(ours), _runs(base), "zero-shot", TASKS, "one")
    assert cell["difference"] == pytest.approx(100 / 40 / 4)
    assert cell["outcome"] == "inconclusive"


def test_a_seed_free_arm_pairs_with_every_seed_of_the_other():
    """An arm run once (the dense model, magnitude at uniform sparsity: tables._seed_free)
    against one run a seed gives what the same run repeated for every seed gives."""
    from samrepro.study.claims import lower_perplexity

    rng = np.random.default_rng(1)
    windows = rng.normal(3.0, 0.3, 32)
    ours = [{"perplexity": {"ptb": {"window_nll": list(windows + rng.normal(-0.05, 0.02, 32))}}}
            for _ in range(4)]
    once = [{"perplexity": {"ptb": {"window_nll": list(windows)}}}]
    got = lower_perplexity(ours, once, ["ptb"], "x")[0]
    want = lower_perplexity(ours, once * 4, ["ptb"], "x")[0]
    assert (got["change"], got["low"], got["high"]) == (want["change"], want["low"], want["high"])
    assert "(4 seeds × 32 windows)" in got["text"] and got["outcome"] == "holds"


def _ppl_runs(nll: np.ndarray, sparsity=0.5, config=None) -> list[dict]:
    """One run per row (seed) of a seeds × windows NLL array."""
    return [{"perplexity": {"ptb": {"window_nll": list(map(float, row))}},
             "achieved_sparsity": sparsity, **({"config": config} if config else {})}
            for row in nll]


def test_one_seed_is_undecided_however_large_the_effect():
    rng = np.random.default_rng(2)
    b = rng.normal(3.0, 0.3, (1, 32))
    (cell,) = lower_perplexity(_ppl_runs(b - 0.5), _ppl_runs(b), ["ptb"], "x")
    assert cell["outcome"] == "undecided" and cell["label"] == "undecided (1 seed)"
    assert cell["high"] < 0  # the interval alone would have said holds
    # two seed-free arms (the dense model against magnitude at uniform sparsity): no seed
    # can move either, so one run each decides
    dense = dict(sparsity=0.0, wbits=16, saliency="obs", allocation="uniform", nm=None)
    magnitude = {**dense, "sparsity": 0.5, "saliency": "magnitude"}
    (cell,) = lower_perplexity(_ppl_runs(b - 0.5, config=magnitude),
                               _ppl_runs(b, 0.0, config=dense), ["ptb"], "x")
    assert cell["outcome"] == "confounded"  # 50% against 0%: not a question of method
    (cell,) = lower_perplexity(_ppl_runs(b - 0.5, config=magnitude),
                               _ppl_runs(b + 0.0, config=magnitude), ["ptb"], "x")
    assert cell["outcome"] == "holds"


def test_gptq_reads_calibration_data_so_magnitude_with_gptq_is_seeded():
    magnitude = dict(sparsity=0.5, wbits=16, saliency="magnitude", allocation="uniform", nm=None)
    assert seed_free(magnitude)
    assert not seed_free({**magnitude, "wbits": 4})
    assert not seed_free({**magnitude, "sparsity": 0.0, "wbits": 4})
    assert not seed_free({**magnitude, "allocation": "exact"})


def test_arms_more_than_a_tenth_of_a_point_apart_are_confounded_and_not_counted():
    rng = np.random.default_rng(4)
    b = rng.normal(3.0, 0.3, (3, 32))
    a = b - 0.2 + rng.normal(0, 0.01, (3, 32))
    (cell,) = lower_perplexity(_ppl_runs(a, 0.5176), _ppl_runs(b, 0.5), ["ptb"], "x")
    assert cell["outcome"] == "confounded"
    assert cell["label"] == "confounded (Δ +1.76 points)"
    assert cell["achieved"] == [0.5176, 0.5]
    (near,) = lower_perplexity(_ppl_runs(a, 0.5009), _ppl_runs(b, 0.5), ["ptb"], "x")
    assert near["outcome"] == "holds"  # 0.09 point apart: decided
    record = verdict("C2", "x", [cell, near])
    assert record["counts"] == {"holds": 1, "fails": 0, "inconclusive": 0}
    assert record["outside"] == {"confounded": 1}
    assert "~0.1 of these 1" in record["verdict"] and "confounded 1" in record["verdict"]


def test_chance_alone_is_five_percent_of_the_counted_cells():
    cells = [{"outcome": o, "text": ""} for o in ["holds"] * 3 + ["inconclusive"] * 37]
    assert verdict("C", "x", cells)["chance"] == pytest.approx(0.05 * 40)


def _trend(gaps: list[float], seeds=3, windows=32, noise=0.002):
    """C3 runs whose method-minus-baseline NLL gap at sparsity 0.5, 0.6, 0.7 is `gaps`."""
    rng = np.random.default_rng(9)
    ours, base = {}, {}
    for p, gap in zip((0.5, 0.6, 0.7), gaps):
        b = rng.normal(3.0 + p, 0.3, (seeds, windows))
        base[p] = _ppl_runs(b, p)
        ours[p] = _ppl_runs(b + gap + rng.normal(0, noise, b.shape), p)
    return ours, base


def test_c3_needs_a_widening_gain_and_a_gain_at_the_top():
    cell = growing_gain(*_trend([-0.01, -0.03, -0.05]), "ptb", "x")
    assert cell["outcome"] == "holds" and cell["slope"] < 0
    # worse at every sparsity, the gap only shrinking: the slope is below 0, yet no gain
    cell = growing_gain(*_trend([0.05, 0.03, 0.01]), "ptb", "x")
    assert cell["slope"] < 0 and cell["high"] < 0 and cell["top"]["outcome"] == "fails"
    assert cell["outcome"] == "fails"
    assert growing_gain(*_trend([0.0, 0.0, 0.0], noise=0.0), "ptb", "x")["outcome"] == \
        "identical"


def test_c3_is_fitted_against_the_achieved_sparsity():
    ours, base = _trend([-0.01, -0.03, -0.05])
    for p in ours:
        for r in ours[p]:
            r["achieved_sparsity"] = p + 0.0168
    cell = growing_gain(ours, base, "ptb", "x")
    assert cell["x"] == pytest.approx([0.5168, 0.6168, 0.7168])
    assert cell["outcome"] == "confounded"  # the baseline was not matched


def test_c0_holds_within_a_tenth_of_a_point():
    runs = [{"achieved_sparsity": 0.5176}, {"achieved_sparsity": 0.5176}]
    assert keeps_sparsity(runs, 0.5, "paper")["outcome"] == "fails"
    assert keeps_sparsity([{"achieved_sparsity": 0.5009}], 0.5, "x")["outcome"] == "holds"
    assert "chance" not in verdict("C0", "x", [], chance=False)["verdict"]


def test_probe_differences_keep_the_covariance_and_use_t():
    """Two matrices measured with the same probes: a shared probe effect much larger than
    their difference cancels probe by probe; per-seed means give a t interval on S − 1
    degrees of freedom."""
    rng = np.random.default_rng(5)
    shared = rng.normal(0, 1.0, 20)  # each probe's zᵀHz moves both matrices together
    a, b = 10 + shared + rng.normal(0, 0.01, 20), 9.9 + shared + rng.normal(0, 0.01, 20)
    m, low, high, probes = paired_probe_interval([a], [b])
    assert m == pytest.approx(np.mean(a - b)) and probes == 20
    assert low > 0  # paired: decided; unpaired SEs would give ± ~0.6
    se = np.std(a - b, ddof=1) / np.sqrt(20)
    from scipy.stats import t
    assert high - m == pytest.approx(t.ppf(0.975, 19) * se)
    seeds = [rng.normal(1.0, 0.5, 8) for _ in range(3)]
    m, low, high, _ = paired_probe_interval(seeds, [np.zeros(8)] * 3)
    means = [x.mean() for x in seeds]
    assert high - m == pytest.approx(t.ppf(0.975, 2) * np.std(means, ddof=1) / np.sqrt(3))


def test_a_quantized_arm_is_matched_by_its_pruned_share_not_by_gptqs_zeros():
    """GPTQ rounds some weights to 0: zeros, but stored as 4-bit codes like the others."""
    from samrepro.study.claims import achieved

    quantized = {"wbits": 4, "sparsity": 0.5}
    runs = [{"achieved_sparsity": 0.5044, "planned_sparsity": 0.5, "config": quantized}]
    assert achieved(runs) == 0.5
    assert achieved([{**runs[0], "config": {"wbits": 16}}]) == 0.5044
