"""Claim rules (samrepro.claims) on hand-built runs whose answer is known."""

import numpy as np
import pytest

from samrepro.claims import higher_accuracy

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


def test_the_same_answers_are_inconclusive(base):
    cell = higher_accuracy(_runs(base), _runs(base), "zero-shot", TASKS, "same")
    assert cell["outcome"] == "inconclusive" and cell["difference"] == 0


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
    from samrepro.claims import lower_perplexity

    rng = np.random.default_rng(1)
    windows = rng.normal(3.0, 0.3, 32)
    ours = [{"perplexity": {"ptb": {"window_nll": list(windows + rng.normal(-0.05, 0.02, 32))}}}
            for _ in range(4)]
    once = [{"perplexity": {"ptb": {"window_nll": list(windows)}}}]
    got = lower_perplexity(ours, once, ["ptb"], "x")[0]
    want = lower_perplexity(ours, once * 4, ["ptb"], "x")[0]
    assert (got["change"], got["low"], got["high"]) == (want["change"], want["low"], want["high"])
    assert "(4 seeds × 32 windows)" in got["text"] and got["outcome"] == "holds"
