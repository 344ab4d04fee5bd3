"""Paired intervals over calibration seeds and evaluation windows, and the verdicts
(docs/method.md §7).

One-shot pruning is chaotic under float rounding, and a calibration seed moves perplexity by
more than the paper's effects on small models, so no comparison is decided by one run. Each
arm is run once per seed; both arms of a comparison share the seeds (the same calibration
windows) and the evaluation windows. The data of a comparison are the paired differences of
per-window mean NLL, d[s, w] = nll_A[s, w] − nll_B[s, w], over S seeds × W windows, a crossed
design: the same windows are scored after every seed.

The interval is that of a crossed random-effects model d[s, w] = μ + a_s + b_w + e_sw, whose
grand mean has variance σ²_seed/S + σ²_window/W + σ²_residual/(SW). A two-way analysis of
variance without replication gives the three mean squares MS_seed, MS_window, MS_residual,
and the unbiased estimate

    SE² = (MS_seed + MS_window − MS_residual) / (SW),

each component counted once (the spread of the seed means and that of the window means each
carry the residual too, so adding var(seed means)/S and var(window means)/W would count it
twice). SE² is floored at the residual term MS_residual/(SW), its smallest honest value; the
quantile is Student's t with Satterthwaite's degrees of freedom for that combination of mean
squares. We use this rather than a two-level bootstrap because with the few seeds a CPU
affords (2-10) a bootstrap over seeds has only a handful of distinct resamples and intervals
that are too narrow; the t quantile widens them for few seeds, as it should
(tests/test_stats.py checks coverage and width on synthetic crossed data with a known answer).
With one seed the seed component cannot be seen: the interval carries the windows' spread
only, and claims.py calls such a cell undecided. A perplexity ratio is exp of a mean NLL
difference, so the relative change exp(m) − 1 and its interval follow from m's.
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


def crossed_variance(parts):
    """(mean, SE², degrees of freedom) of the average over `parts` of each part's grand mean;
    each part an array (..., seeds, units) over the same seeds, computed over the two last
    axes and vectorized over the leading ones (the module docstring; average_interval).

    Terms, each with its degrees of freedom: the spread of the per-seed averages over the
    parts, /S (seed and residual); per part t of K_t units the spread of its unit means, /K_t
    (unit and residual), and minus its residual mean square /(S·K_t), both weighted 1/T²."""
    parts = [np.asarray(p, dtype=float) for p in parts]
    seeds, count = parts[0].shape[-2], len(parts)
    per_seed = np.mean([p.mean(-1) for p in parts], axis=0)
    terms, residual = [], []  # (value, df)
    if seeds > 1:
        terms.append((per_seed.var(-1, ddof=1) / seeds, seeds - 1))
    for p in parts:
        units = p.shape[-1]
        terms.append((p.mean(-2).var(-1, ddof=1) / units / count**2, units - 1))
        if seeds > 1:
            e = (p - p.mean(-1, keepdims=True) - p.mean(-2, keepdims=True)
                 + p.mean((-2, -1), keepdims=True))
            df = (seeds - 1) * (units - 1)
            residual.append(((e**2).sum((-2, -1)) / df / (seeds * units) / count**2, df))
    variance = sum(v for v, _ in terms) - sum(v for v, _ in residual)
    spread = sum(v**2 / df for v, df in terms + residual)
    if residual:
        floor = sum(v for v, _ in residual)
        floored = variance < floor
        variance = np.where(floored, floor, variance)
        spread = np.where(floored, sum(v**2 / df for v, df in residual), spread)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(spread > 0, variance**2 / np.where(spread > 0, spread, 1), np.inf)
    return per_seed.mean(-1), variance, df


def t_quantile(df, level: float = LEVEL):
    """Student's t quantile for a two-sided `level` interval (df may be an array, or inf)."""
    from scipy.stats import t
    return t.ppf((1 + level) / 2, df)


def mean_interval(d, level: float = LEVEL) -> Interval:
    """Interval of the grand mean of a seeds × windows array (see the module docstring)."""
    return average_interval([d], level)


def average_interval(parts, level: float = LEVEL) -> Interval:
    """Interval of the average over `parts` (e.g. Table 3's four tasks) of each part's grand
    mean; each part is a seeds × units array over the same seeds (units: windows, documents).

    The seed component is taken from the per-seed averages over all parts, since one seed's
    pruned model moves every part at once; the unit and residual components add up part by
    part, each weighted 1/T² (T parts). With one part this is the module docstring's
    interval."""
    parts = [np.asarray(p, dtype=float) for p in parts]
    if not parts or any(p.ndim != 2 or p.shape[1] < 2 or p.shape[0] != parts[0].shape[0]
                        for p in parts):
        raise ValueError("need seeds × units arrays with the same seeds and ≥ 2 units each, "
                         f"got shapes {[p.shape for p in parts]}")
    m, variance, df = (float(x) for x in crossed_variance(parts))
    half = float(t_quantile(df, level)) * math.sqrt(variance) if variance > 0 else 0.0
    return Interval(m, m - half, m + half, parts[0].shape[0], sum(p.shape[1] for p in parts))


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
