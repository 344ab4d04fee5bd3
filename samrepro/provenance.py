"""What a result was computed with: library versions, model weights, and a warning when the
installed libraries differ from those that made a stored result (docs/method.md §7: results are
only comparable when made the same way).
"""

from __future__ import annotations

import hashlib
import platform
import warnings
from importlib import metadata

import torch
from torch import nn

PACKAGES = ("samrepro", "torch", "transformers", "datasets", "lm_eval", "safetensors", "numpy")


def versions() -> dict:
    """{"python": …, package: version or None when it is not installed}."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def weights_sha256(model: nn.Module) -> str:
    """sha256 over the model's state dict (names, dtypes, shapes and bytes, in name order):
    equal hashes mean bit-identical weights."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_provenance(name: str, model: nn.Module) -> dict:
    """The model as loaded: its name, the hub revision when it came from the hub, and the
    hash of its (dense) weights."""
    return {"name": name, "revision": getattr(model.config, "_commit_hash", None),
            "weights_sha256": weights_sha256(model)}


def version_differences(stored: dict | None) -> dict:
    """{package: (stored, installed)} for the packages whose versions differ."""
    if not stored:
        return {}
    installed = versions()
    return {k: (stored.get(k), installed.get(k)) for k in sorted(set(stored) | set(installed))
            if k in stored and stored.get(k) != installed.get(k)}


def warn_if_versions_differ(stored: dict | None, what: str) -> dict:
    """Warn when `what` (a stored result) was made with other library versions than these."""
    differences = version_differences(stored)
    if differences:
        listed = ", ".join(f"{k} {a} (now {b})" for k, (a, b) in differences.items())
        warnings.warn(f"{what} was computed with other library versions: {listed}. Its numbers "
                      "may not match a run made now; delete it to recompute.", stacklevel=3)
    return differences
