"""What a result was computed with: library versions, model weights, and a warning when the
installed libraries differ from those that made a stored result (docs/method.md §7: results are
only comparable when made the same way).
"""

from __future__ import annotations

import ast
import hashlib
import platform
import subprocess
import warnings
from functools import lru_cache
from importlib import metadata
from pathlib import Path

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


# The modules (paths in the package) whose code determines a run's numbers: a change to any of them (beyond comments
# and docstrings) changes code_hash(), hence every run's cache key.
NUMERIC_MODULES = ("method/allocation", "io/data", "io/evaluate", "study/experiments",
                   "machine/hardware", "method/hessian", "io/models", "method/pipeline",
                   "method/sensitivity", "method/solver", "method/estimators", "config")


@lru_cache(maxsize=4)
def code_hash(folder: Path | None = None) -> str:
    """sha256 (first 16 hex digits) of NUMERIC_MODULES' code (in the package's folder), read
    as syntax trees without docstrings, so that an edit of a comment or a docstring keeps
    the cached runs."""
    h = hashlib.sha256()
    folder = folder or Path(__file__).resolve().parents[1]
    for name in NUMERIC_MODULES:
        tree = ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        h.update(f"{name}|{ast.dump(tree)}|".encode())
    return h.hexdigest()[:16]


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit (with '+changes' when the working tree differs), or None."""
    folder = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=folder,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if dirty else "")


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
