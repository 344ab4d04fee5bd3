"""The sequential layer-by-layer pruning pass (docs/method.md §1), SparseGPT style.

1. Run the calibration windows through the model up to the first decoder layer and keep what
   that layer receives: the hidden states and every keyword argument (attention mask, position
   ids or embeddings, ...) exactly as the installed transformers passes them.
2. For each decoder layer in order: feed it the current inputs with hooks that accumulate the
   Hessian of each prunable linear; prune each linear with the solver; feed the inputs again
   through the pruned layer; its outputs become the next layer's inputs.

Each layer is moved to `device` while it is processed and back afterwards, so a model kept
on the CPU can be pruned on a GPU one layer at a time. The calibration activations stay on
`device` when they fit; with `offload_activations` they are kept on the CPU and moved one
batch at a time (samrepro.machine.memory predicts which placement a model needs). A layer's
Hessians are freed before the next layer starts.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch
from torch import nn
from tqdm.auto import tqdm

from samrepro.errors import UserError, check_sparsity
from samrepro.method.hessian import HessianAccumulator
from samrepro.io.models import architecture, decoder_layers, prunable_linears
from samrepro.method.solver import SALIENCIES, check_args, prune_weights


class _Captured(Exception):
    pass


class _Catcher(nn.Module):
    """Stands in for the first decoder layer and records its call, then stops the forward."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.calls = []
        for attribute in ("attention_type", "layer_idx"):  # some models read these
            if hasattr(layer, attribute):
                setattr(self, attribute, getattr(layer, attribute))

    def forward(self, hidden_states, *args, **kwargs):
        self.calls.append((hidden_states, args, kwargs))
        raise _Captured


def _to(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def capture_layer_inputs(model: nn.Module, windows: torch.Tensor, batch_size: int,
                         device: torch.device) -> list:
    """[(hidden_states, args, kwargs)] for each batch of windows, as the first layer gets them.

    Only the modules outside the decoder layers (embeddings, rotary, ...) go to `device`.
    """
    arch = architecture(model)
    parent_name, attr = arch.layers.rsplit(".", 1)
    parent = model.get_submodule(parent_name)
    layers = getattr(parent, attr)
    catcher = _Catcher(layers[0])
    home = _model_device(model)
    setattr(parent, attr, nn.ModuleList([catcher]))  # detach the layers while moving the rest
    try:
        model.to(device)
        for batch in windows.split(batch_size):
            try:
                model(input_ids=batch.to(device), use_cache=False)
            except _Captured:
                pass
    finally:
        model.to(home)
        setattr(parent, attr, layers)
    return catcher.calls


def _check_sparsities(model: nn.Module, sparsities: dict[str, float]) -> dict[str, nn.Linear]:
    linears = prunable_linears(model)
    missing = [name for name in linears if name not in sparsities]
    unknown = [name for name in sparsities if name not in linears]
    if missing or unknown:
        raise UserError(f"the sparsity dict must name exactly the prunable matrices: "
                        f"missing {missing[:3]}, unknown {unknown[:3]}")
    for name, value in sparsities.items():
        check_sparsity(value, f"sparsity of {name}")
    return linears


def _accumulate_hessians(layer: nn.Module, names, calls, device, seconds) -> dict:
    """Feed every batch through `layer`, accumulating H for each named linear.

    Linears fed the very same tensor (q, k, v; gate, up) share one accumulator: their
    Hessians are equal, so it is computed once.
    """
    accumulators: dict[str, HessianAccumulator] = {}
    this_batch: dict[int, tuple[torch.Tensor, HessianAccumulator]] = {}

    def hook(module, inputs, _output, name):
        t = time.perf_counter()
        x = inputs[0]
        seen = this_batch.get(id(x))
        if seen is not None and seen[0] is x:  # the same tensor reached another linear
            accumulators.setdefault(name, seen[1])
        else:
            if name not in accumulators:
                accumulators[name] = HessianAccumulator(module.in_features, device)
            acc = accumulators[name]
            acc.add(x)
            this_batch[id(x)] = (x, acc)  # the reference keeps id(x) from being reused
        seconds["hessian"] += time.perf_counter() - t

    hooks = [layer.get_submodule(name).register_forward_hook(
        lambda m, i, o, name=name: hook(m, i, o, name)) for name in names]
    t = time.perf_counter()
    try:
        with torch.no_grad():
            for x, args, kwargs in calls:
                this_batch.clear()
                layer(x.to(device), *args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
        this_batch.clear()
    seconds["forward"] += time.perf_counter() - t
    return accumulators


def activations_home(device: torch.device, offload_activations: bool | None, model: nn.Module,
                     windows: torch.Tensor, batch_size: int) -> torch.device:
    """Where the calibration activations live: on `device`, or on the CPU when offloaded.

    None decides by samrepro.machine.memory's estimate against the GPU's free memory (on a CPU
    device there is nothing to offload to).
    """
    if offload_activations is None:
        if device.type != "cuda":
            return device
        from samrepro.machine.memory import choose_placement

        # what PyTorch's allocator caches (the Hutchinson step's graph, say) is free for this
        torch.cuda.empty_cache()
        free, _total = torch.cuda.mem_get_info(device)
        dtype = next(model.parameters()).dtype
        try:
            placement = choose_placement(model.config, *windows.shape, free, dtype, batch_size)
        except UserError:  # a family the estimate does not know: keep them on the device
            placement = "device"
        offload_activations = placement == "offload"
    return torch.device("cpu") if offload_activations else device


def layer_by_layer(model: nn.Module, windows: torch.Tensor, visit, batch_size: int = 8,
                   device=None, seconds=None, progress: bool = True, desc: str = "layers",
                   checkpoint=None, offload_activations: bool | None = None) -> None:
    """The sequential pass: for each decoder layer, accumulate its linears' Hessians on the
    current inputs, call visit(index, layer, {linear name: accumulator}) (which may change
    the layer's weights), then run the inputs through the layer to get the next inputs.

    `checkpoint` (a resume.RunCheckpoint) stores each finished layer and its outputs, and
    lets an interrupted pass continue after the last stored layer.
    `offload_activations`: keep the layer inputs on the CPU and move them to `device` one
    batch at a time (True), keep them on `device` (False), or decide by the memory estimate
    (None; see activations_home)."""
    arch = architecture(model)
    layers = decoder_layers(model)
    device = torch.device(device) if device is not None else _model_device(model)
    seconds = seconds if seconds is not None else defaultdict(float)
    t0 = time.perf_counter()
    home_of_x = activations_home(device, offload_activations, model, windows, batch_size)
    calls = capture_layer_inputs(model, windows, batch_size, device)
    calls = [(x.to(home_of_x), _to(args, device), _to(kwargs, device)) for x, args, kwargs in calls]
    seconds["capture"] += time.perf_counter() - t0
    hessian_before = seconds["hessian"]
    start = 0
    if checkpoint is not None:
        start, calls = checkpoint.restore(layers, calls)
    for i in tqdm(range(start, len(layers)), desc=desc, disable=not progress):
        home = _model_device(layers[i])
        layer = layers[i].to(device)
        accumulators = _accumulate_hessians(layer, arch.linears, calls, device, seconds)
        visit(i, layer, accumulators)
        del accumulators
        t = time.perf_counter()
        with torch.no_grad():
            for k, (x, args, kwargs) in enumerate(calls):
                out = layer(x.to(device), *args, **kwargs)
                out = out[0] if isinstance(out, tuple) else out
                calls[k] = (out.to(home_of_x), args, kwargs)
        seconds["forward"] += time.perf_counter() - t
        layers[i] = layer.to(home)
        if checkpoint is not None:
            checkpoint.save(i, layers[i], calls, last=i == len(layers) - 1)
    seconds["forward"] -= seconds["hessian"] - hessian_before  # hooks ran inside forwards


def layer_hessian_diagonals(model: nn.Module, windows: torch.Tensor, batch_size: int = 8,
                            progress: bool = True) -> dict[str, torch.Tensor]:
    """diag(2XXᵀ/n) of every prunable linear's inputs X, on the dense model (nothing pruned)."""
    arch = architecture(model)
    found = {}

    def record(i, _layer, accumulators):
        for sub, acc in accumulators.items():
            found[f"{arch.layers}.{i}.{sub}"] = acc.H.diagonal().cpu()

    layer_by_layer(model, windows, record, batch_size, progress=progress, desc="input norms")
    return found


def prune_model(model: nn.Module, windows: torch.Tensor, sparsities: dict[str, float],
                saliency: str = "obs", prune_n: int = 0, prune_m: int = 0, wbits: int = 16,
                blocksize: int = 128, percdamp: float = 0.01, batch_size: int = 8,
                device: str | torch.device | None = None, progress: bool = True,
                checkpoint=None, offload_activations: bool | None = None) -> dict:
    """Prune `model` in place, layer by layer; returns a report.

    `windows`: calibration token ids, nsamples × seqlen. `sparsities`: the target sparsity of
    every prunable matrix, keyed by full name (see models.prunable_linears).
    The report holds, per matrix, the target, the zeros counted afterwards, its size and
    mean(diag H) (the free layer-wise sensitivity proxy of docs/method.md §3), and the wall time
    split into capture, layer forwards, Hessian accumulation and solver. With a `checkpoint`
    (resume.RunCheckpoint) an interrupted pass resumes; `resumed_layers` lists the layers
    loaded from it instead of computed.
    `offload_activations`: see layer_by_layer (None: offload only when the estimate says
    the activations do not fit on the GPU).
    """
    check_args(0.0, saliency, prune_n, prune_m, wbits)
    linears = _check_sparsities(model, sparsities)
    arch = architecture(model)
    seconds = defaultdict(float)
    matrices = checkpoint.report if checkpoint is not None else {}

    def prune(named: dict[str, nn.Linear], H):
        """Prune linears that share the Hessian H in one solve (solver.prune_weights)."""
        if not prune_n and wbits == 16 and all(sparsities[name] == 0 for name in named):
            news = [linear.weight.data for linear in named.values()]  # nothing to do
        else:
            t0 = time.perf_counter()
            news = prune_weights([linear.weight.data for linear in named.values()], H,
                                 [sparsities[name] for name in named], saliency, prune_n,
                                 prune_m, wbits, blocksize, percdamp)
            seconds["solver"] += time.perf_counter() - t0
        for (name, linear), new in zip(named.items(), news):
            linear.weight.data.copy_(new)
            matrices[name] = {"target": sparsities[name], "zeros": int((new == 0).sum()),
                              "numel": new.numel(),
                              "xxt": float(H.diagonal().mean()) if H is not None else None}

    if not SALIENCIES[saliency].needs_data:  # magnitude: no forward passes at all
        for name, linear in tqdm(linears.items(), desc=f"pruning ({saliency})", disable=not progress):
            prune({name: linear}, None)
        return {"matrices": matrices, "seconds": dict(seconds), "tokens": 0}

    def prune_layer(i, layer, accumulators):
        groups = {}  # id(accumulator) → (accumulator, the linears that share it)
        for sub in arch.linears:
            acc = accumulators[sub]
            groups.setdefault(id(acc), (acc, {}))[1][f"{arch.layers}.{i}.{sub}"] = \
                layer.get_submodule(sub)
        for acc, named in groups.values():
            prune(named, acc.H)

    layer_by_layer(model, windows, prune_layer, batch_size, device, seconds, progress,
                   desc="pruning layers", checkpoint=checkpoint,
                   offload_activations=offload_activations)
    return {"matrices": matrices, "seconds": dict(seconds), "tokens": int(windows.numel()),
            "resumed_layers": checkpoint.resumed_layers if checkpoint is not None else []}
