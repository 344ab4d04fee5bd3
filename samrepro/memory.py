"""How much memory pruning and the Hutchinson estimate need, from a model's architecture alone.

`estimate_memory(config, nsamples, seqlen, device_bytes, dtype)` predicts the peak device
memory of
- the layer-by-layer pruning pass (docs/method.md §1, samrepro.pipeline): the model stays on the
  CPU, one decoder layer at a time is on the device with its fp32 Hessians and the solver's
  fp32 work matrices, and the calibration activations (nsamples × seqlen × hidden) are on the
  device when everything fits ("device"), else on the CPU, moved one batch at a time
  ("offload"), or it does not fit at all ("does not fit");
- the Hutchinson estimate (docs/method.md §3, samrepro.sensitivity): the whole model on the
  device, its prunable weights' gradient with its graph, the probe and the Hessian-vector
  product, and the activations of the double backward through one batch (math attention,
  so the seq² attention probabilities are stored); `hutchinson_device_peak` gives the
  fullest GPU's share when the model is split over several by whole layers;
- an inference forward (perplexity, lm-eval): `inference_parts`, `inference_device_peak`.

samrepro.plan turns these into a placement per step of a run.

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

# The architecture numbers of the paper's models (their config.json fields that the estimate
# reads; tests/test_plan.py holds the full config.json files and checks these against them).
PAPER_MODELS: dict[str, dict] = {
    **{f"opt-{size}": {"model_type": "opt", "hidden_size": h, "num_hidden_layers": n,
                       "ffn_dim": 4 * h, "num_attention_heads": a, "vocab_size": 50272,
                       "max_position_embeddings": 2048, "word_embed_proj_dim": p,
                       "do_layer_norm_before": size != "350m"}
       for size, h, n, a, p in (("125m", 768, 12, 12, 768), ("350m", 1024, 24, 16, 512),
                                ("1.3b", 2048, 24, 32, 2048), ("2.7b", 2560, 32, 32, 2560),
                                ("6.7b", 4096, 32, 32, 4096), ("13b", 5120, 40, 40, 5120),
                                ("30b", 7168, 48, 56, 7168), ("66b", 9216, 64, 72, 9216))},
    **{name: {"model_type": "llama", "hidden_size": h, "num_hidden_layers": n,
              "intermediate_size": i, "num_attention_heads": a, "num_key_value_heads": kv,
              "vocab_size": 32000, "max_position_embeddings": ctx}
       for name, h, n, i, a, kv, ctx in (("llama-7b", 4096, 32, 11008, 32, 32, 2048),
                                         ("llama-13b", 5120, 40, 13824, 40, 40, 2048),
                                         ("llama-30b", 6656, 60, 17920, 52, 52, 2048),
                                         ("llama-65b", 8192, 80, 22016, 64, 64, 2048),
                                         ("llama-2-7b", 4096, 32, 11008, 32, 32, 4096),
                                         ("llama-2-13b", 5120, 40, 13824, 40, 40, 4096),
                                         ("llama-2-70b", 8192, 80, 28672, 64, 8, 4096))},
}
# Hub ids of the paper's models → their PAPER_MODELS entry (so that planning needs no hub).
HUB_IDS = {
    **{f"facebook/opt-{size}": f"opt-{size}"
       for size in ("125m", "350m", "1.3b", "2.7b", "6.7b", "13b", "30b", "66b")},
    **{f"huggyllama/llama-{size}": f"llama-{size}" for size in ("7b", "13b", "30b", "65b")},
    **{f"meta-llama/Llama-2-{size}-hf": f"llama-2-{size}" for size in ("7b", "13b", "70b")},
}

# Double backward (Hutchinson), per token and decoder layer: saved values in units of the
# hidden size, the intermediate size and (per head) the sequence length; and per token,
# fp32 values of vocabulary size for the logits and the cross-entropy.
HUTCHINSON_SAVED = {"hidden": 24.0, "intermediate": 10.0, "attention": 4.0}
HUTCHINSON_LOGITS = 7.0
# Layer checkpointing keeps most of these: the double backward holds the recomputed
# activations (measured: 906 → 813 MiB at 8 layers of the embedded model, results/embedded/
# scaling.md), so it saves about a tenth of them.
CHECKPOINTING_KEEPS = 0.9
# An inference forward (perplexity, lm-eval; no gradient): per token, the largest layer's
# live values in hidden and intermediate units, and fp32 vocabulary-size values for the
# logits, their fp32 copy and the log-softmax.
INFERENCE_SAVED = {"hidden": 6.0, "intermediate": 3.0}
INFERENCE_LOGITS = 3.0


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
    embed_dim: int = 0  # OPT's word_embed_proj_dim (OPT-350m: 512, projected in and out)
    final_norm: bool = True  # OPT-350m (post-norm) has no final layer norm
    positions: int = 0  # OPT's learned positions (max_position_embeddings + 2)
    bias: bool = False  # OPT: enable_bias; LLaMA: attention_bias (q, k, v, o)
    mlp_bias: bool = False  # LLaMA: mlp_bias

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def embedding_dim(self) -> int:
        return self.embed_dim or self.hidden

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
        h, i = self.hidden, self.intermediate
        if self.family == "opt":
            norms = 4 * h
            biases = (4 * h + i + h) if self.bias else 0
        else:
            norms = 2 * h
            biases = ((2 * h + 2 * self.kv_heads * self.head_dim) if self.bias else 0) + \
                ((2 * i + h) if self.mlp_bias else 0)
        return sum(o * n for o, n in self.matrices()) + norms + biases

    def embedding_parameters(self) -> int:
        """Token embeddings and the LM head (one matrix when tied), OPT's positions and
        projections, the final norm: everything outside the decoder layers."""
        e = self.embedding_dim
        tokens = self.vocab * e * (1 if self.tied else 2)
        projections = 2 * e * self.hidden if e != self.hidden else 0
        final_norm = (2 if self.family == "opt" else 1) * self.hidden if self.final_norm else 0
        return tokens + self.positions * self.hidden + projections + final_norm

    def parameters(self) -> int:
        return self.layers * self.layer_parameters() + self.embedding_parameters()

    def prunable_parameters(self) -> int:
        return self.layers * sum(o * n for o, n in self.matrices())


def shape_of(config) -> Shape:
    """Shape from a transformers config, a dict of its fields, a PAPER_MODELS name or the hub
    id of one of the paper's models (HUB_IDS)."""
    if isinstance(config, str):
        name = HUB_IDS.get(config, config)
        if name not in PAPER_MODELS:
            raise UserError(f"unknown model {config!r}: give a transformers config, a folder "
                            f"holding its config.json, or one of {', '.join(PAPER_MODELS)}")
        config = PAPER_MODELS[name]
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))

    def field(key, default=None):
        value = get(key, default)
        return default if value is None else value

    family = field("model_type")
    if family not in ("opt", "llama"):
        raise UserError(f"the memory estimate knows OPT and LLaMA-family configs, not {family!r}")
    heads = field("num_attention_heads")
    hidden = field("hidden_size")
    opt = family == "opt"
    return Shape(family=family, hidden=hidden, layers=field("num_hidden_layers"),
                 intermediate=field("ffn_dim") if opt else field("intermediate_size"),
                 heads=heads, kv_heads=field("num_key_value_heads", heads),
                 vocab=field("vocab_size"), tied=bool(field("tie_word_embeddings", opt)),
                 embed_dim=field("word_embed_proj_dim", hidden) if opt else hidden,
                 final_norm=(bool(field("do_layer_norm_before", True))
                             and not field("_remove_final_layer_norm", False)) if opt else True,
                 positions=field("max_position_embeddings", 2048) + 2 if opt else 0,
                 bias=bool(field("enable_bias", True)) if opt else bool(field("attention_bias", False)),
                 mlp_bias=False if opt else bool(field("mlp_bias", False)))


def _bytes(dtype) -> int:
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return torch.empty((), dtype=dtype).element_size()


def pruning_work(shape: Shape, nsamples: int, seqlen: int, dtype=torch.float16,
                 batch_size: int = 8) -> dict[str, int]:
    """Bytes of the pass's two kinds of work on top of a layer: its forward on one batch with
    the Hessian hooks ("forward"), and the solve of its largest group ("solver")."""
    b, f32 = _bytes(dtype), 4
    tokens_batch = min(batch_size, nsamples) * seqlen
    h, i = shape.hidden, shape.intermediate
    mlp = (3 if shape.family == "llama" else 2) * i
    return {"forward": b * tokens_batch * (4 * h + mlp) + f32 * tokens_batch * i,  # + fp32 hook copy
            "solver": max(f32 * (5 * n * n + 2 * rows * n) + b * rows * n
                          for rows, n in shape.hessian_groups())}


def pruning_parts(shape: Shape, nsamples: int, seqlen: int, dtype=torch.float16,
                  batch_size: int = 8) -> dict[str, int]:
    """Bytes of what the pruning pass holds on the device at its peak (one layer's work).

    `activations` is the whole calibration set's layer inputs (nsamples × seqlen × hidden):
    the part that offloading moves to the CPU; `batch_io` the batch in flight (its input and
    output, on the device in both placements).
    """
    b, f32 = _bytes(dtype), 4
    tokens_batch = min(batch_size, nsamples) * seqlen
    h = shape.hidden
    hessians = f32 * sum(n * n for _, n in shape.hessian_groups())  # one per shared input
    work = pruning_work(shape, nsamples, seqlen, dtype, batch_size)
    return {
        "layer_weights": b * shape.layer_parameters(),
        "activations": b * nsamples * seqlen * h,
        "batch_io": 2 * b * tokens_batch * h,
        "rotary": 2 * b * nsamples * seqlen * shape.head_dim if shape.family == "llama" else 0,
        "hessians": hessians,
        "work": max(work.values()),  # the forward with hooks, or the solve of one group
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


def hutchinson_device_peak(shape: Shape, seqlen: int, dtype=torch.float16, devices: int = 1,
                           probe_batch: int = 1, checkpointing: bool = False,
                           overhead_bytes: float = 0.0) -> dict:
    """Bytes on the fullest device of one Hutchinson probe whose model is split over
    `devices` GPUs by whole decoder layers (plan.shard_map): ceil(layers/devices) layers'
    weights, gradient, probe and Hz and activations, plus everything outside the layers
    (embeddings, LM head, logits) counted on that same device, which errs high.
    `checkpointing` keeps CHECKPOINTING_KEEPS of the activations."""
    parts = hutchinson_parts(shape, probe_batch, seqlen, dtype)
    b = _bytes(dtype)
    keep = CHECKPOINTING_KEEPS if checkpointing else 1.0
    per_layer = (b * shape.layer_parameters() + parts["probe_gradient_hz"] / shape.layers
                 + keep * parts["activations"] / shape.layers)
    outside = b * shape.embedding_parameters() + parts["logits"]
    layers_here = -(-shape.layers // devices)
    peak = layers_here * per_layer + outside + overhead_bytes
    return {"peak": peak, "devices": devices, "layers_per_device": layers_here,
            "checkpointing": checkpointing, "total": sum(parts.values()), "parts": parts}


def inference_parts(shape: Shape, seqlen: int, dtype=torch.float16, batch_size: int = 1) -> dict:
    """Bytes of a forward without gradient (perplexity, lm-eval) on one batch of windows."""
    b = _bytes(dtype)
    tokens = batch_size * seqlen
    saved = INFERENCE_SAVED
    return {"weights": b * shape.parameters(),
            "activations": int(b * tokens * (saved["hidden"] * shape.hidden
                                             + saved["intermediate"] * shape.intermediate)),
            "logits": int(4 * INFERENCE_LOGITS * tokens * shape.vocab)}


def inference_device_peak(shape: Shape, seqlen: int, dtype=torch.float16, devices: int = 1,
                          batch_size: int = 1, overhead_bytes: float = 0.0) -> dict:
    """inference_parts on the fullest of `devices` GPUs (split by whole layers, as above)."""
    parts = inference_parts(shape, seqlen, dtype, batch_size)
    b = _bytes(dtype)
    layers_here = -(-shape.layers // devices)
    peak = (layers_here * b * shape.layer_parameters() + b * shape.embedding_parameters()
            + parts["activations"] + parts["logits"] + overhead_bytes)
    return {"peak": peak, "devices": devices, "layers_per_device": layers_here,
            "total": sum(parts.values()), "parts": parts}


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
    return shape.layers * per_layer + 2 * shape.vocab * shape.embedding_dim * tokens  # the LM head


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
