"""How much memory pruning and the Hutchinson estimate need, from a model's architecture alone.

`estimate_memory(config, nsamples, seqlen, device_bytes, dtype)` predicts the peak device
memory of
- the layer-by-layer pruning pass (docs/method.md §1, samrepro.pipeline): the model stays on the
  CPU, one decoder layer at a time is on the device with its fp32 Hessians and the solver's
  fp32 work matrices, and the calibration activations (nsamples × seqlen × hidden) are on the
  device when everything fits ("device"), else on the CPU, moved one batch at a time
  ("offload"), or it does not fit at all ("does not fit");
- the Hutchinson estimate (docs/method.md §3, samrepro.sensitivity / samrepro.distributed): the
  whole model on the device, its prunable weights' gradient with its graph, the probe and the
  Hessian-vector product, and the activations of the double backward through one batch
  (math attention, so the seq² attention probabilities are stored).

Every figure is a sum of named parts (bytes), returned so that a reader can check it.
`estimate_time` projects the time of both from FLOP counts and an assumed GPU (`A100`).
Pruning's parts are counted from the code (which tensors are alive at once). The
double backward's activations per token and layer are `HUTCHINSON_SAVED` hidden-size,
intermediate-size and seq-per-head units, and `HUTCHINSON_LOGITS` vocabulary-size fp32 units
for the loss: counts read off the autograd graph of the installed transformers on the CPU
(tests/test_memory.py checks the whole estimate against measured peaks; a GPU adds the CUDA
context and allocator slack, `overhead_bytes`).

`PAPER_MODELS` holds the architecture numbers of the paper's models (public facts), so the
estimate needs no hub access.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import UserError

GIB = 2**30

# (hidden, layers, intermediate, heads, kv heads, vocab) of the paper's models
PAPER_MODELS: dict[str, dict] = {
    **{f"opt-{size}": {"model_type": "opt", "hidden_size": h, "num_hidden_layers": n,
                       "ffn_dim": 4 * h, "num_attention_heads": a, "vocab_size": 50272}
       for size, h, n, a in (("125m", 768, 12, 12), ("350m", 1024, 24, 16),
                             ("1.3b", 2048, 24, 32), ("2.7b", 2560, 32, 32),
                             ("6.7b", 4096, 32, 32), ("13b", 5120, 40, 40),
                             ("30b", 7168, 48, 56), ("66b", 9216, 64, 72))},
    **{name: {"model_type": "llama", "hidden_size": h, "num_hidden_layers": n,
              "intermediate_size": i, "num_attention_heads": a, "num_key_value_heads": kv,
              "vocab_size": 32000}
       for name, h, n, i, a, kv in (("llama-7b", 4096, 32, 11008, 32, 32),
                                    ("llama-13b", 5120, 40, 13824, 40, 40),
                                    ("llama-30b", 6656, 60, 17920, 52, 52),
                                    ("llama-65b", 8192, 80, 22016, 64, 64),
                                    ("llama-2-7b", 4096, 32, 11008, 32, 32),
                                    ("llama-2-13b", 5120, 40, 13824, 40, 40),
                                    ("llama-2-70b", 8192, 80, 28672, 64, 8))},
}

# Double backward (Hutchinson), per token and decoder layer: saved values in units of the
# hidden size, the intermediate size and (per head) the sequence length; and per token,
# fp32 values of vocabulary size for the logits and the cross-entropy.
HUTCHINSON_SAVED = {"hidden": 24.0, "intermediate": 10.0, "attention": 4.0}
HUTCHINSON_LOGITS = 7.0


@dataclass(frozen=True)
class Shape:
    """The architecture numbers the estimate needs."""

    family: str  # "opt" or "llama"
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def matrices(self) -> list[tuple[int, int]]:
        """(out, in) of one decoder layer's prunable matrices."""
        h, i, kv = self.hidden, self.intermediate, self.kv_heads * self.head_dim
        if self.family == "opt":
            return [(h, h)] * 4 + [(i, h), (h, i)]
        return [(h, h), (kv, h), (kv, h), (h, h), (i, h), (i, h), (h, i)]

    def hessian_groups(self) -> list[tuple[int, int]]:
        """(stacked rows, in) of the solves of one layer: linears fed the same input share H."""
        h, i, kv = self.hidden, self.intermediate, self.kv_heads * self.head_dim
        if self.family == "opt":
            return [(3 * h, h), (h, h), (i, h), (h, i)]
        return [(h + 2 * kv, h), (h, h), (2 * i, h), (h, i)]

    def layer_parameters(self) -> int:
        norms = 4 * self.hidden if self.family == "opt" else 2 * self.hidden
        biases = (4 * self.hidden + self.intermediate + self.hidden) if self.family == "opt" else 0
        return sum(o * n for o, n in self.matrices()) + norms + biases

    def parameters(self) -> int:
        embeddings = self.vocab * self.hidden * (1 if self.tied else 2)
        positions = 2050 * self.hidden if self.family == "opt" else 0
        final_norm = 2 * self.hidden if self.family == "opt" else self.hidden
        return self.layers * self.layer_parameters() + embeddings + positions + final_norm

    def prunable_parameters(self) -> int:
        return self.layers * sum(o * n for o, n in self.matrices())


def shape_of(config) -> Shape:
    """Shape from a transformers config, a dict of its fields, or a PAPER_MODELS name."""
    if isinstance(config, str):
        if config not in PAPER_MODELS:
            raise UserError(f"unknown model {config!r}: give a transformers config or one of "
                            f"{', '.join(PAPER_MODELS)}")
        config = PAPER_MODELS[config]
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    family = get("model_type")
    if family not in ("opt", "llama"):
        raise UserError(f"the memory estimate knows OPT and LLaMA-family configs, not {family!r}")
    heads = get("num_attention_heads")
    return Shape(family=family, hidden=get("hidden_size"), layers=get("num_hidden_layers"),
                 intermediate=get("ffn_dim") if family == "opt" else get("intermediate_size"),
                 heads=heads, kv_heads=get("num_key_value_heads") or heads,
                 vocab=get("vocab_size"),
                 tied=bool(get("tie_word_embeddings", family == "opt")))


def _bytes(dtype) -> int:
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return torch.empty((), dtype=dtype).element_size()


def pruning_parts(shape: Shape, nsamples: int, seqlen: int, dtype=torch.float16,
                  batch_size: int = 8) -> dict[str, int]:
    """Bytes of what the pruning pass holds on the device at its peak (one layer's work).

    `activations` is the whole calibration set's layer inputs (nsamples × seqlen × hidden):
    the part that offloading moves to the CPU; `batch_io` the batch in flight (its input and
    output, on the device in both placements).
    """
    b, f32 = _bytes(dtype), 4
    tokens_batch = min(batch_size, nsamples) * seqlen
    h, i = shape.hidden, shape.intermediate
    hessians = f32 * sum(n * n for _, n in shape.hessian_groups())  # one per shared input
    solver = max(f32 * (5 * n * n + 2 * rows * n) + b * rows * n
                 for rows, n in shape.hessian_groups())
    mlp = (3 if shape.family == "llama" else 2) * i
    forward = b * tokens_batch * (4 * h + mlp) + f32 * tokens_batch * i  # + fp32 hook copy
    return {
        "layer_weights": b * shape.layer_parameters(),
        "activations": b * nsamples * seqlen * h,
        "batch_io": 2 * b * tokens_batch * h,
        "rotary": 2 * b * nsamples * seqlen * shape.head_dim if shape.family == "llama" else 0,
        "hessians": hessians,
        "work": max(forward, solver),  # the forward with hooks, or the solve of one group
    }


def hutchinson_parts(shape: Shape, batch_size: int, seqlen: int, dtype=torch.float32) -> dict:
    """Bytes on the device at the peak of one Hutchinson probe on one batch (docs/method.md §3)."""
    b = _bytes(dtype)
    tokens = batch_size * seqlen
    saved = HUTCHINSON_SAVED
    per_token_layer = (saved["hidden"] * shape.hidden + saved["intermediate"] * shape.intermediate
                       + saved["attention"] * shape.heads * seqlen)
    return {
        "weights": b * shape.parameters(),
        "probe_gradient_hz": 3 * b * shape.prunable_parameters(),
        "activations": int(b * tokens * shape.layers * per_token_layer),
        "logits": int(4 * HUTCHINSON_LOGITS * tokens * shape.vocab),
    }


def estimate_memory(config, nsamples: int = 128, seqlen: int = 2048, device_bytes: float = 80e9,
                    dtype=torch.float16, batch_size: int = 8, probe_batch: int = 1,
                    overhead_bytes: float = 1.5 * GIB, host_bytes: float | None = None) -> dict:
    """Predicted peaks (bytes) of pruning and of the Hutchinson estimate, and the placement.

    config: a transformers config, a dict of its fields, or a PAPER_MODELS name.
    device_bytes: the GPU's memory; overhead_bytes: what CUDA itself takes (context, cuBLAS
    workspace, allocator slack; 0 to compare with CPU measurements).
    Returns {"pruning": {"placement", "peak", "peak_device", "peak_offload", "host",
    "parts"}, "hutchinson": {"peak", "fits", "min_devices", "parts"}, "parameters", ...}.
    """
    for name, value in (("nsamples", nsamples), ("seqlen", seqlen), ("batch_size", batch_size),
                        ("probe_batch", probe_batch)):
        if value < 1:
            raise UserError(f"{name} must be at least 1, got {value}")
    shape = shape_of(config)
    b = _bytes(dtype)
    parts = pruning_parts(shape, nsamples, seqlen, dtype, batch_size)
    on_device = sum(parts.values()) + overhead_bytes
    offloaded = on_device - parts["activations"] - parts["rotary"]
    if on_device <= device_bytes:
        placement, peak = "device", on_device
    elif offloaded <= device_bytes:
        placement, peak = "offload", offloaded
    else:
        placement, peak = "does not fit", offloaded
    host = b * shape.parameters() + (parts["activations"] if placement == "offload" else 0)
    hparts = hutchinson_parts(shape, probe_batch, seqlen, dtype)
    hpeak = sum(hparts.values()) + overhead_bytes
    # sharded over k devices (accelerate device_map="auto"): each holds ~1/k of the total
    min_devices = -(-int(hpeak) // int(max(device_bytes - overhead_bytes, 1)))
    return {
        "parameters": shape.parameters(), "prunable_parameters": shape.prunable_parameters(),
        "dtype": str(dtype).removeprefix("torch."), "nsamples": nsamples, "seqlen": seqlen,
        "device_bytes": device_bytes,
        "pruning": {"placement": placement, "peak": peak, "peak_device": on_device,
                    "peak_offload": offloaded, "host": host, "parts": parts,
                    "host_fits": None if host_bytes is None else host <= host_bytes},
        "hutchinson": {"peak": hpeak, "fits": hpeak <= device_bytes, "min_devices": min_devices,
                       "probe_batch": probe_batch, "parts": hparts},
    }


def choose_placement(config, nsamples: int, seqlen: int, device_bytes: float, dtype,
                     batch_size: int = 8) -> str:
    """"device", "offload" or "does not fit" for pruning with `device_bytes` free."""
    return estimate_memory(config, nsamples, seqlen, device_bytes, dtype, batch_size,
                           overhead_bytes=0.5 * GIB)["pruning"]["placement"]


def paper_table(device_gib=(80, 24), nsamples: int = 128, seqlen: int = 2048,
                dtype=torch.float16) -> str:
    """Markdown table of predicted peaks for PAPER_MODELS at the paper's protocol."""
    head = ["model", "params", "host RAM (model)"]
    for g in device_gib:
        head += [f"pruning on {g} GB", f"Hutchinson on {g} GB (1×{seqlen})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in PAPER_MODELS:
        row = None
        for g in device_gib:
            e = estimate_memory(name, nsamples, seqlen, g * 1e9, dtype)
            if row is None:
                row = [name, f"{e['parameters'] / 1e9:.2f}B",
                       f"{e['parameters'] * _bytes(dtype) / GIB:.0f} GiB"]
            p, h = e["pruning"], e["hutchinson"]
            row.append(f"{p['peak'] / GIB:.1f} GiB, {p['placement']}")
            row.append(f"{h['peak'] / GIB:.0f} GiB" + ("" if h["fits"] else
                                                      f", needs {h['min_devices']} GPUs"))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# ---- time: FLOP counts against an assumed GPU (a projection, not a measurement) ----

# An A100-80GB as assumed by benchmarks/scaling.py: peak rates, the fraction of them reached,
# and the fixed cost of one step of the solver's column loop (a few small kernels).
A100 = {"name": "A100-80GB", "bytes": 80e9, "fp16_flops": 312e12, "fp32_flops": 19.5e12,
        "utilization": 0.5, "column_step_seconds": 40e-6}


def prune_flops(shape: Shape, tokens: int, seqlen: int) -> dict:
    """FLOPs of one pruning pass (docs/method.md §1): two forwards of every layer over the
    calibration tokens, the Hessians 2XXᵀ/n, and the solver (Cholesky/inverse ~ 2·in³ and the
    OBS updates 2·rows·in² per group); `columns` counts the solver's column steps."""
    weights = sum(o * i for o, i in shape.matrices())
    forward = 2 * (2 * weights * tokens + 2 * tokens * seqlen * shape.hidden)
    hessian = sum(2 * tokens * n * n for _, n in shape.hessian_groups())
    solver = sum(2 * rows * n * n + 2 * n ** 3 for rows, n in shape.hessian_groups())
    columns = sum(n for _, n in shape.hessian_groups())
    return {"forward": shape.layers * forward, "hessian": shape.layers * hessian,
            "solver": shape.layers * solver, "columns": shape.layers * columns}


def forward_flops(shape: Shape, tokens: int, seqlen: int) -> float:
    """FLOPs of one forward of the whole model over `tokens` tokens in windows of `seqlen`."""
    per_layer = 2 * sum(o * i for o, i in shape.matrices()) * tokens + 2 * tokens * seqlen * shape.hidden
    return shape.layers * per_layer + 2 * shape.vocab * shape.hidden * tokens


def estimate_time(config, nsamples: int = 128, seqlen: int = 2048, gpu: dict = A100,
                  probe_forwards: float = 9.3) -> dict:
    """Projected seconds of pruning and of one Hutchinson probe (1 × seqlen) on `gpu`.

    Forwards run at the fp16 rate, Hessians and the solver at the fp32 rate, both at
    `gpu["utilization"]` of peak, plus `column_step_seconds` per solver column. A probe costs
    `probe_forwards` forwards of one window (a double backward; measured on the CPU by
    benchmarks/scaling.py, `rates.probe_in_forwards` in results/embedded/scaling.json).
    A projection from assumed rates: never measured on a GPU.
    """
    shape = shape_of(config)
    f = prune_flops(shape, nsamples * seqlen, seqlen)
    r16 = gpu["fp16_flops"] * gpu["utilization"]
    r32 = gpu["fp32_flops"] * gpu["utilization"]
    pruning = (f["forward"] / r16 + (f["hessian"] + f["solver"]) / r32
               + f["columns"] * gpu["column_step_seconds"])
    probe = probe_forwards * forward_flops(shape, seqlen, seqlen) / r16
    return {"pruning_seconds": pruning, "probe_seconds": probe, "pruning_flops": f,
            "gpu": gpu, "probe_forwards": probe_forwards}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def measure_peak(fn, device=None):
    """(fn(), peak bytes allocated above the start while fn ran).

    On a CUDA device: torch.cuda.max_memory_allocated. On the CPU (Linux): the process's
    resident-set high-water mark, reset before fn through /proc/self/clear_refs. Run it in a
    process started with MALLOC_MMAP_THRESHOLD_=65536 so that freed buffers leave the
    resident set at once (else glibc keeps them and a later peak reads low).
    """
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = fn()
        torch.cuda.synchronize(device)
        return result, torch.cuda.max_memory_allocated(device) - start
    start = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident set
    result = fn()
    return result, (_status_kib("VmHWM") - start) * 1024
