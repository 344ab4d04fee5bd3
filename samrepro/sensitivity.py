"""How sensitive each prunable matrix is: estimates of its average Hessian trace (docs/method.md §3).

sen_W = Tr(∇²_W L)/n_W, L the model's cross-entropy on calibration windows.

- `hutchinson`: Tr(H) ≈ mean over probes z of zᵀHz (paper: Gaussian z; authors' code:
  Rademacher), with Hz from a double backward through the whole model. One probe gives an
  estimate for every matrix at once (independent z per matrix block). Each estimate comes
  with its standard error over probe-windows; it stops when the relative standard error of
  90% of the matrices is within `rel_tol`, or at `max_probes`.
- `fisher`: the empirical Fisher trace, mean over windows of the squared gradient (one
  backward per window, no double backward).
- `xxt`: the layer-wise proxy mean(diag(2XXᵀ/n)) that the pruning pass gets for free
  (computed here on the dense model, by pipeline.layer_hessian_means).
- `owl_outliers`: OWL's outlier counts, the input of allocation `owl`.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from tqdm.auto import tqdm

from .allocation import layer_of
from .errors import UserError
from .models import prunable_linears
from .pipeline import layer_hessian_diagonals

ESTIMATORS = ("hutchinson", "fisher", "xxt")


class _OnlyWeightsTrainable:
    """Within the block, gradients flow to the prunable weights only (memory), math attention."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.params = [linear.weight for linear in prunable_linears(model).values()]

    def __enter__(self):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        self.saved = {p: p.requires_grad for p in self.model.parameters()}
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in self.params:
            p.requires_grad_(True)
        # fused attention kernels have no double backward; the math path does
        self.kernel = sdpa_kernel(SDPBackend.MATH)
        self.kernel.__enter__()
        return self.params

    def __exit__(self, *exc):
        self.kernel.__exit__(*exc)
        for p, flag in self.saved.items():
            p.requires_grad_(flag)


def _loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    ids = ids.to(next(model.parameters()).device)
    return model(input_ids=ids, labels=ids, use_cache=False).loss


def probe_row(model: nn.Module, params: list, batch: torch.Tensor, draw) -> torch.Tensor:
    """One Hutchinson sample per matrix, zᵀHz/n_W, on one batch (a double backward).

    draw(i, p) gives the probe z of matrix i (parameter p), drawn after the first backward.
    """
    loss = _loss(model, batch)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    probes = [draw(i, p) for i, p in enumerate(params)]
    hz = torch.autograd.grad(grads, params, grad_outputs=probes)
    return torch.stack([(z.float() * h.float()).sum() / z.numel()
                        for z, h in zip(probes, hz)]).cpu()


def summary(names, samples: torch.Tensor) -> dict:
    """Mean and standard error per matrix from a (samples × matrices) tensor."""
    count = samples.shape[0]
    mean = samples.mean(0)
    stderr = samples.std(0, unbiased=True) / math.sqrt(count) if count > 1 else \
        torch.full_like(mean, float("nan"))
    return {name: {"trace": float(m), "stderr": float(s)}
            for name, m, s in zip(names, mean.tolist(), stderr.tolist())}


def relative_error_quantile(samples: torch.Tensor, q: float = 0.9) -> float:
    mean = samples.mean(0).abs().clamp_min(1e-30)
    rel = samples.std(0, unbiased=True) / math.sqrt(samples.shape[0]) / mean
    return float(torch.quantile(rel, q))


def hutchinson(model: nn.Module, windows: torch.Tensor, rel_tol: float = 0.2,
               min_probes: int = 8, max_probes: int = 200, distribution: str = "gaussian",
               batch_size: int = 1, seed: int = 0, progress: bool = True,
               keep_samples: bool = False) -> dict:
    """Hutchinson estimate of every prunable matrix's average Hessian trace, with errors.

    Probe k uses calibration batch k mod (number of batches), so the error covers both the
    probes and the data. Returns {"matrices": {name: {"trace", "stderr"}}, "probes",
    "rel_stderr_q90", "seconds"} (and "samples", probes × matrices, with keep_samples).
    """
    if distribution not in ("gaussian", "rademacher"):
        raise UserError(f"unknown probe distribution {distribution!r}: gaussian or rademacher")
    if min_probes < 1 or max_probes < 2:
        raise UserError(f"need min_probes ≥ 1 and max_probes ≥ 2, got {min_probes}, {max_probes}")
    min_probes = min(min_probes, max_probes)
    names = list(prunable_linears(model))
    batches = windows.split(batch_size)
    generator = torch.Generator().manual_seed(seed)
    rows, started = [], time.perf_counter()
    bar = tqdm(total=max_probes, desc="Hutchinson probes", disable=not progress)
    with _OnlyWeightsTrainable(model) as params:
        for k in range(max_probes):
            def draw(_i, p):
                z = torch.randn(p.shape, generator=generator, dtype=torch.float32)
                return (z.sign() if distribution == "rademacher" else z).to(p.device, p.dtype)

            rows.append(probe_row(model, params, batches[k % len(batches)], draw))
            bar.update()
            if len(rows) >= max(min_probes, 2):
                reached = relative_error_quantile(torch.stack(rows))
                bar.set_postfix(rel_stderr_q90=f"{reached:.3f}")
                if reached <= rel_tol:
                    break
    bar.close()
    samples = torch.stack(rows).double()
    result = {"matrices": summary(names, samples), "probes": len(rows),
              "rel_stderr_q90": relative_error_quantile(samples) if len(rows) > 1 else None,
              "seconds": time.perf_counter() - started, "distribution": distribution}
    if keep_samples:
        result["samples"] = {name: samples[:, i].tolist() for i, name in enumerate(names)}
    return result


def fisher(model: nn.Module, windows: torch.Tensor, progress: bool = True) -> dict:
    """Empirical Fisher trace per matrix: mean over windows of Σ g²/n_W, g = ∇_W loss(window)."""
    names = list(prunable_linears(model))
    rows, started = [], time.perf_counter()
    with _OnlyWeightsTrainable(model) as params:
        for window in tqdm(windows, desc="Fisher", disable=not progress):
            grads = torch.autograd.grad(_loss(model, window[None]), params)
            rows.append(torch.stack([g.float().square().sum() / g.numel() for g in grads]).cpu())
    samples = torch.stack(rows).double()
    return {"matrices": summary(names, samples), "probes": len(rows),
            "seconds": time.perf_counter() - started}


@torch.no_grad()
def owl_outliers(model: nn.Module, windows: torch.Tensor, m: float = 5.0,
                 batch_size: int = 8, progress: bool = True) -> dict[str, float]:
    """OWL's outlier counts on the dense model: per matrix, how many weights have
    |W_ij|·‖X_j‖₂ above `m` times the mean of that score over the matrix's decoder layer."""
    diagonals = layer_hessian_diagonals(model, windows, batch_size, progress)
    linears = prunable_linears(model)
    scores = {name: linear.weight.abs().float() * diagonals[name].sqrt()  # ‖X_j‖ ∝ sqrt(H_jj)
              for name, linear in linears.items()}
    totals: dict[str, list[float]] = {}
    for name, s in scores.items():
        t = totals.setdefault(layer_of(name), [0.0, 0])
        t[0] += float(s.sum())
        t[1] += s.numel()
    return {name: float((s > m * totals[layer_of(name)][0] / totals[layer_of(name)][1]).sum())
            for name, s in scores.items()}


def layer_sensitivity(per_matrix: dict[str, float]) -> dict[str, float]:
    """Layer-level sensitivity: the sum over each decoder layer's matrices (docs/method.md §3)."""
    layers: dict[str, float] = {}
    for name, value in per_matrix.items():
        layers[layer_of(name)] = layers.get(layer_of(name), 0.0) + value
    return layers


def spearman(a: dict[str, float], b: dict[str, float]) -> float:
    """Spearman rank correlation of two per-matrix sensitivity dicts over their common keys."""
    from scipy.stats import spearmanr

    keys = [k for k in a if k in b]
    return float(spearmanr([a[k] for k in keys], [b[k] for k in keys]).statistic)
