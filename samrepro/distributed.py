"""The Hutchinson sensitivity estimate (docs/method.md §3) split over processes, for big models.

    torchrun --nproc-per-node 8 -m samrepro.distributed --model meta-llama/Llama-2-13b-hf \\
        --nsamples 128 --seqlen 2048 --probes 64 --json sens-13b.json

Each process (rank) holds the model (on its own GPU, `cuda:LOCAL_RANK`) and computes the
probes k ≡ rank (mod world size) of every chunk of `chunk` probes; probe k uses calibration
batch k mod (number of batches), so the ranks also split the data. After each chunk the
per-probe samples are all-reduced (each row is filled by exactly one rank, the others add
zeros), every rank sees the same samples, and all stop together on the same rule as
sensitivity.hutchinson (relative standard error of 90% of the matrices within `rel_tol`).

Numerics do not depend on the number of processes: probe z of matrix i at probe k is drawn
from its own generator seeded by (seed, k, i) on the parameter's device, so any rank count
(or one process) draws the same z and uses the same batch for the same k, and the result
is the same to float tolerance. (The stream differs from sensitivity.hutchinson's single
sequential generator, whose probe k depends on all probes before it; both are unbiased.)

A model larger than one GPU: `--device-map auto` places it over the GPUs the process sees
with accelerate (dispatch_model / infer_auto_device_map, whole decoder layers per device);
run one process per group of GPUs (CUDA_VISIBLE_DEVICES). `--checkpointing` recomputes each
decoder layer in the backward (torch.utils.checkpoint, non-reentrant, which supports the
double backward); docs/install.md says what it saves.
"""

from __future__ import annotations

import contextlib
import os
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.checkpoint import checkpoint

from .errors import UserError
from .models import decoder_layers, prunable_linears
from .sensitivity import _OnlyWeightsTrainable, probe_row, relative_error_quantile, summary


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def probe_seed(seed: int, probe: int, matrix: int) -> int:
    """The generator seed of matrix `matrix`'s probe at probe index `probe` (any rank)."""
    return (seed * 1_000_003 + probe) * 65_537 + matrix


@contextlib.contextmanager
def layer_checkpointing(model: nn.Module, enabled: bool = True):
    """Within the block, every decoder layer is recomputed in the backward instead of keeping
    its activations (torch.utils.checkpoint, non-reentrant: double backward works)."""
    if not enabled:
        yield
        return
    layers = list(decoder_layers(model))
    originals = [layer.forward for layer in layers]
    for layer, forward in zip(layers, originals):
        layer.forward = (lambda *a, _f=forward, **kw:
                         checkpoint(_f, *a, use_reentrant=False, **kw))
    try:
        yield
    finally:
        for layer in layers:
            del layer.forward  # back to the class's forward


def hutchinson_distributed(model: nn.Module, windows: torch.Tensor, rel_tol: float = 0.2,
                           min_probes: int = 8, max_probes: int = 200,
                           distribution: str = "gaussian", batch_size: int = 1, seed: int = 0,
                           chunk: int = 8, checkpointing: bool = False,
                           keep_samples: bool = False) -> dict:
    """Hutchinson estimate of every prunable matrix's average Hessian trace, over the ranks of
    the initialized process group (or alone). Same result dict as sensitivity.hutchinson.

    The stopping rule is checked after every `chunk` probes (a fixed number, not tied to
    the world size, so that the probes used are the same for any number of processes).
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
    with _OnlyWeightsTrainable(model) as params, layer_checkpointing(model, checkpointing):
        for c0 in range(0, max_probes, chunk):
            block = torch.zeros(min(chunk, max_probes - c0), len(names), dtype=torch.float64)
            for k in range(c0 + rank, c0 + block.shape[0], world):
                def draw(i, p, k=k):
                    g = torch.Generator(device=p.device).manual_seed(probe_seed(seed, k, i))
                    z = torch.randn(p.shape, generator=g, device=p.device, dtype=torch.float32)
                    return (z.sign() if distribution == "rademacher" else z).to(p.dtype)

                block[k - c0] = probe_row(model, params, batches[k % len(batches)], draw)
            if world > 1:
                _all_reduce_sum(block)
            rows.extend(block)
            if len(rows) >= max(min_probes, 2) and relative_error_quantile(
                    torch.stack(rows)) <= rel_tol:
                break
    samples = torch.stack(rows)
    result = {"matrices": summary(names, samples), "probes": len(rows),
              "rel_stderr_q90": relative_error_quantile(samples) if len(rows) > 1 else None,
              "seconds": time.perf_counter() - started, "distribution": distribution,
              "world_size": world}
    if keep_samples:
        result["samples"] = {name: samples[:, i].tolist() for i, name in enumerate(names)}
    return result


def _all_reduce_sum(block: torch.Tensor) -> None:
    """Sum `block` over the ranks, in place (through the GPU when the backend is NCCL)."""
    if dist.get_backend() == "nccl":
        on_gpu = block.cuda()
        dist.all_reduce(on_gpu)
        block.copy_(on_gpu.cpu())
    else:
        dist.all_reduce(block)


def dispatch_over_gpus(model: nn.Module, max_memory: dict | None = None) -> nn.Module:
    """Spread `model` over the visible GPUs with accelerate (whole decoder layers per GPU)."""
    from accelerate import dispatch_model, infer_auto_device_map

    layer_class = type(decoder_layers(model)[0]).__name__
    device_map = infer_auto_device_map(model, max_memory=max_memory,
                                       no_split_module_classes=[layer_class])
    return dispatch_model(model, device_map=device_map)


def main(argv: list[str] | None = None) -> int:
    """Entry point for torchrun: every rank loads the model, estimates its share, rank 0
    writes the JSON (atomically) and prints a summary."""
    import argparse
    import sys

    from .data import calibration_windows
    from .hardware import DTYPES
    from .files import write_json
    from .models import load_model

    p = argparse.ArgumentParser(prog="python -m samrepro.distributed",
                                description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--num-layers", type=int, default=None)
    p.add_argument("--calib", default="c4")
    p.add_argument("--nsamples", type=int, default=128)
    p.add_argument("--seqlen", type=int, default=2048)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--dtype", choices=DTYPES, default=None,
                   help="weights dtype (default float16 on GPU, float32 on CPU)")
    p.add_argument("--probes", type=int, default=100)
    p.add_argument("--rel-tol", type=float, default=0.2)
    p.add_argument("--distribution", choices=("gaussian", "rademacher"), default="gaussian")
    p.add_argument("--chunk", type=int, default=8, help="probes between stopping checks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device-map", choices=("none", "auto"), default="none",
                   help="auto: spread the model over this process's GPUs with accelerate")
    p.add_argument("--checkpointing", action="store_true",
                   help="recompute decoder layers in the backward (less activation memory)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    gpu = torch.cuda.is_available()
    if gpu and args.device_map == "none":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))  # NCCL uses this GPU
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if gpu else "gloo")
    try:
        local = int(os.environ.get("LOCAL_RANK", 0))
        dtype = DTYPES[args.dtype] if args.dtype else (torch.float16 if gpu else torch.float32)
        model, tokenizer = load_model(args.model, dtype, num_layers=args.num_layers)
        if gpu and args.device_map == "auto":
            model = dispatch_over_gpus(model)
        elif gpu:
            model.to(f"cuda:{local}")
        windows, corpus = calibration_windows(args.calib, tokenizer, args.nsamples, args.seqlen,
                                              args.seed, args.data_dir)
        result = hutchinson_distributed(model, windows, args.rel_tol, max_probes=args.probes,
                                        distribution=args.distribution, seed=args.seed,
                                        chunk=args.chunk, checkpointing=args.checkpointing)
        if rank_and_world()[0] == 0:
            result.update(config=vars(args), calibration_source=corpus.source)
            if args.json:
                write_json(args.json, result)
            print(f"{result['probes']} probes over {result['world_size']} process(es), "
                  f"rel. stderr q90 {result['rel_stderr_q90']:.3f}, {result['seconds']:.0f} s")
    except UserError as e:
        print(f"samrepro: error: {e}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
