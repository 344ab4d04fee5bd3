"""The checks of a run's values, one function per kind of value. The CLI's flags, the
notebooks' parameters (settings.notebook) and torchrun's options all go through these, so a
bad value gets the same one-line UserError on every route; `what` names the value as the
route spells it (`--nsamples` on the command line, `nsamples` in a notebook).
"""

from __future__ import annotations

import math
from pathlib import Path

from samrepro.method.allocation import ALLOCATIONS, check_alpha
from samrepro.io.data import data_dir
from samrepro.errors import UserError, check_sparsity
from samrepro.io.evaluate import SETTINGS
from samrepro.machine.hardware import check_device
from samrepro.method.estimators import sensitivity_estimators
from samrepro.io.models import split_model
from samrepro.method.solver import SALIENCIES

sparsity = check_sparsity  # a number in [0, 1) (errors.py: used below the run layer too)
device = check_device  # a device this machine has (hardware.py)


def at_least(value, minimum: int, what: str):
    """A whole number ≥ `minimum` (None passes: the preset's or the model's default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{what} must be a whole number of at least {minimum}, got {value!r}")
    return value


def non_negative(value, what: str) -> float:
    """A finite number ≥ 0 (Hutchinson's relative tolerance: 0 runs every probe allowed)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise UserError(f"{what} must be a number ≥ 0, got {value!r}")
    return float(value)


def choice(value, choices, what: str) -> str:
    """One of `choices`."""
    if value not in choices:
        raise UserError(f"unknown {what} {value!r}: choose from {', '.join(choices)}")
    return value


def listed(value, what: str) -> list | None:
    """A list-valued parameter as a list: a list, a JSON/YAML list in a string (papermill's
    `-p models '["a", "b"]'`), a comma-separated string or a single value."""
    if value is None or isinstance(value, list):
        return value
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import yaml  # YAML's flow lists include JSON's

            try:
                parsed = yaml.safe_load(text)
            except yaml.YAMLError:
                parsed = None
            if not isinstance(parsed, list):
                raise UserError(f"{what} must be a list such as [a, b], got {value!r}")
            return parsed
        return [part.strip() for part in text.split(",") if part.strip()]
    return [value]


def model(spec, what: str = "model") -> str:
    """A model name, hub id or folder, optionally cut to N layers (`embedded@2`)."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"{what}: a model is a name, hub id or folder, got {spec!r}")
    split_model(spec)
    return spec


def alpha(value, sparsities, allocation: str, what: str = "alpha"):
    """α in [0, 1), narrow enough for every sparsity (None: the allocation's default)."""
    if value is None:
        return None
    for p in sparsities:
        check_alpha(value, p, allocation, what)
    return float(value)


def folder(value, what: str = "data_dir"):
    """A data folder that exists (None: $SAMREPRO_DATA_DIR, else the hub)."""
    if value is None:
        return None
    if not isinstance(value, (str, Path)):
        raise UserError(f"{what} must be a folder, got {value!r}")
    data_dir(value)
    return value


def _nonempty(items: list, what: str) -> list:
    if not items:
        raise UserError(f"{what} must name at least one value, got an empty list")
    return items


def values(v: dict) -> dict:
    """Check (and normalise: lists as lists) a notebook's settings: the preset's values with
    its parameters' overrides applied. Returns `v`, changed in place."""
    for key in ("models", "sparsities", "figure3_sparsities", "zero_shot_settings",
                "allocation_saliencies"):
        if key in v:
            v[key] = _nonempty(listed(v[key], key), key)
    v["models"] = [model(m, "models") for m in v["models"]]
    for key in ("sparsities", "figure3_sparsities"):
        v[key] = [sparsity(p, key) for p in v[key]]
    for key, minimum in (("nsamples", 1), ("seqlen", 1), ("batch_size", 1), ("seeds", 1),
                         ("eval_windows", 1), ("zero_shot_limit", 1), ("probes", 2)):
        at_least(v.get(key), minimum, key)
    v["rel_tol"] = non_negative(v["rel_tol"], "rel_tol")
    choice(v["estimator"], sensitivity_estimators(), "estimator")
    choice(v["saliency"], SALIENCIES, "saliency")
    choice(v["allocation"], ALLOCATIONS, "allocation")
    for name in v["allocation_saliencies"]:
        choice(name, SALIENCIES, "allocation_saliencies entry")
    for name in v["zero_shot_settings"]:
        choice(name, tuple(SETTINGS), "zero_shot_settings entry")
    alpha(v["alpha"], v["sparsities"], v["allocation"])
    if v.get("device") is not None:
        device(v["device"])
    folder(v.get("data_dir"))
    return v
