"""The layer-wise Hessian H = 2XXᵀ/n of a linear layer (docs/method.md §1).

X holds the layer's inputs as columns, one per calibration token; n counts tokens.
(SparseGPT's code divides by the number of sequences instead, which multiplies H by the
sequence length: that changes nothing for `obs`, `isc`, `magnitude` and `wanda`, which are
invariant to the scale of H, but it does for `isc-code`.)
"""

from __future__ import annotations

import contextlib

import torch

from samrepro.machine.hardware import has_amx

BLOCK = 128  # H is symmetric: only its block-lower triangle is accumulated (~40% less work)


class HessianAccumulator:
    """Running mean of 2xxᵀ over every input token x seen by one linear layer, in fp32."""

    def __init__(self, in_features: int, device: torch.device | str = "cpu"):
        self._lower = torch.zeros(in_features, in_features, dtype=torch.float32, device=device)
        self.tokens = 0

    def add(self, inputs: torch.Tensor) -> None:
        """Fold in a batch of layer inputs of shape (..., in_features).

        bf16 inputs (a bf16 model's activations) on a CPU with AMX are multiplied on its bf16
        matrix unit with fp32 accumulation: a bf16 number times a bf16 number is exact in
        fp32, so H is the fp32 H of those very inputs (only the order of the additions
        differs), ~3× faster. Without AMX that one product is slower than the fp32 block
        triangle (9.2 s against 6.7 s a SmolLM2 pruning pass, AVX512-BF16 alone;
        results/embedded/TIMINGS.md), which then takes the same exact products.
        """
        exact_in_bf16 = inputs.dtype == torch.bfloat16
        X = inputs.detach().reshape(-1, inputs.shape[-1]).to(self._lower.device, torch.float32)
        total = self.tokens + X.shape[0]
        # H_new = (n/(n+b))·H + (2/(n+b))·XᵀX: a running mean, no large sums in fp32
        self._lower.mul_(self.tokens / total)
        if exact_in_bf16 and X.device.type == "cpu" and has_amx():
            with _bf16_products():  # one whole product: the unit is fastest on one big GEMM
                self._lower.addmm_(X.T, X, alpha=2.0 / total)
        else:
            for i0 in range(0, X.shape[1], BLOCK):
                i1 = i0 + BLOCK
                self._lower[i0:, i0:i1].addmm_(X[:, i0:].T, X[:, i0:i1], alpha=2.0 / total)
        self.tokens = total

    @property
    def H(self) -> torch.Tensor:
        """The full symmetric H (a new tensor)."""
        H = self._lower.clone()
        for i0 in range(0, H.shape[0], BLOCK):
            i1 = i0 + BLOCK
            H[i0:i1, i1:] = self._lower[i1:, i0:i1].T
        return H


@contextlib.contextmanager
def _bf16_products():
    """fp32 matmuls computed by oneDNN from bf16-rounded inputs with fp32 accumulation (exact
    products for inputs that are bf16 numbers already)."""
    setting = torch.backends.mkldnn.matmul
    previous = setting.fp32_precision
    setting.fp32_precision = "bf16"
    try:
        yield
    finally:
        setting.fp32_precision = previous
