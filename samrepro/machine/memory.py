"""How much memory pruning and the Hutchinson estimate need, from a model's architecture alone.

`estimate_memory(config, nsamples, seqlen, device_bytes, dtype)` predicts the peak device
memory of
- the layer-by-layer pruning pass (docs/method.md §1, samrepro.method.pipeline): the model stays on the
  CPU, one decoder layer at a time is on the device with its fp32 Hessians and the solver's
  fp32 work matrices, and the calibration activations (nsamples × seqlen × hidden) are on the
  device when everything fits ("device"), else on the CPU, moved one batch at a time
  ("offload"), or it does not fit at all ("does not fit");
- the Hutchinson estimate (docs/method.md §3, samrepro.method.sensitivity.probe_row, layer by
  layer): the whole model on the device (or one layer at a time, streamed from the host),
  every layer's input and its tangent, and one layer's local double backward through one
  batch (math attention: the seq² scores and softmax are kept in fp32, at most) or the head on a
  few tokens; `hutchinson_device_peak` gives the fullest GPU's share when the model is
  split over several by whole layers;
- an inference forward (perplexity, lm-eval): `inference_parts`, `inference_device_peak`.

samrepro.machine.plan turns these into a placement per step of a run.

Every figure is a sum of named parts (bytes), returned so that a reader can check it.
`estimate_time` projects the time of both from FLOP counts and an assumed GPU (`A100`, one
of `GPUS`, the GPU kinds that samrepro.machine.plan knows).
Pruning's parts are counted from the code (which tensors are alive at once). The
Hutchinson probe's per-token units (`HUTCHINSON_SAVED`, `HUTCHINSON_ATTENTION_BYTES`,
`HUTCHINSON_LOGITS`) were measured on small models with the installed transformers on the
CPU (tests/test_memory.py checks the whole estimate against measured peaks,
benchmarks/hutchinson_widths.py at the real widths of LLaMA-7B, 13B and 70B; a GPU adds the
CUDA context and allocator slack, `overhead_bytes`).

`PAPER_MODELS` holds the architecture numbers of the paper's models (public facts), so the
estimate needs no hub access.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from samrepro.errors import UserError

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

# One layer-by-layer Hutchinson probe (sensitivity.probe_row), measured on this CPU's autograd
# (benchmarks/hutchinson_widths.py checks the sum at the paper's real widths). The reverse
# step of one decoder layer holds, per token, HUTCHINSON_SAVED hidden- and intermediate-size
# values in the weights' dtype (its recomputed forward, the first backward's graph, the
# second backward's transients; RMSNorm's fp32 copies counted in them), and per head and
# (query, key) pair HUTCHINSON_ATTENTION_BYTES: math attention keeps the scores, the softmax
# and their gradients in fp32 even for fp16 inputs, about ten fp32 values (CPU; bf16 keeps
# them in bf16, sensitivity._bf16_math_attention, so for bf16 this is an upper bound). The
# layer's weight-sized tensors are HUTCHINSON_WEIGHT_COPIES: its gradient with its graph,
# the probe z and Hz, and two more of its largest matrix while autograd sums the two
# contributions to its Hz (measured at LLaMA-2-70B's width, where that matrix is large). The head holds HUTCHINSON_LOGITS fp32 values a logit for
# HEAD_CHUNK tokens at a time.
HUTCHINSON_SAVED = {"hidden": 11.0, "intermediate": 10.0}
HUTCHINSON_ATTENTION_BYTES = 42.0
HUTCHINSON_WEIGHT_COPIES = 3
HUTCHINSON_LOGITS = 7.5
HEAD_CHUNK = 128  # tokens whose logits sensitivity.probe_row's head holds at once
DOT_ELEMENTS = 2 ** 22  # elements of each fp32 temporary of its zᵀHz reductions
# An inference forward (perplexity, lm-eval; no gradient): per token, the largest layer's
# live values in hidden and intermediate units, and (lm-eval's logits over every position)
# fp32 vocabulary-size values for the logits, their fp32 copy and the log-softmax.
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
    """Bytes of one layer-by-layer Hutchinson probe on one batch (docs/method.md §3,
    sensitivity.probe_row), by what holds them:
    - `weights`: the whole model;
    - `boundary`: every decoder layer's input and its tangent, kept from the forward sweep,
      and the incoming gradient and its tangent (old and new) of the reverse sweep;
    - `layer_weights_work`: one layer's weight-sized tensors (gradient with graph, z, Hz,
      the sum of Hz's two parts for the largest matrix) and the fp32 reduction's temporaries;
    - `layer_activations`, `attention`: one layer's local double backward;
    - `head`: the final norm, LM head and loss on HEAD_CHUNK tokens at a time.
    The head runs before the reverse sweep, so the peak (hutchinson_peak) holds the larger of
    the head and one layer's step, not both."""
    b = _bytes(dtype)
    tokens = batch_size * seqlen
    saved = HUTCHINSON_SAVED
    matrices = shape.matrices()
    return {
        "weights": b * shape.parameters(),
        "boundary": 2 * b * tokens * shape.hidden * shape.layers + 4 * b * tokens * shape.hidden,
        "layer_weights_work": (HUTCHINSON_WEIGHT_COPIES * b * sum(o * i for o, i in matrices)
                               + 2 * b * max(o * i for o, i in matrices)
                               + 3 * 4 * min(DOT_ELEMENTS, max(o * i for o, i in matrices))),
        "layer_activations": int(b * tokens * (saved["hidden"] * shape.hidden
                                               + saved["intermediate"] * shape.intermediate)),
        "attention": int(HUTCHINSON_ATTENTION_BYTES * batch_size * shape.heads * seqlen ** 2),
        "head": int(4 * HUTCHINSON_LOGITS * batch_size * min(HEAD_CHUNK, max(seqlen - 1, 1))
                    * shape.vocab),
    }


def hutchinson_peak(parts: dict, weights: float | None = None) -> float:
    """The peak of hutchinson_parts: the weights (or `weights` bytes where only some are
    held), the boundary values, and the larger of one layer's step and the head."""
    step = parts["layer_weights_work"] + parts["layer_activations"] + parts["attention"]
    return (parts["weights"] if weights is None else weights) + parts["boundary"] + \
        max(step, parts["head"])


def hutchinson_device_peak(shape: Shape, seqlen: int, dtype=torch.float16, devices: int = 1,
                           probe_batch: int = 1, checkpointing: bool = False,
                           overhead_bytes: float = 0.0, streamed: bool = False) -> dict:
    """Bytes on the fullest device of one Hutchinson probe whose model is split over
    `devices` GPUs by whole decoder layers (plan.shard_map): ceil(layers/devices) layers'
    weights plus everything outside the layers (embeddings, LM head) counted on that same
    device, which errs high, and the boundary values and one layer's step (hutchinson_peak).
    `streamed`: the weights stay in host RAM and one decoder layer at a time is on the one
    device (with what is outside the layers); `host` is then the model's bytes.
    `checkpointing` changes nothing (one layer's graph is all the probe holds; kept for
    callers)."""
    parts = hutchinson_parts(shape, probe_batch, seqlen, dtype)
    b = _bytes(dtype)
    layers_here = 1 if streamed else -(-shape.layers // devices)
    weights = b * (layers_here * shape.layer_parameters() + shape.embedding_parameters())
    peak = hutchinson_peak(parts, weights) + overhead_bytes
    return {"peak": peak, "devices": 1 if streamed else devices, "layers_per_device": layers_here,
            "checkpointing": False, "streamed": streamed,
            "host": parts["weights"] if streamed else 0, "total": hutchinson_peak(parts),
            "parts": parts}


def inference_parts(shape: Shape, seqlen: int, dtype=torch.float16, batch_size: int = 1,
                    loss_chunk: int | None = None) -> dict:
    """Bytes of a forward without gradient on one batch of windows: lm-eval's, whose logits
    cover every position, or with `loss_chunk` (evaluate.loss_rows(vocab)) perplexity's, whose
    LM head and loss run that many positions of the batch at a time (evaluate.token_nll)."""
    b = _bytes(dtype)
    tokens = batch_size * seqlen
    if loss_chunk:  # the head's output, its fp32 copy (half precision only), the log-softmax
        logit_tokens, logit_bytes = min(tokens, loss_chunk), b + (4 if b < 4 else 0) + 4
    else:
        logit_tokens, logit_bytes = tokens, 4 * INFERENCE_LOGITS
    saved = INFERENCE_SAVED
    return {"weights": b * shape.parameters(),
            "activations": int(b * tokens * (saved["hidden"] * shape.hidden
                                             + saved["intermediate"] * shape.intermediate)),
            "logits": int(logit_bytes * logit_tokens * shape.vocab)}


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
    hpeak = hutchinson_peak(hparts) + overhead_bytes
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

@dataclass(frozen=True)
class GPU:
    """One GPU kind: usable memory (about what torch reports as total_memory), whether it
    computes in bf16 (compute capability ≥ 8), and its nominal dense peak rates."""

    name: str
    memory: float  # bytes
    bf16: bool
    flops16: float  # fp16/bf16 tensor cores, dense, FLOP/s
    flops32: float  # fp32 without TF32 (the Hessians and the solver), FLOP/s


def _gpu(name, gib, bf16, tflops16, tflops32):
    return GPU(name, gib * GIB, bf16, tflops16 * 1e12, tflops32 * 1e12)


# The GPU kinds plans know (samrepro.machine.plan): nominal figures from the vendors' data sheets
# (SXM parts where there are two).
GPUS: dict[str, GPU] = {g.name: g for g in (
    _gpu("A100-80GB", 79.2, True, 312, 19.5), _gpu("A100-40GB", 39.4, True, 312, 19.5),
    _gpu("H100-80GB", 79.1, True, 989, 67), _gpu("H200-141GB", 139.8, True, 989, 67),
    _gpu("L40S-48GB", 44.4, True, 362, 91.6), _gpu("A6000-48GB", 47.5, True, 155, 38.7),
    _gpu("A10-24GB", 22.1, True, 125, 31.2), _gpu("L4-24GB", 22.0, True, 121, 30.3),
    _gpu("RTX4090-24GB", 23.6, True, 165, 82.6), _gpu("RTX3090-24GB", 23.6, True, 71, 35.6),
    _gpu("V100-32GB", 31.7, False, 125, 15.7), _gpu("V100-16GB", 15.8, False, 125, 15.7),
    _gpu("T4-16GB", 14.6, False, 65, 8.1),
)}
A100 = GPUS["A100-80GB"]  # the GPU that estimate_time and benchmarks/scaling.py assume
UTILIZATION = 0.5  # assumed fraction of the peak rate reached (benchmarks/scaling.py)
COLUMN_STEP_SECONDS = 40e-6  # per solver column on a GPU: a few small kernels
HOST_TO_DEVICE = 20e9  # bytes/s host RAM → GPU (PCIe 4.0 ×16, effective): streamed weights


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


def estimate_time(config, nsamples: int = 128, seqlen: int = 2048, gpu: GPU = A100,
                  probe_forwards: float = 9.3) -> dict:
    """Projected seconds of pruning and of one Hutchinson probe (1 × seqlen) on `gpu`.

    Forwards run at the fp16 rate, Hessians and the solver at the fp32 rate, both at
    UTILIZATION of peak, plus COLUMN_STEP_SECONDS per solver column. A probe costs
    `probe_forwards` forwards of one window (a double backward; measured on the CPU by
    benchmarks/scaling.py, `rates.probe_in_forwards` in results/embedded/scaling.json).
    A projection from assumed rates: never measured on a GPU.
    """
    shape = shape_of(config)
    f = prune_flops(shape, nsamples * seqlen, seqlen)
    r16, r32 = gpu.flops16 * UTILIZATION, gpu.flops32 * UTILIZATION
    pruning = (f["forward"] / r16 + (f["hessian"] + f["solver"]) / r32
               + f["columns"] * COLUMN_STEP_SECONDS)
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
