"""High-level steps that notebooks and the CLI share, with their results cached on disk."""

from __future__ import annotations

from .cache import cached
from .errors import UserError
from .pipeline import layer_hessian_diagonals
from .sensitivity import ESTIMATORS, fisher, hutchinson, owl_outliers


def estimate_sensitivity(model, windows, estimator: str, key: dict, *, rel_tol: float = 0.2,
                         max_probes: int = 100, distribution: str = "gaussian", seed: int = 0,
                         progress: bool = True) -> dict:
    """Per-matrix sensitivity by `estimator` (hutchinson, fisher, xxt, or owl outlier counts),
    computed once per (model, calibration, estimator settings) and cached.

    `key` names the model and the calibration data (model id, layers, data source, sizes,
    seed) so that the cache can tell runs apart; the estimator's own settings are added here.
    Returns {"matrices": {name: {"trace", "stderr"?}}, ...} as the estimator gives it.
    """
    if estimator not in ESTIMATORS + ("owl",):
        raise UserError(f"unknown estimator {estimator!r}: choose from "
                        f"{', '.join(ESTIMATORS + ('owl',))}")
    settings = {"estimator": estimator}
    if estimator == "hutchinson":
        settings.update(rel_tol=rel_tol, max_probes=max_probes, distribution=distribution,
                        seed=seed)

    def compute():
        if estimator == "hutchinson":
            return hutchinson(model, windows, rel_tol=rel_tol, max_probes=max_probes,
                              distribution=distribution, seed=seed, progress=progress)
        if estimator == "fisher":
            return fisher(model, windows, progress=progress)
        if estimator == "xxt":
            diagonals = layer_hessian_diagonals(model, windows, progress=progress)
            return {"matrices": {n: {"trace": float(d.mean())} for n, d in diagonals.items()}}
        counts = owl_outliers(model, windows, progress=progress)
        return {"matrices": {n: {"trace": c} for n, c in counts.items()}}

    return cached("sensitivity", {**key, **settings}, compute)


def traces(result: dict) -> dict[str, float]:
    """{matrix name: sensitivity value} from an estimate_sensitivity result."""
    return {name: entry["trace"] for name, entry in result["matrices"].items()}
