"""Sensitivity estimators by name (docs/method.md §3), each registered with the run settings
that change its estimate, so that the cache key, the CLI and the plan need no name checks.

    @register_estimator("mine", settings=("seed",))
    def _mine(model, windows, settings, progress): return {"matrices": {name: {"trace": …}}}

An estimate is {"matrices": {matrix: {"trace": value, "stderr"?: value}}, …}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from samrepro.method.pipeline import layer_hessian_diagonals
from samrepro.registry import Registry
from samrepro.method.sensitivity import fisher, hutchinson, owl_outliers


@dataclass(frozen=True)
class Estimator:
    """`estimate(model, windows, settings, progress)` → an estimate; `settings`: the names of
    the run settings it reads (RunConfig's: rel_tol, probes, distribution, seed), part of its
    cache key; `whole_model`: it needs the whole model with its gradient graph on its device(s),
    placed by samrepro.machine.plan (else it runs where the model is); `sensitivity`: it estimates a
    sensitivity a user may choose (`--estimator`), not the input of one allocation (OWL's
    outlier counts); `version`: what else its cache key holds (a change of what it returns)."""

    estimate: Callable[..., dict]
    settings: tuple[str, ...] = ()
    whole_model: bool = False
    sensitivity: bool = True
    version: dict = field(default_factory=dict)


ESTIMATORS = Registry("estimator", Estimator)  # name → Estimator, in the order registered
register_estimator = ESTIMATORS.register
estimator = ESTIMATORS.get_checked


def sensitivity_estimators() -> list[str]:
    """The names a user may pass as --estimator / estimator=."""
    return [name for name, e in ESTIMATORS.items() if e.sensitivity]


@register_estimator("hutchinson", settings=("rel_tol", "probes", "distribution", "seed"),
                    whole_model=True, version={"samples": True})
def _hutchinson(model, windows, settings, progress):
    # per-probe samples kept: claims C5/C6 pair them across estimators (docs/method.md §7)
    return hutchinson(model, windows, rel_tol=settings["rel_tol"], max_probes=settings["probes"],
                      distribution=settings["distribution"], seed=settings["seed"],
                      progress=progress, keep_samples=True)


@register_estimator("fisher")
def _fisher(model, windows, settings, progress):
    return fisher(model, windows, progress=progress)


@register_estimator("xxt")
def _xxt(model, windows, settings, progress):
    diagonals = layer_hessian_diagonals(model, windows, progress=progress)
    return {"matrices": {n: {"trace": float(d.mean())} for n, d in diagonals.items()}}


@register_estimator("owl", sensitivity=False)
def _owl(model, windows, settings, progress):
    counts = owl_outliers(model, layer_hessian_diagonals(model, windows, progress=progress))
    return {"matrices": {n: {"trace": c} for n, c in counts.items()}}
