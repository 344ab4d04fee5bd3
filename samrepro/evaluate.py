"""Perplexity by the SparseGPT protocol (METHOD.md §6).

The token stream is cut into non-overlapping windows of `seqlen` tokens; each window is
scored on its own (no context carried over) and ppl = exp(mean NLL per predicted token).
`max_windows` keeps only the first K windows: the CPU presets' cap, otherwise the same protocol.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .errors import UserError


@torch.no_grad()
def perplexity(model: nn.Module, ids: torch.Tensor, seqlen: int, max_windows: int | None = None,
               batch_size: int = 1, progress: bool = True, desc: str = "perplexity") -> dict:
    """Return {"ppl", "nll", "windows", "tokens"} for the 1-D token stream `ids`."""
    windows = ids.numel() // seqlen
    if windows == 0:
        raise UserError(f"the stream has {ids.numel()} tokens, fewer than seqlen={seqlen}")
    if max_windows is not None:
        if max_windows < 1:
            raise UserError(f"the window cap must be at least 1, got {max_windows}")
        windows = min(windows, max_windows)
    device = next(model.parameters()).device
    stream = ids[: windows * seqlen].view(windows, seqlen)
    total_nll, total_tokens = 0.0, 0
    for batch in tqdm(stream.split(batch_size), desc=desc, disable=not progress):
        batch = batch.to(device)
        logits = model(input_ids=batch, use_cache=False).logits[:, :-1].float()
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                              reduction="sum")
        total_nll += float(nll)
        total_tokens += batch[:, 1:].numel()
    mean = total_nll / total_tokens
    return {"ppl": math.exp(mean), "nll": mean, "windows": windows, "tokens": total_tokens}
