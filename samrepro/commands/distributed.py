"""torchrun entry point: the Hutchinson estimate (docs/method.md §3) split over processes.

    torchrun --nproc-per-node 2 -m samrepro.commands.distributed --model meta-llama/Llama-2-13b-hf

Before loading anything, every process checks the plan (samrepro.machine.plan, as `samrepro plan`
prints it): the GPUs one probe needs (`--gpus-per-process`, default: the plan's), times the
processes on the node, must be at most the node's GPUs, else it stops with a one-line error
naming the --nproc-per-node that fits. Each process then loads the model and puts it on its own
group of GPUs (one GPU, or the model split over several by whole decoder layers:
plan.placed), and runs sensitivity.hutchinson, which gives probe k to process k mod N and
all-reduces the samples: the numbers are those of one process (each (seed, probe, matrix)
draws from its own generator).

The sizes and the estimator's settings (--nsamples, --seqlen, --probes, --rel-tol) default to
those of `--preset` (paper), the notebooks' own, so that the estimate lands in the cache under
the key the notebooks and `samrepro prune` / `samrepro sensitivity` read
(experiments.sensitivity_for: the model, its dtype, the calibration data and the estimator's
settings): a notebook run afterwards with the same settings reads it instead of computing it,
the way to the mixed rows for a model whose estimate does not fit the notebook's GPUs.
`--json FILE` also writes it (rank 0), in the format of `samrepro sensitivity --json`.

One node only: each process's model lives on GPUs of its own node (from LOCAL_RANK and
LOCAL_WORLD_SIZE). torchrun's multi-node launch (--nnodes) would spread the probes over nodes,
but it has not been tested, and the cache the notebooks read is on the node of rank 0.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist

from samrepro.errors import UserError
from samrepro.method.sensitivity import rank_and_world


def build_parser() -> argparse.ArgumentParser:
    from samrepro.commands.cli import _common, _estimation

    p = argparse.ArgumentParser(prog="torchrun … -m samrepro.commands.distributed",
                                description=__doc__.splitlines()[0])
    _common(p)
    _estimation(p)
    p.add_argument("--preset", default="paper",
                   help="take --nsamples, --seqlen, --probes and --rel-tol from this preset when "
                        "not given (default: paper, as the notebooks at the paper's scale)")
    p.add_argument("--gpus-per-process", type=int, default=None,
                   help="GPUs each process spreads its model over (default: as many as the plan "
                        "says one probe needs)")
    p.add_argument("--checkpointing", action="store_true",
                   help="recompute decoder layers in the backward (saves ~10%% of the memory)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the estimate here")
    p.set_defaults(nsamples=None, probes=None, rel_tol=None)  # from the preset
    return p


def preset_defaults(args) -> None:
    """Fill the sizes and settings not given on the command line from `args.preset`."""
    from samrepro.study.presets import preset

    values = preset(args.preset)
    for key in ("nsamples", "seqlen", "probes", "rel_tol"):
        if getattr(args, key) is None:
            setattr(args, key, values[key])


def process_devices(gpus: int, local_rank: int, local_world: int,
                    per_process: int | None = None) -> list[str]:
    """The GPUs of process `local_rank` of `local_world` on a node with `gpus` GPUs."""
    if gpus == 0:
        return ["cpu"]
    per_process = per_process or gpus // local_world
    if per_process < 1 or local_world * per_process > gpus:
        raise UserError(f"{local_world} processes × {per_process or 1} GPUs each need "
                        f"{local_world * max(per_process, 1)} GPUs; this node has {gpus}: lower "
                        "--nproc-per-node or --gpus-per-process")
    first = local_rank * per_process
    return [f"cuda:{first + i}" for i in range(per_process)]


def planned_gpus(model: str, shape, seqlen: int, dtype, gpus: tuple, local_world: int,
                 per_process: int | None = None) -> tuple[int, bool]:
    """(GPUs per process, layer checkpointing) for one Hutchinson probe of `shape` on this
    node's `gpus` (plan.GPU), by the plan's rule (plan.hutchinson_devices); a UserError naming
    the fix when `local_world` processes cannot each have them."""
    from samrepro.machine import plan

    found = plan.hutchinson_devices(shape, seqlen, dtype, plan.Machine(gpus))
    if found is None:
        raise UserError(f"{model}: one Hutchinson probe on 1×{seqlen} tokens does not fit the "
                        f"{len(gpus)} GPUs of this node (`samrepro plan --model {model}` says "
                        "how many it needs): run on a node with more or larger GPUs")
    need, checkpointing, _ = found
    per_process = per_process or need
    if per_process < need:
        raise UserError(f"{model}: one Hutchinson probe needs {need} GPUs of this node's kind "
                        f"(samrepro plan), --gpus-per-process {per_process} gives fewer: use "
                        f"--gpus-per-process {need}")
    if local_world * per_process > len(gpus):
        raise UserError(f"{model}: {local_world} processes × {per_process} GPUs each (one probe "
                        f"needs {need}, samrepro plan) exceed the {len(gpus)} GPUs of this node: "
                        f"use torchrun --nproc-per-node {max(len(gpus) // per_process, 1)}")
    return per_process, checkpointing and per_process == need


def check_plan(args, local_world: int) -> tuple[list, int | None, bool]:
    """Before loading: this node's GPUs, the GPUs per process and whether to checkpoint, by
    the plan; on the CPU, that `local_world` copies of the probe fit the host's RAM."""
    from samrepro.machine import memory, plan
    from samrepro.machine.hardware import DTYPES, resolve_dtype

    gpus = plan.visible_gpus()
    spec = args.model if args.num_layers is None else f"{args.model}@{args.num_layers}"
    try:
        shape = memory.shape_of(plan.model_config(spec))
    except UserError:  # a family the memory model does not know (Baichuan): the user's choice
        return gpus, args.gpus_per_process, args.checkpointing
    dtype = DTYPES[resolve_dtype(args.dtype, "cuda" if gpus else "cpu")]
    if gpus:
        per_process, checkpointing = planned_gpus(args.model, shape, args.seqlen, dtype, gpus,
                                                  local_world, args.gpus_per_process)
        return gpus, per_process, checkpointing or args.checkpointing
    host = plan.host_memory()
    peak = memory.hutchinson_device_peak(shape, args.seqlen, dtype, 1, 1, False, 0)["peak"]
    if host is not None and local_world * peak > host:
        raise UserError(f"{args.model}: {local_world} processes × {peak / memory.GIB:.1f} GiB for "
                        f"a probe exceed this machine's {host / memory.GIB:.0f} GiB of RAM: use "
                        f"torchrun --nproc-per-node {max(int(host // peak), 1)}, or GPUs")
    return gpus, None, args.checkpointing


def main(argv: list[str] | None = None) -> int:
    """Every rank checks the plan, loads the model, estimates its share into the cache; rank 0
    prints a summary and writes --json."""
    from samrepro.commands.cli import _check_common_args, _config, _sensitivity_summary
    from samrepro.method.allocation import traces
    from samrepro.method.estimators import estimator
    from samrepro.study.experiments import estimates_for
    from samrepro.io.files import write_json
    from samrepro.io.provenance import versions
    from samrepro.method.sensitivity import layer_sensitivity

    args = build_parser().parse_args(argv)
    started_group = False
    try:
        preset_defaults(args)
        _check_common_args(args)
        config = _config(args, sparsity=0.0)  # every value checked before a process group
        if not estimator(config.estimator).whole_model:
            raise UserError(f"samrepro.commands.distributed spreads the probes of a whole-model estimate "
                            f"(hutchinson) over processes, not {config.estimator}: use "
                            "samrepro sensitivity for that")
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        gpus, per_process, checkpointing = check_plan(args, local_world)
        devices = process_devices(len(gpus), int(os.environ.get("LOCAL_RANK", 0)), local_world,
                                  per_process)
        if gpus:
            torch.cuda.set_device(devices[0])  # NCCL's device for this rank
        if "RANK" in os.environ and not dist.is_initialized():
            dist.init_process_group("nccl" if gpus else "gloo")
            started_group = True
        device = torch.device(devices[0])
        placement = {"devices": devices, "checkpointing": checkpointing}
        rank = rank_and_world()[0]
        estimates, corpus = estimates_for(config, [config.estimator], args.data_dir, device,
                                          progress=not args.quiet and rank == 0,
                                          placement=placement)
        estimate = estimates[config.estimator]
        if rank == 0:
            result = {"config": config.key(), "calibration_source": corpus.source,
                      "versions": versions(), **estimate,
                      "layers": layer_sensitivity(traces(estimate))}
            if args.json:
                write_json(args.json, result)
            print(_sensitivity_summary(result))
    except UserError as e:
        print(f"samrepro: error: {e}", file=sys.stderr)
        return 2
    finally:
        if started_group and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
