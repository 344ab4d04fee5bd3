"""The rules that decide the paper's claims (docs/method.md §7), in one place.

A claim is judged in cells (one model, one stream, one sparsity, ...). Each cell is a paired
comparison over calibration seeds and evaluation windows with a 95% interval (samrepro.stats)
and is `holds`, `fails` or `inconclusive`; a claim reports the three counts.
"""

from __future__ import annotations

import math

import numpy as np

from .stats import average_interval, decide, mean_interval, relative_change, summarize

Z95 = 1.959963984540054  # normal quantile for intervals built from standard errors


def verdict(claim: str, statement: str, cells: list[dict]) -> dict:
    """A claim's record: the counts of its cells' outcomes and each cell's evidence line."""
    text, counts = summarize([c["outcome"] for c in cells])
    return {"claim": claim, "statement": statement, "verdict": text, "counts": counts,
            "evidence": [c["text"] for c in cells], "cells": cells}


def window_nll(results: list[dict], stream: str) -> np.ndarray:
    """Seeds × windows per-window NLL of one arm (its runs, one per seed, in seed order)."""
    return np.array([r["perplexity"][stream]["window_nll"] for r in results])


def lower_perplexity(a: list[dict], b: list[dict], streams, label: str) -> list[dict]:
    """Arm A beats arm B (lower perplexity) on each stream both were scored on: the paired
    relative change ppl_A/ppl_B − 1, claimed below 0."""
    cells = []
    for stream in streams:
        if stream not in a[0]["perplexity"] or stream not in b[0]["perplexity"]:
            continue
        change = relative_change(window_nll(a, stream), window_nll(b, stream))
        outcome = decide(change.low, change.high)
        cells.append({"outcome": outcome, "stream": stream, "change": change.estimate,
                      "low": change.low, "high": change.high,
                      "text": f"{label} {stream}: {change.estimate:+.2%} "
                              f"[{change.low:+.2%}, {change.high:+.2%}] ({change.seeds} seeds × "
                              f"{change.windows} windows): {outcome}"})
    return cells


def growing_gain(ours: dict[float, list[dict]], base: dict[float, list[dict]], stream: str,
                 label: str) -> dict:
    """C3: the method's log-perplexity gain over the baseline grows with sparsity. The cell is
    the least-squares slope over sparsities of log(ppl_ours/ppl_base), per seed and window,
    with its interval; claimed below 0 (a gain that widens)."""
    ps = sorted(ours)
    x = np.array(ps) - np.mean(ps)
    gains = np.stack([window_nll(ours[p], stream) - window_nll(base[p], stream) for p in ps])
    slope = mean_interval(np.tensordot(x, gains, axes=1) / (x ** 2).sum())
    outcome = decide(slope.low, slope.high)
    return {"outcome": outcome, "stream": stream, "slope": slope.estimate, "low": slope.low,
            "high": slope.high,
            "text": f"{label} {stream}: slope of log(ppl ours / ppl baseline) over sparsity "
                    f"{ps[0]:.0%}–{ps[-1]:.0%}: {slope.estimate:+.3f} [{slope.low:+.3f}, "
                    f"{slope.high:+.3f}] per unit sparsity ({slope.seeds} seeds × "
                    f"{slope.windows} windows): {outcome}"}


def above_all(value: float, stderr: float, others: dict[str, tuple[float, float]],
              label: str) -> dict:
    """One estimate above every one of `others` ({name: (value, stderr)}): each difference
    with a 95% normal interval from the standard errors; the cell holds when every
    difference is decided above, fails when any is decided below, else is inconclusive."""
    outcomes = []
    for other, other_se in others.values():
        half = Z95 * math.hypot(stderr, other_se)
        outcomes.append(decide(other - value - half, other - value + half))
    if all(o == "holds" for o in outcomes):
        outcome = "holds"
    elif any(o == "fails" for o in outcomes):
        outcome = "fails"
    else:
        outcome = "inconclusive"
    above = outcomes.count("holds")
    below = outcomes.count("fails")
    return {"outcome": outcome,
            "text": f"{label} {value:.3g} ± {stderr:.2g}: decided above {above}, below {below}, "
                    f"undecided {len(outcomes) - above - below} of {len(outcomes)}: {outcome}"}


def document_scores(results: list[dict], setting: str, task: str) -> np.ndarray:
    """Seeds × documents headline accuracy of one arm on one task, in points (0–100)."""
    return 100 * np.array([r["accuracy"][setting][task]["per_document"] for r in results])


def higher_accuracy(ours: list[dict], base: list[dict], setting: str, tasks, label: str) -> dict:
    """T3 on one model and setting: the method's average accuracy over `tasks` above the
    baseline's. Paired per seed and document (same calibration seeds, same documents): each
    task gives a seeds × documents array of score differences, and the average over tasks
    gets its interval from stats.average_interval; in points, claimed above 0."""
    diff = average_interval([document_scores(ours, setting, t) - document_scores(base, setting, t)
                             for t in tasks])
    outcome = decide(-diff.high, -diff.low)
    return {"outcome": outcome, "difference": diff.estimate, "low": diff.low, "high": diff.high,
            "text": f"{label}: {diff.estimate:+.1f} points [{diff.low:+.1f}, {diff.high:+.1f}] "
                    f"({diff.seeds} seeds × {diff.windows} documents, paired): {outcome}"}
