"""torchrun entry point: the Hutchinson estimate (docs/method.md §3) split over processes.

    torchrun --nproc-per-node 4 -m samrepro.distributed --model meta-llama/Llama-2-7b-hf \\
        --nsamples 128 --seqlen 2048 --probes 200 --rel-tol 0.1 --gpus-per-process 2

Every process loads the model and puts it on its own group of `--gpus-per-process` GPUs
(one GPU, or the model split over several by whole decoder layers: plan.placed; default:
the GPUs divided evenly over the processes on a node), then runs sensitivity.hutchinson,
which gives probe k to process k mod N and all-reduces the samples: the numbers are those of
one process (each (seed, probe, matrix) draws from its own generator).

The estimate goes into the cache the notebooks and `samrepro prune` / `samrepro sensitivity`
read (experiments.sensitivity_for, keyed by the model, its dtype, the calibration data and
the estimator's settings), so a notebook run afterwards with the same settings reads it
instead of computing it: the way to the mixed rows for a model whose estimate does not fit
the notebook's GPUs (`samrepro plan` says which). `--json FILE` also writes it (rank 0), in
the format of `samrepro sensitivity --json`. The options are those of `samrepro sensitivity`.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist

from .errors import UserError
from .sensitivity import rank_and_world


def build_parser() -> argparse.ArgumentParser:
    from .cli import _common, _estimation

    p = argparse.ArgumentParser(prog="torchrun … -m samrepro.distributed",
                                description=__doc__.splitlines()[0])
    _common(p)
    _estimation(p)
    p.add_argument("--gpus-per-process", type=int, default=None,
                   help="GPUs each process spreads its model over (default: the node's GPUs "
                        "divided by the processes on it)")
    p.add_argument("--checkpointing", action="store_true",
                   help="recompute decoder layers in the backward (saves ~10%% of the memory)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the estimate here")
    return p


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


def main(argv: list[str] | None = None) -> int:
    """Every rank loads the model, estimates its share into the cache; rank 0 prints a
    summary and writes --json."""
    from .cli import _check_common_args, _config, _sensitivity_summary
    from .data import calibration_windows
    from .allocation import traces
    from .estimators import estimator
    from .experiments import load, sensitivity_for
    from .files import write_json
    from .provenance import versions
    from .sensitivity import layer_sensitivity

    args = build_parser().parse_args(argv)
    started_group = False
    try:
        _check_common_args(args)
        config = _config(args, sparsity=0.0)  # every value checked before a process group
        if not estimator(config.estimator).whole_model:
            raise UserError(f"samrepro.distributed spreads the probes of a whole-model estimate "
                            f"(hutchinson) over processes, not {config.estimator}: use "
                            "samrepro sensitivity for that")
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        devices = process_devices(gpus, int(os.environ.get("LOCAL_RANK", 0)),
                                  int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
                                  args.gpus_per_process)
        if gpus:
            torch.cuda.set_device(devices[0])  # NCCL's device for this rank
        if "RANK" in os.environ and not dist.is_initialized():
            dist.init_process_group("nccl" if gpus else "gloo")
            started_group = True
        device = torch.device(devices[0])
        model, tokenizer = load(config, device)
        windows, corpus = calibration_windows(config.calib, tokenizer, config.nsamples,
                                              config.seqlen, config.seed, args.data_dir)
        placement = {"devices": devices, "checkpointing": args.checkpointing}
        rank = rank_and_world()[0]
        estimate = sensitivity_for(config, model, windows, corpus, config.estimator, device,
                                   progress=not args.quiet and rank == 0, placement=placement)
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
