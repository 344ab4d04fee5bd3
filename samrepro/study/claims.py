"""The rules that decide the paper's claims (docs/method.md §7), in one place.

A claim is judged in cells (one model, one stream, one sparsity, ...). Each cell is a paired
comparison over calibration seeds and evaluation windows with a 95% interval (samrepro.study.stats).
A cell is decided only where the data can decide it:

- `identical`: the two arms gave the same numbers (e.g. an allocation that equals uniform);
- `confounded`: the arms' achieved sparsities differ by more than 0.1 point (TOLERANCE), so
  the difference mixes the method with the sparsity; tables.py adds the matched pair;
- `undecided`: one seed of a seeded arm, so the seed-to-seed spread is not seen;
- else `holds`, `fails` or `inconclusive` by the interval (stats.decide).

A claim counts only the last three and keeps the others visible, outside the counts; its
summary also says how many decided cells chance alone would give, and gives one headline cell
per model and sparsity (the average over the streams).
"""

from __future__ import annotations

import math

import numpy as np

from samrepro.study.stats import (LEVEL, average_interval, decide, mean_interval, relative_change,
                                  summarize, t_quantile)

TOLERANCE = 0.001  # 0.1 percentage point of overall sparsity: arms further apart are confounded
OUTSIDE = ("identical", "confounded", "undecided")  # outcomes kept outside the counts
FORMAT = 2  # results written with these cells (labels, achieved, arms; window_nll beside them)


def seed_free(config) -> bool:
    """Whether a run reads nothing that a seed draws (calibration windows, probes), so that
    every seed gives the same run: the dense model, and magnitude pruning at uniform sparsity
    without quantization (pipeline.prune_model: no forward passes). GPTQ reads calibration
    data, so a quantized run is seeded even with magnitude saliency. `config`: a RunConfig
    or its key dict."""
    get = config.get if isinstance(config, dict) else lambda k: getattr(config, k)
    if get("sparsity") == 0 and get("wbits") >= 16:
        return True
    uniform = get("allocation") == "uniform" or get("nm") is not None
    return get("saliency") == "magnitude" and uniform and get("wbits") >= 16


def _seeded(runs: list[dict]) -> bool:
    """Whether an arm's runs depend on the seed (runs without a config count as seeded)."""
    return any("config" not in r or not seed_free(r["config"]) for r in runs)


def achieved(runs: list[dict]) -> float | None:
    """An arm's achieved overall sparsity, the mean over its runs (None if not recorded).
    For a quantized run the pruned share (its plan: the zeros GPTQ rounds weights to are
    stored as codes like any other weight, so they add no compression and are no pruning)."""
    def pruned(r):
        quantized = r.get("config", {}).get("wbits", 16) < 16
        return r["planned_sparsity"] if quantized and "planned_sparsity" in r \
            else r["achieved_sparsity"]

    values = [pruned(r) for r in runs if "achieved_sparsity" in r]
    return float(np.mean(values)) if values else None


def pair_achieved(a: list[dict], b: list[dict]) -> list[float] | None:
    x, y = achieved(a), achieved(b)
    return None if x is None or y is None else [round(x, 6), round(y, 6)]


def judge(low: float, high: float, *, identical: bool, one_seed: bool,
          sparsities: list[float] | None = None, claimed_below: float = 0.0) -> tuple[str, str]:
    """(outcome, label) of a cell, in the order of the module docstring."""
    if identical:
        return "identical", "identical"
    if sparsities is not None and abs(sparsities[0] - sparsities[1]) > TOLERANCE:
        return "confounded", f"confounded (Δ {100 * (sparsities[0] - sparsities[1]):+.2f} points)"
    if one_seed:
        return "undecided", "undecided (1 seed)"
    outcome = decide(low, high, claimed_below)
    return outcome, outcome


def _one_seed(d: np.ndarray, *arms) -> bool:
    return d.shape[0] < 2 and any(_seeded(a) for a in arms)


def _sparsity_text(pair) -> str:
    return f", achieved {pair[0]:.2%} vs {pair[1]:.2%}" if pair else ""


def verdict(claim: str, statement: str, cells: list[dict],
            headlines: list[dict] | None = None, chance: bool = True) -> dict:
    """A claim's record: the counts of its decidable cells' outcomes, the cells kept outside
    the counts, the number of decided cells chance alone would give, its headline cells (one
    per model and sparsity) and each cell's evidence line. `chance`: False for cells decided
    by arithmetic rather than by an interval (C0)."""
    headlines = headlines or []
    counted = [c["outcome"] for c in cells if c["outcome"] not in OUTSIDE]
    text, counts = summarize(counted)
    outside = {o: sum(c["outcome"] == o for c in cells) for o in OUTSIDE}
    outside = {o: n for o, n in outside.items() if n}
    chance = (1 - LEVEL) * len(counted) if chance else 0.0
    if counted and chance:
        text += f" (no effect at all would decide ~{chance:.1f} of these {len(counted)})"
    if outside:
        text += "; outside the counts: " + ", ".join(f"{o} {n}" for o, n in outside.items())
    record = {"claim": claim, "statement": statement, "verdict": text, "counts": counts,
              "outside": outside, "chance": chance,
              "evidence": [h["text"] for h in headlines] + [c["text"] for c in cells],
              "cells": cells}
    if headlines:
        record["headlines"] = headlines
        record["headline_verdict"] = summarize(
            [h["outcome"] for h in headlines if h["outcome"] not in OUTSIDE])[0]
    return record


def window_nll(results: list[dict], stream: str) -> np.ndarray:
    """Seeds × windows per-window NLL of one arm (its runs, one per seed, in seed order)."""
    return np.array([r["perplexity"][stream]["window_nll"] for r in results])


def _shared(a, b, streams) -> list[str]:
    return [s for s in streams if s in a[0].get("perplexity", {})
            and s in b[0].get("perplexity", {})]


def lower_perplexity(a: list[dict], b: list[dict], streams, label: str,
                     arms: tuple[str, str] = ("A", "B")) -> list[dict]:
    """Arm A beats arm B (lower perplexity) on each stream both were scored on: the paired
    relative change ppl_A/ppl_B − 1, claimed below 0. `arms` names the two arms as the
    result's `window_nll` does."""
    cells, pair = [], pair_achieved(a, b)
    for stream in _shared(a, b, streams):
        d = window_nll(a, stream) - window_nll(b, stream)
        change = relative_change(window_nll(a, stream), window_nll(b, stream))
        outcome, shown = judge(change.low, change.high, identical=not np.any(d),
                               one_seed=_one_seed(d, a, b), sparsities=pair)
        cells.append({"outcome": outcome, "label": shown, "statistic": "relative_change",
                      "arms": list(arms), "stream": stream, "change": change.estimate,
                      "low": change.low, "high": change.high, "seeds": change.seeds,
                      "windows": change.windows, **({"achieved": pair} if pair else {}),
                      "text": f"{label} {stream}: {change.estimate:+.2%} "
                              f"[{change.low:+.2%}, {change.high:+.2%}] ({change.seeds} seeds × "
                              f"{change.windows} windows{_sparsity_text(pair)}): {shown}"})
    return cells


def headline(a: list[dict], b: list[dict], streams, label: str,
             arms: tuple[str, str] = ("A", "B")) -> list[dict]:
    """The headline cell of a pair of arms: the average over the streams of the log-perplexity
    change (one seed component shared by the streams, stats.average_interval), shown as the
    relative change exp(·) − 1; [] when no stream is shared."""
    shared = _shared(a, b, streams)
    if not shared:
        return []
    parts = [window_nll(a, s) - window_nll(b, s) for s in shared]
    i = average_interval(parts)
    pair = pair_achieved(a, b)
    outcome, shown = judge(i.low, i.high, identical=not any(np.any(p) for p in parts),
                           one_seed=_one_seed(parts[0], a, b), sparsities=pair)
    low, high, est = math.expm1(i.low), math.expm1(i.high), math.expm1(i.estimate)
    return [{"outcome": outcome, "label": shown, "statistic": "mean_log_change",
             "headline": True, "arms": list(arms), "streams": shared, "change": est,
             "low": low, "high": high, "seeds": i.seeds, "windows": i.windows,
             **({"achieved": pair} if pair else {}),
             "text": f"{label} (headline, average over {', '.join(shared)}): {est:+.2%} "
                     f"[{low:+.2%}, {high:+.2%}]{_sparsity_text(pair)}: {shown}"}]


def growing_gain(ours: dict[float, list[dict]], base: dict[float, list[dict]], stream: str,
                 label: str, arms: dict[float, tuple[str, str]] | None = None) -> dict:
    """C3: the method's log-perplexity gain over the baseline grows with sparsity, and it is
    a gain. The slope: least squares, per seed and window, of log(ppl_ours/ppl_base) against
    the method's achieved sparsity, with its interval; the top cell: the relative change at
    the highest sparsity. Holds only when the slope is decided below 0 and the top cell
    holds; fails when either is decided the other way; else inconclusive."""
    ps = sorted(ours)
    x = np.array([achieved(ours[p]) if achieved(ours[p]) is not None else p for p in ps])
    gains = [window_nll(ours[p], stream) - window_nll(base[p], stream) for p in ps]
    seeds = max(g.shape[0] for g in gains)
    gains = np.stack([np.broadcast_to(g, (seeds, g.shape[1])) for g in gains])
    centred = x - x.mean()
    slope = mean_interval(np.tensordot(centred, gains, axes=1) / (centred ** 2).sum())
    top = relative_change(window_nll(ours[ps[-1]], stream), window_nll(base[ps[-1]], stream))
    pairs = [pair_achieved(ours[p], base[p]) for p in ps]
    worst = max((q for q in pairs if q), key=lambda q: abs(q[0] - q[1]), default=None)
    outcome, shown = judge(slope.low, slope.high, identical=not np.any(gains),
                           one_seed=seeds < 2 and any(_seeded(ours[p]) for p in ps),
                           sparsities=worst)
    if outcome in ("holds", "fails", "inconclusive"):
        both = (decide(slope.low, slope.high), decide(top.low, top.high))
        outcome = "holds" if both == ("holds", "holds") else \
            "fails" if "fails" in both else "inconclusive"
        shown = outcome
    names = arms or {p: ("A", "B") for p in ps}
    return {"outcome": outcome, "label": shown, "statistic": "slope", "stream": stream,
            "slope": slope.estimate, "low": slope.low, "high": slope.high,
            "x": [float(v) for v in x], "pairs": [list(names[p]) for p in ps],
            "top": {"change": top.estimate, "low": top.low, "high": top.high,
                    "outcome": decide(top.low, top.high)},
            "seeds": slope.seeds, "windows": slope.windows,
            **({"achieved": worst} if worst else {}),
            "text": f"{label} {stream}: slope of log(ppl ours / ppl baseline) over achieved "
                    f"sparsity {x[0]:.2%}–{x[-1]:.2%}: {slope.estimate:+.3f} [{slope.low:+.3f}, "
                    f"{slope.high:+.3f}] per unit sparsity; at {x[-1]:.2%}: {top.estimate:+.2%} "
                    f"[{top.low:+.2%}, {top.high:+.2%}] ({slope.seeds} seeds × "
                    f"{slope.windows} windows): {shown}"}


def paired_probe_interval(samples_a: list[np.ndarray], samples_b: list[np.ndarray],
                          level: float = LEVEL) -> tuple[float, float, float, int]:
    """(mean, low, high, probes) of sensitivity A − B from per-probe samples: one array of
    per-probe values per seed, A and B measured with the same probes (so their covariance is
    kept by differencing probe by probe). A nested design (probes within seeds): with one
    seed, the probes' t interval; with S seeds, the t interval of the S per-seed means (which
    carry both the probe and the calibration spread), S − 1 degrees of freedom."""
    diffs = [np.asarray(a, float) - np.asarray(b, float) for a, b in zip(samples_a, samples_b)]
    probes = sum(len(d) for d in diffs)
    if len(diffs) == 1:
        values = diffs[0]
    else:
        values = np.array([d.mean() for d in diffs])
    m = float(values.mean())
    if len(values) < 2:
        return m, -math.inf, math.inf, probes
    half = float(t_quantile(len(values) - 1, level)) * float(values.std(ddof=1)) \
        / math.sqrt(len(values))
    return m, m - half, m + half, probes


def above_all(name: str, samples: dict[str, list[np.ndarray]], others: list[str],
              label: str) -> dict:
    """`name`'s sensitivity above every one of `others`: each difference from per-probe
    paired samples ({unit: one array per seed}, paired_probe_interval); the cell holds when
    every difference is decided above, fails when any is decided below, else is
    inconclusive (undecided when a unit has one probe in all)."""
    outcomes, lines = [], []
    for other in others:
        m, low, high, probes = paired_probe_interval(samples[name], samples[other])
        outcomes.append(decide(-high, -low))
        lines.append({"other": other, "difference": m, "low": low, "high": high})
    if any(not math.isfinite(x["low"]) for x in lines):
        outcome = "undecided"
    elif all(o == "holds" for o in outcomes):
        outcome = "holds"
    elif any(o == "fails" for o in outcomes):
        outcome = "fails"
    else:
        outcome = "inconclusive"
    above, below = outcomes.count("holds"), outcomes.count("fails")
    shown = "undecided (1 probe)" if outcome == "undecided" else outcome
    return {"outcome": outcome, "label": shown, "statistic": "probe_differences",
            "differences": lines,
            "text": f"{label} decided above {above}, below {below}, undecided "
                    f"{len(outcomes) - above - below} of {len(outcomes)} (paired per probe, "
                    f"{len(samples[name])} seed(s)): {shown}"}


def document_scores(results: list[dict], setting: str, task: str) -> np.ndarray:
    """Seeds × documents headline accuracy of one arm on one task, in points (0–100)."""
    return 100 * np.array([r["accuracy"][setting][task]["per_document"] for r in results])


def higher_accuracy(ours: list[dict], base: list[dict], setting: str, tasks, label: str,
                    arms: tuple[str, str] = ("A", "B")) -> dict:
    """T3 on one model and setting: the method's average accuracy over `tasks` above the
    baseline's. Paired per seed and document (same calibration seeds, same documents): each
    task gives a seeds × documents array of score differences, and the average over tasks
    gets its interval from stats.average_interval; in points, claimed above 0."""
    parts = [document_scores(ours, setting, t) - document_scores(base, setting, t) for t in tasks]
    diff = average_interval(parts)
    pair = pair_achieved(ours, base)
    outcome, shown = judge(-diff.high, -diff.low, identical=not any(np.any(p) for p in parts),
                           one_seed=_one_seed(parts[0], ours, base), sparsities=pair)
    return {"outcome": outcome, "label": shown, "statistic": "accuracy_difference",
            "arms": list(arms), "setting": setting, "tasks": list(tasks),
            "difference": diff.estimate, "low": diff.low, "high": diff.high,
            "seeds": diff.seeds, **({"achieved": pair} if pair else {}),
            "text": f"{label}: {diff.estimate:+.1f} points [{diff.low:+.1f}, {diff.high:+.1f}] "
                    f"({diff.seeds} seeds × {diff.windows} documents, paired"
                    f"{_sparsity_text(pair)}): {shown}"}


def keeps_sparsity(runs: list[dict], target: float, label: str) -> dict:
    """C0: an allocation keeps the overall sparsity it is asked for: the achieved sparsity
    (zeros over the prunable matrices, parameter-weighted; the mean over seeds) within
    TOLERANCE of the target. Decided by arithmetic, not by an interval: holds or fails."""
    got = achieved(runs)
    outcome = "holds" if abs(got - target) <= TOLERANCE else "fails"
    return {"outcome": outcome, "label": outcome, "statistic": "achieved_sparsity",
            "target": target, "achieved_sparsity": got, "seeds": len(runs),
            "text": f"{label}: {got:.2%} achieved for {target:.2%} "
                    f"(Δ {100 * (got - target):+.2f} points): {outcome}"}

