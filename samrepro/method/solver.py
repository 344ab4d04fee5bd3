"""The one-shot column solver of SparseGPT, with the paper's saliency criteria (docs/method.md §1, §2, §5).

Read it next to docs/method.md §1. For a weight W (rows = outputs, columns = inputs) and the
layer-wise Hessian H = 2XXᵀ/n, the solver walks the columns left to right in blocks; at the
start of each block it picks which weights of the block to drop (by the saliency score), then
zeroes (and, with `wbits` < 16, quantizes) one column at a time and spreads each column's error
onto the columns not yet processed with the OBS update
    W[:, j:] -= ((w_j - q_j) / U_jj) · U[j, j:],        U = upper Cholesky factor of H⁻¹,
where q_j is the value column j gets: 0 where masked, its quantized value where quantized, w_j
elsewhere. U_mm² equals [(H_FF)⁻¹]_mm, the inverse of H restricted to the columns F = m, m+1,
… still free when column m is reached (the inverse of the restricted Hessian, written
[H_F⁻¹]_mm for short: the sequential OBS inverse).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from samrepro.errors import UserError, check_sparsity
from samrepro.registry import Registry


@dataclass(frozen=True)
class Saliency:
    """A registered saliency criterion (docs/architecture.md: how to add one).

    `score(W, U_diag, H_diag)` → a score per weight, lower = dropped first (W: the block's
    current weights; U_diag: the Cholesky factor's diagonal, U_mm² = sequential [H⁻¹]_mm;
    H_diag: the damped Hessian's diagonal). `reconstructs`: the OBS update spreads each
    dropped weight's error (else the weights are only masked, all at once); `needs_data`:
    reads H, so the pass feeds calibration data (magnitude does not); `per_row`: without the
    update, each output row keeps its own share (Wanda's comparison group)."""

    score: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    reconstructs: bool = True
    needs_data: bool = True
    per_row: bool = False


SALIENCIES = Registry("saliency", Saliency)  # name → Saliency, in the order registered
register_saliency = SALIENCIES.register


@register_saliency("obs")
def _obs(W, U_diag, H_diag):  # paper eq. (2): w² / [H⁻¹]_mm
    return W.square() / U_diag.square()


@register_saliency("isc")
def _isc(W, U_diag, H_diag):  # paper eq. (4): w²/[H⁻¹]_mm + w² H_mm, OBS's term plus OBD's
    return W.square() * (H_diag + 1.0 / U_diag.square())


@register_saliency("isc-code")
def _isc_code(W, U_diag, H_diag):  # the authors' code: 1/U_mm, not squared
    return W.square() * (H_diag + 1.0 / U_diag)


@register_saliency("magnitude", reconstructs=False, needs_data=False)
def _magnitude(W, U_diag, H_diag):
    return W.abs()


@register_saliency("wanda", reconstructs=False, per_row=True)
def _wanda(W, U_diag, H_diag):  # |w|·‖X_m‖₂, and ‖X_m‖₂² = n·H_mm/2 ∝ H_mm
    return W.abs() * H_diag.sqrt()


def check_args(sparsity: float, saliency: str, prune_n: int, prune_m: int, wbits: int) -> None:
    """Raise a UserError for an invalid solver request (shared by the CLI and prune_weight)."""
    check_sparsity(sparsity)
    SALIENCIES.get_checked(saliency)
    if prune_n or prune_m:
        if not 0 < prune_n < prune_m:
            raise UserError(f"N:M sparsity needs 0 < N < M (e.g. 2:4), got {prune_n}:{prune_m}")
    if wbits != 16 and not 2 <= wbits <= 8:
        raise UserError(f"wbits must be 16 (no quantization) or between 2 and 8, got {wbits}")


def saliency_scores(saliency: str, W: torch.Tensor, U_diag: torch.Tensor,
                    H_diag: torch.Tensor) -> torch.Tensor:
    """Score of every weight of W (lower = dropped first) by the registered `saliency`,
    docs/method.md §2."""
    return SALIENCIES.get_checked(saliency).score(W, U_diag, H_diag)


def quantization_grid(W: torch.Tensor, wbits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel asymmetric min-max grid (GPTQ's): returns (scale, zero), each rows×1.

    The range always contains 0, so a pruned weight quantizes to exactly 0.
    """
    maxq = 2**wbits - 1
    xmin = W.min(dim=1, keepdim=True).values.clamp(max=0)
    xmax = W.max(dim=1, keepdim=True).values.clamp(min=0)
    empty = (xmin == 0) & (xmax == 0)
    xmin, xmax = torch.where(empty, -1.0, xmin), torch.where(empty, 1.0, xmax)
    scale = (xmax - xmin) / maxq
    zero = torch.round(-xmin / scale)
    return scale, zero


def quantize(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, wbits: int) -> torch.Tensor:
    q = torch.clamp(torch.round(w / scale) + zero, 0, 2**wbits - 1)
    return scale * (q - zero)


def _lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean mask of exactly `count` lowest entries of `scores` (ties broken by position)."""
    flat = scores.flatten()
    if count <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    # kthvalue + tie fill: several times faster than a full sort of the block
    kth = torch.kthvalue(flat, count).values
    mask = flat < kth
    ties = (flat == kth).nonzero().squeeze(1)
    mask[ties[: count - int(mask.sum())]] = True
    return mask.view_as(scores)


def _nm_mask(scores: torch.Tensor, prune_n: int, prune_m: int) -> torch.Tensor:
    """In every group of M consecutive columns, per row, the N lowest scores."""
    rows, cols = scores.shape
    if cols % prune_m:
        raise UserError(f"N:M needs the input size ({cols}) to be a multiple of M={prune_m}")
    groups = scores.reshape(rows, cols // prune_m, prune_m)
    drop = torch.argsort(groups, dim=2, stable=True)[:, :, :prune_n]
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(2, drop, True)
    return mask.reshape(rows, cols)


_INNER = 16  # columns per inner block of prune_weight's column loop (a multiple of M with N:M)


def _share(numel: int, sparsity: float) -> int:
    return int(round(numel * sparsity))


@torch.no_grad()
def prune_weight(W: torch.Tensor, H: torch.Tensor | None, sparsity: float, saliency: str = "obs",
                 prune_n: int = 0, prune_m: int = 0, wbits: int = 16, blocksize: int = 128,
                 percdamp: float = 0.01, *, choose=None) -> torch.Tensor:
    """Prune (and optionally quantize) one weight matrix; returns the new weight.

    W: out_features × in_features; H: in_features × in_features, the accumulated 2XXᵀ/n
    (may be None for `magnitude`, which uses no data).
    The result has W's shape, dtype and device; the work is done on W's device in fp32 (in
    fp64 if W is fp64).
    `sparsity` is the fraction of each block's weights set to zero (ignored with N:M).
    `magnitude` prunes the whole matrix at once by |w|, `wanda` each output row by |w|·‖X_m‖
    (Wanda's comparison group); neither updates the kept weights (they are only quantized).
    `choose(scores)`: the mask of a block's weights to drop, given their scores (default: the
    `sparsity` share of the lowest); prune_weights passes one per stacked matrix.
    """
    check_args(sparsity, saliency, prune_n, prune_m, wbits)
    cols = W.shape[1]
    if H is None:
        if SALIENCIES[saliency].needs_data:
            raise ValueError(f"saliency {saliency!r} needs the Hessian H")
        H = torch.ones(cols, device=W.device).diag()
    if H.shape != (cols, cols):
        raise ValueError(f"H must be {cols}×{cols} for weights with {cols} inputs, got {tuple(H.shape)}")
    dtype = W.dtype
    W = W.detach().to(torch.promote_types(dtype, torch.float32), copy=True)
    H = H.detach().to(device=W.device, dtype=W.dtype).clone()
    grid = quantization_grid(W, wbits) if wbits < 16 else None
    if not SALIENCIES[saliency].reconstructs:
        return _prune_without_update(W, H.diagonal(), sparsity, saliency, prune_n, prune_m, grid,
                                     wbits).to(dtype)
    if choose is None:
        def choose(scores):
            return _lowest(scores, _share(scores.numel(), sparsity))

    dead = H.diagonal() == 0  # inputs that never fire: any value of their weights is free
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H.diagonal().add_(percdamp * H.diagonal().mean())  # dampening: H + λI, λ = percdamp·mean diag
    U = _upper_cholesky_of_inverse(H)  # U_mm² = sequential [H⁻¹]_mm (docs/method.md §1)
    H_diag = H.diagonal()

    # Lazy updates on two levels. A column's OBS update is a rank-1 pass over the columns after
    # it: one small, memory-bound op per column, which over a whole 128-column block touches
    # ~64 columns × all rows each time. So a column updates only the rest of its inner block of
    # `inner` columns, and one GEMM per inner block spreads that block's errors onto the rest
    # of the outer block, as the outer block's GEMM does onto the later columns: the same sums
    # in another order. `inner` is a multiple of M, so an N:M group never spans two inner
    # blocks and is scored on weights that have every earlier column's update.
    inner = -(-_INNER // prune_m) * prune_m if prune_n else _INNER
    for b0 in range(0, cols, blocksize):
        b1 = min(b0 + blocksize, cols)
        # Transposed (columns × rows), so that each column is one contiguous row of memory.
        W1 = W[:, b0:b1].T.contiguous()
        U1 = U[b0:b1, b0:b1]
        Err1 = torch.zeros_like(W1)
        if not prune_n:  # unstructured: choose the whole block's mask now (§2's saliency)
            mask1 = choose(saliency_scores(saliency, W1.T, U1.diagonal(), H_diag[b0:b1])).T
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i0 in range(0, b1 - b0, inner):
            i1 = min(i0 + inner, b1 - b0)
            for j in range(i0, i1):
                if prune_n and j % prune_m == 0:  # N:M: choose each group's mask on reaching it
                    g = slice(j, j + prune_m)
                    scores = saliency_scores(saliency, W1[g].T, U1.diagonal()[g],
                                             H_diag[b0:b1][g])
                    mask1[g] = _nm_mask(scores, prune_n, prune_m).T
                w = W1[j]
                if grid is None:  # q = w with the masked weights zeroed, so w - q = w·mask
                    torch.mul(w, mask1[j], out=Err1[j])
                else:
                    q = quantize(w.masked_fill(mask1[j], 0.0).unsqueeze(1), *grid, wbits).squeeze(1)
                    torch.sub(w, q, out=Err1[j])
                Err1[j].div_(U1[j, j])
                W1[j:i1].addr_(U1[j, j:i1], Err1[j], alpha=-1.0)  # the OBS update; w_j becomes q_j
                if grid is not None:
                    W1[j] = q  # exactly on the grid, not just up to rounding
            W1[i1:].addmm_(U1[i0:i1, i1:].T, Err1[i0:i1], alpha=-1.0)  # the inner block's errors
        W1.masked_fill_(mask1, 0.0)  # and the pruned weights exactly 0
        W[:, b0:b1] = W1.T
        W[:, b1:] -= Err1.T @ U[b0:b1, b1:]  # the block's errors spread onto the later columns
    return W.to(dtype)


def prune_weights(Ws: list[torch.Tensor], H: torch.Tensor | None, sparsities: list[float],
                  saliency: str = "obs", prune_n: int = 0, prune_m: int = 0, wbits: int = 16,
                  blocksize: int = 128, percdamp: float = 0.01) -> list[torch.Tensor]:
    """prune_weight for several matrices fed the same inputs (q, k, v; gate, up), which share H.

    The OBS update acts on each row alone, so stacking the rows and walking the columns once
    gives each matrix exactly the result of its own solve, with one Cholesky and one loop.
    Each matrix keeps its own sparsity and its own per-block mask selection (`choose`).
    """
    for sparsity in sparsities:
        check_args(sparsity, saliency, prune_n, prune_m, wbits)
    cols = Ws[0].shape[1]
    if any(W.shape[1] != cols for W in Ws):
        raise ValueError("stacked matrices must have the same number of inputs")
    if not SALIENCIES[saliency].reconstructs:  # no update: nothing to share
        return [prune_weight(W, H, sparsity, saliency, prune_n, prune_m, wbits, blocksize,
                             percdamp) for W, sparsity in zip(Ws, sparsities)]
    sizes = [W.shape[0] for W in Ws]

    def choose(scores):
        return torch.cat([_lowest(part, _share(part.numel(), sparsity))
                          for part, sparsity in zip(scores.split(sizes), sparsities)])

    stacked = torch.cat([W.detach().to(torch.promote_types(W.dtype, torch.float32)) for W in Ws])
    new = prune_weight(stacked, H, sparsities[0], saliency, prune_n, prune_m, wbits, blocksize,
                       percdamp, choose=choose)
    return [part.to(src.dtype) for part, src in zip(new.split(sizes), Ws)]


def _upper_cholesky_of_inverse(H: torch.Tensor) -> torch.Tensor:
    try:
        L = torch.linalg.cholesky(H)
    except torch.linalg.LinAlgError:
        raise UserError("the damped Hessian is not positive definite: raise percdamp "
                        "(e.g. 0.1) or use more calibration data") from None
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)


def _prune_without_update(W, H_diag, sparsity, saliency, prune_n, prune_m, grid, wbits):
    scores = saliency_scores(saliency, W, torch.ones_like(H_diag), H_diag)
    if prune_n:
        mask = _nm_mask(scores, prune_n, prune_m)
    elif SALIENCIES[saliency].per_row:
        order = torch.argsort(scores, dim=1, stable=True)[:, :_share(W.shape[1], sparsity)]
        mask = torch.zeros_like(W, dtype=torch.bool).scatter_(1, order, True)
    else:
        mask = _lowest(scores, _share(W.numel(), sparsity))
    W = torch.where(mask, 0.0, W)
    if grid is not None:
        W = quantize(W, *grid, wbits)
    return W
