"""How sensitive each prunable matrix is: estimates of its average Hessian trace (docs/method.md §3).

sen_W = Tr(∇²_W L)/n_W, L the model's cross-entropy on calibration windows.

- `hutchinson`: Tr(H) ≈ mean over probes z of zᵀHz (paper: Gaussian z; authors' code:
  Rademacher), with Hz taken layer by layer (probe_row: a forward sweep carrying the
  probe's tangent, then one decoder layer's local double backward at a time; the same
  numbers as a double backward through the whole model in a fraction of its memory). One
  probe gives an estimate for every matrix at once (independent z per matrix block). Each
  estimate comes with its standard error over probe-windows; it stops when the relative
  standard error of 90% of the matrices is within `rel_tol`, or at `max_probes`. The same loop runs in one
  process or split over many (samrepro.commands.distributed under torchrun) with the same numbers.
- `fisher`: the empirical Fisher trace, mean over windows of the squared gradient (one
  backward per window, no double backward).
- `xxt`: the layer-wise proxy mean(diag(2XXᵀ/n)) that the pruning pass gets for free
  (computed on the dense model by pipeline.layer_hessian_diagonals; experiments takes the mean).
- `owl_outliers`: OWL's outlier counts, the input of allocation `owl`, from the weights and
  those same diagonals.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager

import torch
from torch import nn
from tqdm.auto import tqdm

from samrepro.errors import UserError
# the tokens whose fp32 logits the head holds at once; the elements of each fp32 temporary
# of a zᵀHz reduction (memory counts both)
from samrepro.machine.memory import DOT_ELEMENTS, HEAD_CHUNK
from samrepro.io.models import (STREAM_ATTRIBUTE, architecture, decoder_layers,
                                layer_checkpointing, layer_of, prunable_linears, visiting)


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


@contextmanager
def _bf16_math_attention(params: list[torch.Tensor]):
    """With bf16 weights, the math attention that _OnlyWeightsTrainable forces stays in bf16,
    instead of upcasting q, k, v to fp32 and casting the result back (forward and both
    backwards). torch's flag is global and, despite its `cuda` name, read on every device
    (_scaled_dot_product_attention_math); its previous value is restored. The samples keep
    the bf16 fidelity of tests/test_precision.py; fp16 (loss-scaled products) is left as it was."""
    flag = torch.backends.cuda
    before = flag.fp16_bf16_reduction_math_sdp_allowed()
    bf16 = any(p.dtype == torch.bfloat16 for p in params)
    flag.allow_fp16_bf16_reduction_math_sdp(before or bf16)
    try:
        yield
    finally:
        flag.allow_fp16_bf16_reduction_math_sdp(before)


def _loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    ids = ids.to(_input_device(model))
    return model(input_ids=ids, labels=ids, use_cache=False).loss


def _input_device(model: nn.Module) -> torch.device:
    """Where the token ids go: the embedding's device (the first GPU of a sharded model)."""
    return model.get_input_embeddings().weight.device


# ---- Hutchinson: one loop for one process or many --------------------------------------------

def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialized torch.distributed group, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def probe_seed(seed: int, probe: int, matrix: int) -> int:
    """The generator seed of matrix `matrix`'s probe at probe index `probe`.

    Every (seed, probe, matrix) has its own generator, so probe k is the same whichever
    process draws it and whatever was drawn before: one process and N give the same numbers.
    """
    return (seed * 1_000_003 + probe) * 65_537 + matrix


def draw_probe(seed: int, probe: int, matrix: int, like: torch.Tensor,
               distribution: str = "gaussian") -> torch.Tensor:
    """Probe z for matrix `matrix` at probe `probe`: drawn in fp32 on `like`'s device from its
    own generator, then cast to `like`'s dtype (Rademacher ±1 is exact in any dtype).
    The stream depends on the device type (CPU and CUDA generators differ), not on the
    device index nor on the number of processes."""
    g = torch.Generator(device=like.device).manual_seed(probe_seed(seed, probe, matrix))
    z = torch.randn(like.shape, generator=g, device=like.device, dtype=torch.float32)
    return (z.sign() if distribution == "rademacher" else z).to(like.dtype)


def _dot32(z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Σ z·h accumulated in fp32 (a few rows at a time: bounded extra memory)."""
    total = torch.zeros((), dtype=torch.float32, device=h.device)
    z2, h2 = z.reshape(z.shape[0], -1), h.reshape(h.shape[0], -1)
    rows = max(1, DOT_ELEMENTS // z2.shape[1])
    for i in range(0, z2.shape[0], rows):
        total += (z2[i:i + rows].float() * h2[i:i + rows].float()).sum()
    return total


class _Stop(Exception):
    pass


def _layer_inputs(model: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, tuple, dict]:
    """(hidden states, other args, keyword args) that the first decoder layer receives for
    `ids`, exactly as the installed transformers passes them (mask, positions, rotary ...)."""
    seen = {}

    def catch(_module, args, kwargs):
        seen["call"] = (args, kwargs)
        raise _Stop

    hook = decoder_layers(model)[0].register_forward_pre_hook(catch, with_kwargs=True)
    try:
        with torch.no_grad():
            model(input_ids=ids.to(_input_device(model)), use_cache=False)
    except _Stop:
        pass
    finally:
        hook.remove()
    args, kwargs = seen["call"]
    if args:
        return args[0], args[1:], kwargs
    kwargs = dict(kwargs)
    return kwargs.pop("hidden_states"), (), kwargs


def _hidden(out):
    return out[0] if isinstance(out, (tuple, list)) else out


class _Inject(nn.Module):
    """Stands in for all the decoder layers: returns the given hidden states, so the model's
    own forward computes the head (final norm, LM head, loss) on them."""

    def __init__(self, hidden: torch.Tensor, like: nn.Module, as_tuple: bool):
        super().__init__()
        self.hidden, self.as_tuple = hidden, as_tuple
        for attribute in ("attention_type", "layer_idx"):  # some models read these
            if hasattr(like, attribute):
                setattr(self, attribute, getattr(like, attribute))

    def forward(self, *_args, **_kwargs):
        return (self.hidden,) if self.as_tuple else self.hidden


def _head(model: nn.Module, ids: torch.Tensor, hidden: torch.Tensor, tangent: torch.Tensor,
          as_tuple: bool, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(g, ġ): the gradient of the loss (times `scale`) with respect to the last decoder
    layer's output `hidden`, and its tangent along `tangent` (∇²L·tangent). The head (final
    norm, LM head, cross-entropy) acts on each token alone, so this runs a few tokens at a
    time: the model's own forward on them, the decoder layers replaced by `hidden`, and the
    mean cross-entropy over all the batch's predicted tokens as the model computes it."""
    parent_name, attr = architecture(model).layers.rsplit(".", 1)
    parent = model.get_submodule(parent_name)
    layers = getattr(parent, attr)
    batch, length = ids.shape
    count = batch * (length - 1)  # the last token predicts nothing: its g and ġ are 0
    g, dg = torch.zeros_like(hidden), torch.zeros_like(hidden)
    try:
        for a in range(0, length - 1, HEAD_CHUNK):
            b = min(a + HEAD_CHUNK, length - 1)
            h = hidden[:, a:b].detach().requires_grad_(True)
            setattr(parent, attr, nn.ModuleList([_Inject(h, layers[-1], as_tuple)]))
            logits = model(input_ids=ids[:, a:b].to(_input_device(model)), use_cache=False).logits
            targets = ids[:, a + 1:b + 1].reshape(-1).to(logits.device)
            loss = nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                               targets, reduction="sum") * (scale / count)
            (ga,) = torch.autograd.grad(loss, h, create_graph=True)
            (dga,) = torch.autograd.grad(ga, h, grad_outputs=tangent[:, a:b].to(h.device))
            g[:, a:b], dg[:, a:b] = ga.detach(), dga
            del logits, loss, ga, dga
    finally:
        setattr(parent, attr, layers)
    return g, dg


def probe_row(model: nn.Module, params: list, batch: torch.Tensor, draw,
              loss_scale: float = 1.0) -> torch.Tensor:
    """One Hutchinson sample per matrix, zᵀHz/n_W, on one batch, layer by layer
    (docs/method.md §3): the same numbers as a double backward through the whole model,
    holding one decoder layer's graph at a time.

    With h_l the input of decoder layer l (h_{l+1} = f_l(h_l, W_l)) and g_l = ∂L/∂h_l:
    1. forward sweep: h_{l+1} and its tangent ḣ_{l+1} = J_h ḣ_l + J_W z_l (forward-mode AD,
       z on the prunable weights, ḣ_0 = 0), keeping only every h_l and ḣ_l;
    2. the head (final norm, LM head, loss) gives g_L = ∇L(h_L) and ġ_L = ∇²L(h_L) ḣ_L;
    3. reverse sweep: layer l is recomputed with its graph; with φ = ⟨f_l(h_l, W_l), g_{l+1}⟩,
       the tangent of (g_l, ∇_{W_l}L) is ∇²φ·(ḣ_l, z_l) + J_{(h,W)}ᵀ ġ_{l+1}, one local double
       backward; its W part is (Hz)_{W_l}, reduced at once to zᵀHz.
    draw(i, p) gives the probe z of matrix i (parameter p), drawn again where it is needed.
    `loss_scale` S multiplies the loss before differentiating (so the gradients and Hz are
    S times larger: fp16 keeps them above its underflow) and divides the fp32 sums back.
    """
    from torch.func import functional_call, jvp

    layers = decoder_layers(model)
    per_layer = len(architecture(model).linears)
    names = list(architecture(model).linears)
    keys = [n + ".weight" for n in names]
    weights = [[layer.get_submodule(n).weight for n in names] for layer in layers]

    def probes(l):
        return [draw(l * per_layer + j, p) for j, p in enumerate(weights[l])]

    stream = getattr(model, STREAM_ATTRIBUTE, None)
    h, args, kwargs = _layer_inputs(model, batch)
    inputs, tangents, as_tuple = [], [], []
    t = torch.zeros_like(h)
    with torch.no_grad():  # 1. forward sweep
        for l, layer in enumerate(layers):
            inputs.append(h)
            tangents.append(t)

            def f(x, ws, layer=layer):
                out = functional_call(layer, dict(zip(keys, ws)), (x, *args), kwargs)
                as_tuple[:] = [isinstance(out, (tuple, list))]
                return _hidden(out)

            with visiting(layer, stream):
                h, t = jvp(f, (h, weights[l]), (t.to(h.device), probes(l)))
    # 2. the head
    g, dg = _head(model, batch, h, t, as_tuple[0], loss_scale)
    del h, t
    # 3. reverse sweep
    row = [None] * (len(layers) * per_layer)
    for l in reversed(range(len(layers))):
        x = inputs.pop().detach()
        dx = tangents.pop()
        inner = l > 0  # layer 0's input carries no tangent and needs no gradient
        if inner:
            x.requires_grad_(True)
        ins = ([x] if inner else []) + weights[l]
        with visiting(layers[l], stream):
            y = _hidden(layers[l](x, *args, **kwargs))
            grads = torch.autograd.grad(y, ins, grad_outputs=g.to(y.device), create_graph=True)
            z = probes(l)
            outs = torch.autograd.grad(list(grads) + [y], ins, grad_outputs=(
                [dx] if inner else []) + z + [dg.to(y.device)])
            if inner:
                g, dg = grads[0].detach(), outs[0]
            for j, (zj, hz) in enumerate(zip(z, outs[-per_layer:])):
                row[l * per_layer + j] = (_dot32(zj, hz) / (zj.numel() * loss_scale)).double().cpu()
            del y, grads, outs, z
    return torch.stack(row)


def probe_row_whole_model(model: nn.Module, params: list, batch: torch.Tensor, draw,
                          loss_scale: float = 1.0) -> torch.Tensor:
    """The reference for probe_row (tests and benchmarks/memory.py only): the same samples
    from one double backward through the whole model, whose graph it holds at once."""
    loss = _loss(model, batch)
    if loss_scale != 1.0:
        loss = loss * loss_scale
    grads = torch.autograd.grad(loss, params, create_graph=True)
    probes = [draw(i, p) for i, p in enumerate(params)]
    hz = torch.autograd.grad(grads, params, grad_outputs=probes)
    return torch.stack([(_dot32(z, h) / (z.numel() * loss_scale)).double().cpu()
                        for z, h in zip(probes, hz)])


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


FP16_LOSS_SCALE = 2.0 ** 16  # first try, halved after a non-finite probe (as AMP does)


class _LossScale:
    """The loss scale of `hutchinson`: 1 for bf16/fp32 weights (their exponent range holds the
    small Hessian-vector products), dynamic for fp16 (start FP16_LOSS_SCALE, halve and redo a
    probe whose samples are not finite)."""

    def __init__(self, params, setting):
        fp16 = any(p.dtype == torch.float16 for p in params)
        if setting == "auto":
            setting = FP16_LOSS_SCALE if fp16 else 1.0
        elif setting is None:
            setting = 1.0
        if not (isinstance(setting, (int, float)) and setting > 0):
            raise UserError(f"loss_scale must be 'auto' or a positive number, got {setting!r}")
        self.value, self.dynamic, self.backoffs = float(setting), fp16 and setting != 1.0, 0

    def run(self, fn):
        while True:
            row = fn(self.value)
            if torch.isfinite(row).all() or not self.dynamic or self.value <= 1.0:
                return row
            self.value /= 2
            self.backoffs += 1


def _blocks(min_probes: int, max_probes: int, chunk: int):
    """(start, stop) of the probe blocks after which the stopping rule is checked: the first
    ends at max(min_probes, 2), then every `chunk` probes; the same for any number of processes."""
    start, stop = 0, min(max(min_probes, 2), max_probes)
    while start < max_probes:
        yield start, stop
        start, stop = stop, min(stop + chunk, max_probes)


def hutchinson(model: nn.Module, windows: torch.Tensor, rel_tol: float = 0.2,
               min_probes: int = 8, max_probes: int = 200, distribution: str = "gaussian",
               batch_size: int = 1, seed: int = 0, progress: bool = True,
               keep_samples: bool = False, chunk: int = 8, checkpointing: bool = False,
               loss_scale="auto") -> dict:
    """Hutchinson estimate of every prunable matrix's average Hessian trace, with errors.

    Probe k draws z for matrix i from its own generator seeded by (seed, k, i) (draw_probe)
    and uses calibration batch k mod (number of batches), so the error covers both the
    probes and the data. Under an initialized torch.distributed group (samrepro.commands.distributed,
    torchrun) rank r computes the probes k ≡ r (mod world size) of each block and the
    samples are all-reduced after it: one process and N give the same samples. The stopping
    rule (90% of the matrices within `rel_tol` relative standard error) is checked after
    the first max(min_probes, 2) probes and then after every `chunk`.

    Precision: the Hessian-vector products run in the weights' dtype (bf16 on GPUs that have
    it, see samrepro.machine.plan; with bf16 the attention too, _bf16_math_attention) and
    every zᵀHz is summed in fp32 (samples kept in fp64); fp16 weights get a dynamic loss
    scale (`loss_scale="auto"`), else their products underflow.
    `checkpointing` also recomputes each decoder layer within its own local double backward
    (layer_checkpointing); probe_row already holds one layer's graph at a time, so it saves
    little (kept for the placements that ask for it).
    The model may be spread over several GPUs (plan.placed, accelerate), or its decoder
    layers streamed to one from host RAM (`streaming`): z is drawn on each weight's device
    when it is used.

    Returns {"matrices": {name: {"trace", "stderr"}}, "probes", "rel_stderr_q90", "seconds",
    "distribution", "world_size", "precision"} (and "samples", probes × matrices, with
    keep_samples).
    """
    if distribution not in ("gaussian", "rademacher"):
        raise UserError(f"unknown probe distribution {distribution!r}: gaussian or rademacher")
    if min_probes < 1 or max_probes < 2 or chunk < 1:
        raise UserError(f"need min_probes ≥ 1, max_probes ≥ 2 and chunk ≥ 1, got "
                        f"{min_probes}, {max_probes}, {chunk}")
    rank, world = rank_and_world()
    names = list(prunable_linears(model))
    batches = windows.split(batch_size)
    rows, started = [], time.perf_counter()
    bar = tqdm(total=max_probes, desc="Hutchinson probes", disable=not progress or rank != 0)
    with _OnlyWeightsTrainable(model) as params, layer_checkpointing(model, checkpointing), \
            _bf16_math_attention(params):
        scale = _LossScale(params, loss_scale)
        for start, stop in _blocks(min_probes, max_probes, chunk):
            block = torch.zeros(stop - start, len(names), dtype=torch.float64)
            for k in range(start + rank, stop, world):
                def row(s, k=k):
                    return probe_row(model, params, batches[k % len(batches)],
                                     lambda i, p: draw_probe(seed, k, i, p, distribution), s)

                block[k - start] = scale.run(row)
                bar.update(world)
            if world > 1:
                _all_reduce_sum(block)
            rows.extend(block)
            if len(rows) >= 2:
                reached = relative_error_quantile(torch.stack(rows))
                bar.set_postfix(rel_stderr_q90=f"{reached:.3f}")
                if reached <= rel_tol:
                    break
    bar.close()
    samples = torch.stack(rows)
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in params})
    result = {"matrices": summary(names, samples), "probes": len(rows),
              "rel_stderr_q90": relative_error_quantile(samples) if len(rows) > 1 else None,
              "seconds": time.perf_counter() - started, "distribution": distribution,
              "world_size": world,
              "precision": {"hvp_dtype": ",".join(dtypes), "accumulation": "float32",
                            "loss_scale": scale.value, "loss_scale_backoffs": scale.backoffs}}
    if keep_samples:
        result["samples"] = {name: samples[:, i].tolist() for i, name in enumerate(names)}
    return result


def _all_reduce_sum(block: torch.Tensor) -> None:
    """Sum `block` over the ranks, in place (through the GPU when the backend is NCCL)."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        on_gpu = block.cuda()
        dist.all_reduce(on_gpu)
        block.copy_(on_gpu.cpu())
    else:
        dist.all_reduce(block)


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
def owl_outliers(model: nn.Module, diagonals: dict[str, torch.Tensor],
                 m: float = 5.0) -> dict[str, float]:
    """OWL's outlier counts on the dense model: per matrix, how many weights have
    |W_ij|·‖X_j‖₂ above `m` times the mean of that score over the matrix's decoder layer.
    `diagonals`: diag(2XXᵀ/n) of every prunable matrix's inputs
    (pipeline.layer_hessian_diagonals)."""
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
