"""Paired intervals over calibration seeds and evaluation windows, and three-valued verdicts
(docs/method.md §7).

One-shot pruning is chaotic under float rounding, and a calibration seed moves perplexity by
more than the paper's effects on small models, so no comparison is decided by one run. Each
arm is run once per seed; both arms of a comparison share the seeds (the same calibration
windows) and the evaluation windows. The data of a comparison are the paired differences of
per-window mean NLL, d[s, w] = nll_A[s, w] − nll_B[s, w], over S seeds × W windows, a crossed
design: the same windows are scored after every seed.

The interval: the grand mean m of d, with a standard error from two variance components,
    SE² = var(seed means)/S + var(window means)/W,
the first carrying the seed-to-seed spread (calibration), the second the window-to-window
spread (which evaluation text was sampled); and a Student t quantile with Satterthwaite's
degrees of freedom. We use this rather than a two-level bootstrap because with the few seeds
a CPU affords (2-10) a bootstrap over seeds has only a handful of distinct resamples and
intervals that are too narrow; the t quantile widens them for few seeds, as it should
(tests/test_stats.py checks the coverage on synthetic data with a known answer). A
perplexity ratio is exp of a mean NLL difference, so the relative change exp(m) − 1 and its
interval follow from m's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    seeds: int
    windows: int


def mean_interval(d, level: float = LEVEL) -> Interval:
    """Interval of the grand mean of a seeds × windows array (see the module docstring)."""
    return average_interval([d], level)


def average_interval(parts, level: float = LEVEL) -> Interval:
    """Interval of the average over `parts` (e.g. Table 3's four tasks) of each part's grand
    mean; each part is a seeds × units array over the same seeds (units: windows, documents).

    The seed component is taken from the per-seed averages over all parts, since one seed's
    pruned model moves every part at once; the unit components add up part by part, each
    weighted 1/T² (T parts). With one part this is the module docstring's interval."""
    from scipy.stats import t

    parts = [np.asarray(p, dtype=float) for p in parts]
    if not parts or any(p.ndim != 2 or p.shape[1] < 2 or p.shape[0] != parts[0].shape[0]
                        for p in parts):
        raise ValueError("need seeds × units arrays with the same seeds and ≥ 2 units each, "
                         f"got shapes {[p.shape for p in parts]}")
    seeds, count = parts[0].shape[0], len(parts)
    per_seed = np.mean([p.mean(1) for p in parts], axis=0)
    components = [(per_seed.var(ddof=1) / seeds if seeds > 1 else 0.0, seeds - 1)]
    components += [(p.mean(0).var(ddof=1) / p.shape[1] / count**2, p.shape[1] - 1) for p in parts]
    variance = sum(v for v, _ in components)
    denominator = sum(v**2 / df for v, df in components if df > 0)
    df = variance**2 / denominator if denominator > 0 else float("inf")
    half = float(t.ppf((1 + level) / 2, df)) * math.sqrt(variance) if variance > 0 else 0.0
    m = float(per_seed.mean())
    return Interval(m, m - half, m + half, seeds, sum(p.shape[1] for p in parts))


def relative_change(nll_a, nll_b, level: float = LEVEL) -> Interval:
    """ppl_A / ppl_B − 1 with its paired interval, from seeds × windows NLL arrays."""
    i = mean_interval(np.asarray(nll_a, dtype=float) - np.asarray(nll_b, dtype=float), level)
    return Interval(math.expm1(i.estimate), math.expm1(i.low), math.expm1(i.high), i.seeds,
                    i.windows)


def perplexity_interval(nll, level: float = LEVEL) -> Interval:
    """One arm's perplexity exp(mean NLL) with its interval over seeds and windows."""
    i = mean_interval(nll, level)
    return Interval(math.exp(i.estimate), math.exp(i.low), math.exp(i.high), i.seeds, i.windows)


OUTCOMES = ("holds", "fails", "inconclusive")


def decide(low: float, high: float, claimed_below: float = 0.0) -> str:
    """`holds` when the interval lies wholly on the claimed side (below `claimed_below`),
    `fails` when wholly on the other side, else `inconclusive`."""
    if high < claimed_below:
        return "holds"
    if low > claimed_below:
        return "fails"
    return "inconclusive"


def summarize(outcomes: list[str]) -> tuple[str, dict[str, int]]:
    """('holds 3, fails 1, inconclusive 4', counts) for a claim's cells."""
    counts = {o: sum(x == o for x in outcomes) for o in OUTCOMES}
    if not outcomes:
        return "not tested", counts
    return ", ".join(f"{o} {counts[o]}" for o in OUTCOMES), counts
