"""Per-matrix sparsities from sensitivities (docs/method.md §4, the paper's Algorithm 1).

`allocate(sensitivity, sizes, sparsity, alpha, method)` maps each prunable matrix name to its
sparsity. Methods:

- `uniform`: p everywhere (SparseGPT).
- `paper`: Algorithm 1 as printed. Matrices ranked by sensitivity (rank 0 = least sensitive)
  get the *density* L + rank·(R − L)/(N − 1), L = 1 − p − α, R = 1 − p + α; the sparsity is
  1 − density, so the most sensitive matrix gets p − α and the least p + α. The ranking
  ignores matrix sizes, so the parameter-weighted overall sparsity is not p in general.
- `exact`: the `paper` values shifted by one constant and clipped to [p − α, p + α], the shift
  chosen so that the parameter-weighted overall sparsity is p (to 1e-6).
- `layer`: Algorithm 1 over decoder layers (layer sensitivity = sum of its matrices'), every
  matrix of a layer alike.
- `owl`: OWL (Yin et al. 2023). `sensitivity` holds each matrix's count of outliers (weights
  whose |W|·‖X‖ exceeds M = 5 times its layer's mean, see sensitivity.owl_outliers); a layer's
  outlier ratio D is its outliers over its weights, and the layer density is
  (D − min D)/(max D − min D)·2λ, shifted to mean 1 − p. `alpha` is OWL's λ (0.08 in OWL).
- `paper-code`: what the authors' public code computes (weight-level mode): density
  0.4 + rank·(U − 0.4)/(N − 1), U = 2(1 − p) − 0.4, i.e. the low end fixed at 0.4 whatever p
  is: Algorithm 1 at p = 0.5, uniform at p = 0.6, inverted above (the most sensitive matrix
  is pruned most). `alpha` plays no part.
Controls (docs/method.md §4), which need no sensitivity:
- `random`: Algorithm 1's schedule on a random ranking drawn from `seed` (a placebo);
- `depth`: Algorithm 1 over decoder layers ranked by depth alone (the first layer keeps most).
Both are shifted like `exact`, so that their overall sparsity is p.

Each is one registered rule (`@register(name, …)` with what it needs: Allocation); nothing
outside this module branches on an allocation's name. Also here: α's default and range
(default_alpha, check_alpha), and the noise floor that turns
an estimate into the values the allocation ranks (traces, floored: a negative Hutchinson trace
within NOISE_FLOOR standard errors of 0 counts as 0).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable

from samrepro.errors import UserError, check_sparsity
from samrepro.io.models import layer_of
from samrepro.registry import Registry

ALPHA = 0.1  # the paper's α: every matrix's sparsity within p ± α
OWL_LAMBDA = 0.08  # OWL's λ, the α of the `owl` allocation


@dataclass(frozen=True)
class Allocation:
    """A registered allocation: its rule and what it needs (docs/architecture.md).

    `rule(scores, sizes, p, alpha, seed)` → {matrix: sparsity}; `scores` holds the estimate
    it ranks (empty when `needs_estimate` is False). `estimator` names the estimate it ranks
    when that is not the run's own (OWL ranks outlier counts); `uses_alpha` says whether α
    plays a part (and is checked), `default_alpha` its value when none is given;
    `max_sparsity` the sparsity at and above which the rule is undefined; `mixed`: matrices
    may get different sparsities (every rule but uniform)."""

    rule: Callable[..., dict[str, float]]
    needs_estimate: bool = True
    estimator: str | None = None
    uses_alpha: bool = True
    default_alpha: float = ALPHA
    max_sparsity: float = 1.0
    mixed: bool = True


ALLOCATIONS = Registry("allocation", Allocation)  # name → Allocation, in the order registered
register = ALLOCATIONS.register
allocation = ALLOCATIONS.get_checked


def default_alpha(method: str) -> float:
    """α when none is given: the paper's 0.1, or OWL's λ = 0.08 for `owl`."""
    return allocation(method).default_alpha


def check_alpha(alpha, sparsity: float, method: str, flag: str = "alpha") -> float:
    """Return `alpha` as a float, or raise: a number in [0, 1), and for an allocation that uses
    it one whose range [p − α, p + α] lies in [0, 1). `flag` names it in the message."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or math.isnan(alpha) \
            or not 0 <= alpha < 1:
        raise UserError(f"{flag} must be in [0, 1) (the paper uses {ALPHA}), got {alpha!r}")
    p = check_sparsity(sparsity)
    if allocation(method).uses_alpha and (p - alpha < 0 or p + alpha >= 1):
        raise UserError(f"{flag}={alpha} is too wide for sparsity {p}: the range "
                        f"[{p - alpha:.3g}, {p + alpha:.3g}] must lie in [0, 1); use {flag} ≤ "
                        f"{min(p, 1 - p):.3g}")
    return float(alpha)


# ---- sensitivity estimates → the values the allocation ranks ---------------------------------

NOISE_FLOOR = 3.0  # standard errors


def _noise_below_zero(entry: dict) -> bool:
    stderr = entry.get("stderr")
    return entry["trace"] < 0 and stderr is not None and -entry["trace"] <= NOISE_FLOOR * stderr


def traces(result: dict) -> dict[str, float]:
    """{matrix name: sensitivity value} from an estimate (experiments.estimate_sensitivity,
    `samrepro sensitivity --json`).

    A Hutchinson estimate below zero but within NOISE_FLOOR standard errors of it is noise
    around a trace near 0: it counts as 0 (and is listed by floored(), which every run
    records, so the floor is never silent). One further below zero is kept, and allocate()
    refuses it.
    """
    return {name: 0.0 if _noise_below_zero(entry) else entry["trace"]
            for name, entry in result["matrices"].items()}


def floored(result: dict) -> list[str]:
    """The matrices whose negative estimate traces() counts as 0."""
    return [name for name, entry in result["matrices"].items() if _noise_below_zero(entry)]


# ---- the allocations -------------------------------------------------------------------------


def overall_sparsity(sparsities: dict[str, float], sizes: dict[str, int]) -> float:
    """Parameter-weighted sparsity: the fraction of all prunable weights that are pruned."""
    return sum(sparsities[k] * sizes[k] for k in sizes) / sum(sizes.values())


def _check(sensitivity, sizes, sparsity, alpha, method):
    spec = allocation(method)
    p = check_sparsity(sparsity)
    if p >= spec.max_sparsity:
        raise UserError(f"the {method} allocation is undefined at sparsity {p}: use p < "
                        f"{spec.max_sparsity} (docs/method.md §4)")
    if not spec.uses_alpha:
        return p
    check_alpha(alpha, p, method)
    if not spec.needs_estimate:
        return p
    missing = [name for name in sizes if name not in sensitivity]
    if missing:
        raise UserError(f"no sensitivity for {len(missing)} prunable matrices (e.g. {missing[0]}): "
                        "estimate them for this model (samrepro sensitivity) before allocating")
    for name in sizes:
        value = sensitivity[name]
        if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
            raise UserError(f"sensitivity of {name} is {value!r}: it must be a finite number ≥ 0 "
                            "(a negative or NaN trace estimate needs more probes or samples)")
    return p


def _linear_in_rank(scores: dict[str, float], p: float, alpha: float) -> dict[str, float]:
    """Algorithm 1: density L + rank·(R−L)/(N−1), returned as sparsity = 1 − density."""
    order = sorted(scores, key=lambda name: scores[name])  # rank 0 = least sensitive
    n = len(order)
    low, high = 1 - p - alpha, 1 - p + alpha
    step = (high - low) / (n - 1) if n > 1 else 0.0
    density = {name: (low + rank * step if n > 1 else 1 - p) for rank, name in enumerate(order)}
    return {name: 1 - density[name] for name in scores}


def _shift_to_exact(base: dict[str, float], sizes: dict[str, int], p: float, alpha: float):
    lo, hi = p - alpha, p + alpha

    def shifted(c):
        return {k: min(hi, max(lo, base[k] + c)) for k in sizes}

    a, b = -2 * alpha - 1e-12, 2 * alpha + 1e-12  # overall(a) ≤ p ≤ overall(b)
    for _ in range(200):  # bisection on the monotone overall sparsity
        mid = (a + b) / 2
        if overall_sparsity(shifted(mid), sizes) < p:
            a = mid
        else:
            b = mid
    return shifted((a + b) / 2)


def _paper_code(scores: dict[str, float], p: float) -> dict[str, float]:
    """The authors' code: density 0.4 + rank·(U − 0.4)/(N − 1), U = 2(1 − p) − 0.4."""
    order = sorted(scores, key=lambda name: scores[name])
    top = 2 * (1 - p) - 0.4
    step = (top - 0.4) / (len(order) - 1) if len(order) > 1 else 0.0
    return {name: 1 - (0.4 + rank * step) for rank, name in enumerate(order)}


def allocate(sensitivity: dict[str, float], sizes: dict[str, int], sparsity: float,
             alpha: float, method: str, seed: int = 0) -> dict[str, float]:
    """Sparsity of every matrix in `sizes` (name → parameter count), docs/method.md §4.
    `seed` draws the ranking of the `random` control."""
    p = _check(sensitivity, sizes, sparsity, alpha, method)
    spec = ALLOCATIONS[method]
    scores = {name: float(sensitivity[name]) for name in sizes} if spec.needs_estimate else {}
    return spec.rule(scores, sizes, p, alpha, seed)


def _layers(sizes: dict[str, int]) -> dict[str, list[str]]:
    """Decoder layer → its matrices, in order."""
    layers: dict[str, list[str]] = {}
    for name in sizes:
        layers.setdefault(layer_of(name), []).append(name)
    return layers


@register("uniform", needs_estimate=False, uses_alpha=False, mixed=False)
def _uniform(scores, sizes, p, alpha, seed):
    return {name: p for name in sizes}


@register("paper")
def _paper(scores, sizes, p, alpha, seed):
    return _linear_in_rank(scores, p, alpha)


@register("exact")
def _exact(scores, sizes, p, alpha, seed):
    return _shift_to_exact(_linear_in_rank(scores, p, alpha), sizes, p, alpha)


@register("layer")
def _layer(scores, sizes, p, alpha, seed):
    per_layer = _linear_in_rank({layer: sum(scores[n] for n in names)
                                 for layer, names in _layers(sizes).items()}, p, alpha)
    return {name: per_layer[layer_of(name)] for name in sizes}


@register("owl", estimator="owl", default_alpha=OWL_LAMBDA)
def _owl(scores, sizes, p, alpha, seed):
    ratio = {layer: sum(scores[n] for n in names) / sum(sizes[n] for n in names)
             for layer, names in _layers(sizes).items()}
    low, high = min(ratio.values()), max(ratio.values())
    spread = (high - low) or 1.0
    density = {layer: (r - low) / spread * 2 * alpha for layer, r in ratio.items()}
    mean = sum(density.values()) / len(density)
    per_layer = {layer: 1 - (d - mean + 1 - p) for layer, d in density.items()}
    return {name: per_layer[layer_of(name)] for name in sizes}


@register("paper-code", uses_alpha=False, max_sparsity=0.8)
def _paper_code_rule(scores, sizes, p, alpha, seed):
    return _paper_code(scores, p)


@register("random", needs_estimate=False)
def _random(scores, sizes, p, alpha, seed):
    order = list(sizes)
    random.Random(seed).shuffle(order)
    ranked = {name: float(rank) for rank, name in enumerate(order)}
    return _shift_to_exact(_linear_in_rank(ranked, p, alpha), sizes, p, alpha)


@register("depth", needs_estimate=False)
def _depth(scores, sizes, p, alpha, seed):  # the first layer ranks as the most sensitive
    ranked = {layer: float(-index) for index, layer in enumerate(_layers(sizes))}
    per_layer = _linear_in_rank(ranked, p, alpha)
    return _shift_to_exact({name: per_layer[layer_of(name)] for name in sizes}, sizes, p, alpha)
