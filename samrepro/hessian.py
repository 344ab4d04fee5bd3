"""The layer-wise Hessian H = 2XXᵀ/n of a linear layer (METHOD.md §1).

X holds the layer's inputs as columns, one per calibration token; n counts tokens.
(SparseGPT's code divides by the number of sequences instead, which multiplies H by the
sequence length: that changes nothing for `obs`, `isc`, `magnitude` and `wanda`, which are
invariant to the scale of H, but it does for `isc-code`.)
"""

from __future__ import annotations

import torch


class HessianAccumulator:
    """Running mean of 2xxᵀ over every input token x seen by one linear layer, in fp32."""

    def __init__(self, in_features: int, device: torch.device | str = "cpu"):
        self.H = torch.zeros(in_features, in_features, dtype=torch.float32, device=device)
        self.tokens = 0

    def add(self, inputs: torch.Tensor) -> None:
        """Fold in a batch of layer inputs of shape (..., in_features)."""
        X = inputs.detach().reshape(-1, inputs.shape[-1]).to(self.H.device, torch.float32)
        batch = X.shape[0]
        total = self.tokens + batch
        # H_new = (n/(n+b))·H + (2/(n+b))·XᵀX: a running mean, no large sums in fp32
        self.H.mul_(self.tokens / total).addmm_(X.T, X, alpha=2.0 / total)
        self.tokens = total
