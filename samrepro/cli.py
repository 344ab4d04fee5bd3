"""The `samrepro` command line: `samrepro prune …` (see README and DESIGN.md's contract).

User mistakes end in a one-line `samrepro: error: …` on stderr and exit status 2, with
nothing written; results are written atomically.
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import time
from importlib import metadata
from pathlib import Path

import torch

from . import __version__
from .allocation import ALLOCATIONS, allocate, overall_sparsity
from .data import DATASETS, calibration_windows, eval_stream
from .errors import UserError, check_sparsity
from .evaluate import perplexity
from .experiments import estimate_sensitivity, traces
from .files import save_model, write_json
from .models import count_zeros, load_model, prunable_linears
from .pipeline import prune_model
from .sensitivity import ESTIMATORS, layer_sensitivity
from .solver import SALIENCIES, check_args
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _nm(text: str) -> tuple[int, int]:
    try:
        n, m = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N:M such as 2:4, got {text!r}") from None
    return n, m


def _datasets(text: str) -> list[str]:
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in DATASETS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown dataset {unknown[0]!r}; choose from {','.join(DATASETS)}")
    return names


def _common(p: argparse.ArgumentParser) -> None:
    """Options shared by every command: the model, the calibration data, the machine."""
    p.add_argument("--model", required=True,
                   help="hub id, local folder, 'embedded' (SmolLM2-135M), tiny-llama or tiny-opt")
    p.add_argument("--calib", choices=DATASETS, default="c4")
    p.add_argument("--nsamples", type=int, default=128, help="calibration windows")
    p.add_argument("--seqlen", type=int, default=2048, help="tokens per window")
    p.add_argument("--data-dir", default=None, help="local data folder (else SAMREPRO_DATA_DIR, else the hub)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, … (default: cuda if present)")
    p.add_argument("--dtype", choices=DTYPES, default=None,
                   help="model weights dtype (default: float32 on CPU, float16 on GPU)")
    p.add_argument("--num-layers", type=int, default=None,
                   help="keep only the first N decoder layers (smoke tests)")
    p.add_argument("--batch-size", type=int, default=8, help="calibration windows per forward")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the checkpoint's own code (Baichuan needs it); only for code you trust")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _estimation(p: argparse.ArgumentParser) -> None:
    p.add_argument("--estimator", choices=ESTIMATORS, default="hutchinson",
                   help="sensitivity estimator (METHOD.md §3)")
    p.add_argument("--probes", type=int, default=100, help="Hutchinson: at most this many probes")
    p.add_argument("--rel-tol", type=float, default=0.2,
                   help="Hutchinson: stop when 90%% of matrices reach this relative standard error")
    p.add_argument("--distribution", choices=("gaussian", "rademacher"), default="gaussian",
                   help="Hutchinson probe distribution (paper: gaussian; authors' code: rademacher)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samrepro", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"samrepro {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prune", help="prune a model in one shot and evaluate its perplexity")
    _common(p)
    p.add_argument("--sparsity", type=float, default=None,
                   help="overall target sparsity in [0, 1); 0 evaluates the dense model")
    p.add_argument("--saliency", choices=SALIENCIES, default="obs")
    p.add_argument("--allocation", choices=ALLOCATIONS, default="uniform",
                   help="per-matrix sparsities (METHOD.md §4)")
    p.add_argument("--alpha", type=float, default=None,
                   help="half-width of the sparsity range (default 0.1; OWL's lambda 0.08 for owl)")
    _estimation(p)
    p.add_argument("--sensitivity", default=None, metavar="FILE",
                   help="use the sensitivities in this JSON (from `samrepro sensitivity`)")
    p.add_argument("--nm", type=_nm, default=None, metavar="N:M",
                   help="semi-structured N:M sparsity, e.g. 2:4 (implies sparsity N/M)")
    p.add_argument("--wbits", type=int, default=16, help="quantize kept weights to 3 or 4 bits")
    p.add_argument("--eval", type=_datasets, default=list(DATASETS), metavar="D1,D2",
                   help="datasets to evaluate, comma-separated (empty string: none)")
    p.add_argument("--eval-windows", type=int, default=None, metavar="K",
                   help="evaluate only the first K windows of each stream (CPU presets)")
    p.add_argument("--save", default=None, metavar="DIR", help="write the pruned checkpoint here")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results here")

    s = sub.add_parser("sensitivity", help="estimate every prunable matrix's sensitivity")
    _common(s)
    _estimation(s)
    s.add_argument("--json", default=None, metavar="FILE", help="write the estimates here")
    return parser


def _versions() -> dict:
    found = {"python": platform.python_version()}
    for package in ("samrepro", "torch", "transformers", "datasets"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def _check_common_args(args) -> None:
    for flag, value in (("--nsamples", args.nsamples), ("--seqlen", args.seqlen),
                        ("--batch-size", args.batch_size)):
        if value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}")
    if getattr(args, "estimator", None) == "hutchinson" and args.probes < 2:
        raise UserError(f"--probes must be at least 2 (for a standard error), got {args.probes}")


def _setup(args):
    """Device, dtype, model and tokenizer, and the calibration windows, for any command."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = DTYPES[args.dtype] if args.dtype else (
        torch.float32 if device.type == "cpu" else torch.float16)
    model, tokenizer = load_model(args.model, dtype, args.trust_remote_code, args.num_layers,
                                  seed=args.seed)
    context = getattr(model.config, "max_position_embeddings", None)
    if context and args.seqlen > context:
        raise UserError(f"--seqlen {args.seqlen} exceeds the model's context of {context} tokens")
    return device, model, tokenizer


def _sensitivity(args, model, windows, corpus, estimator: str, device) -> dict:
    key = {"model": args.model, "num_layers": args.num_layers, "dtype": str(model.dtype),
           "calibration": corpus.source, "nsamples": args.nsamples, "seqlen": args.seqlen,
           "seed": args.seed}
    model.to(device)
    try:
        return estimate_sensitivity(model, windows, estimator, key, rel_tol=args.rel_tol,
                                    max_probes=args.probes, distribution=args.distribution,
                                    seed=args.seed, progress=not args.quiet)
    finally:
        if device.type != "cpu":
            model.to("cpu")  # the pruning pass moves one layer at a time


def _read_sensitivity(path: str) -> dict[str, float]:
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return traces(data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"--sensitivity {path}: not a readable `samrepro sensitivity` JSON "
                        f"({type(e).__name__}); write one with samrepro sensitivity --json") from None


def _check_prune_args(args) -> tuple[float, int, int]:
    prune_n, prune_m = args.nm or (0, 0)
    check_args(0.0, args.saliency, prune_n, prune_m, args.wbits)
    if args.sparsity is None:
        if not args.nm:
            raise UserError("give --sparsity P (e.g. 0.5), or --nm N:M (e.g. 2:4)")
        args.sparsity = prune_n / prune_m if prune_m else 0.0
    sparsity = check_sparsity(args.sparsity)
    check_args(sparsity, args.saliency, prune_n, prune_m, args.wbits)
    if args.nm and abs(sparsity - prune_n / prune_m) > 1e-9:
        raise UserError(f"--nm {prune_n}:{prune_m} means sparsity {prune_n / prune_m}, "
                        f"but --sparsity is {sparsity}: drop --sparsity or make them agree")
    if args.alpha is None:
        args.alpha = 0.08 if args.allocation == "owl" else 0.1
    if not 0 <= args.alpha < 1:
        raise UserError(f"--alpha must be in [0, 1) (the paper uses 0.1), got {args.alpha}")
    if args.allocation != "uniform" and args.nm:
        raise UserError("--nm fixes N of every M weights: it cannot be combined with a mixed "
                        "--allocation; use --allocation uniform")
    _check_common_args(args)
    if args.eval_windows is not None and args.eval_windows < 1:
        raise UserError(f"--eval-windows must be at least 1, got {args.eval_windows}")
    if args.save:
        if Path(args.save).exists() and any(Path(args.save).iterdir()):
            raise UserError(f"--save {args.save} exists and is not empty: choose a new folder")
    return sparsity, prune_n, prune_m


def run_prune(args) -> dict:
    sparsity, prune_n, prune_m = _check_prune_args(args)
    started = time.perf_counter()
    device, model, tokenizer = _setup(args)
    dense_zeros, total = count_zeros(model)
    sizes = {name: linear.weight.numel() for name, linear in prunable_linears(model).items()}
    result = {
        "config": {k: v for k, v in vars(args).items() if k not in ("command", "quiet")},
        "dense_zeros": dense_zeros,
        "prunable_parameters": total,
        "device": str(device),
        "versions": _versions(),
    }
    result["config"]["nm"] = f"{prune_n}:{prune_m}" if prune_n else None
    result["config"]["sparsity"] = sparsity
    needs_data = sparsity > 0 or args.wbits < 16
    if needs_data:
        windows, corpus = calibration_windows(args.calib, tokenizer, args.nsamples, args.seqlen,
                                              args.seed, args.data_dir)
        result["calibration_source"] = corpus.source
    if args.allocation == "uniform" or not needs_data:
        sensitivity = {}
    elif args.sensitivity:
        sensitivity = _read_sensitivity(args.sensitivity)
    else:
        estimator = "owl" if args.allocation == "owl" else args.estimator
        sensitivity = traces(_sensitivity(args, model, windows, corpus, estimator, device))
    sparsities = allocate(sensitivity, sizes, sparsity, args.alpha, args.allocation)
    result["sparsities"] = sparsities
    result["planned_sparsity"] = overall_sparsity(sparsities, sizes)

    if needs_data:
        report = prune_model(model, windows, sparsities, args.saliency, prune_n, prune_m,
                             args.wbits, device=device, batch_size=args.batch_size,
                             progress=not args.quiet)
        result["pruning_seconds"] = report["seconds"]
        result["matrices"] = report["matrices"]
    zeros, _ = count_zeros(model)
    result["achieved_sparsity"] = zeros / total
    if args.save:  # before the evaluation: the pruned model is kept even if that fails
        save_model(model, tokenizer, args.save)
        result["saved_to"] = args.save

    model.to(device)
    result["perplexity"] = {}
    for name in args.eval:
        ids, corpus = eval_stream(name, tokenizer, args.seqlen, args.data_dir)
        ppl = perplexity(model, ids, args.seqlen, args.eval_windows, progress=not args.quiet,
                         desc=f"perplexity {name}")
        result["perplexity"][name] = {**ppl, "source": corpus.source}
    result["wall_seconds"] = time.perf_counter() - started
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if args.json:
        write_json(args.json, result)
    return result


def run_sensitivity(args) -> dict:
    _check_common_args(args)
    device, model, tokenizer = _setup(args)
    windows, corpus = calibration_windows(args.calib, tokenizer, args.nsamples, args.seqlen,
                                          args.seed, args.data_dir)
    estimate = _sensitivity(args, model, windows, corpus, args.estimator, device)
    result = {"config": {k: v for k, v in vars(args).items() if k not in ("command", "quiet")},
              "calibration_source": corpus.source, "versions": _versions(), **estimate,
              "layers": layer_sensitivity(traces(estimate))}
    if args.json:
        write_json(args.json, result)
    return result


def _sensitivity_summary(result: dict) -> str:
    per_matrix = traces(result)
    order = sorted(per_matrix, key=per_matrix.get)
    errors = result["matrices"]
    lines = [f"{result['config']['estimator']}: {len(per_matrix)} matrices"
             + (f", {result['probes']} probes" if "probes" in result else "")]
    lines.append("per layer (sum over its matrices):")
    lines += [f"  {layer:28s} {value: .4e}" for layer, value in result["layers"].items()]
    for title, names in (("most sensitive", order[::-1][:5]), ("least sensitive", order[:5])):
        lines.append(f"{title}:")
        lines += [f"  {n:40s} {per_matrix[n]: .4e}"
                  + (f" ± {errors[n]['stderr']:.1e}" if "stderr" in errors[n] else "")
                  for n in names]
    return "\n".join(lines)


def _summary(result: dict) -> str:
    lines = [f"achieved sparsity {result['achieved_sparsity']:.4f} (planned "
             f"{result['planned_sparsity']:.4f} by the {result['config']['allocation']} "
             f"allocation; the dense model has "
             f"{result['dense_zeros'] / result['prunable_parameters']:.4f})"]
    for name, ppl in result["perplexity"].items():
        lines.append(f"{name:10s} ppl {ppl['ppl']:.3f}  ({ppl['windows']} windows, {ppl['source']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "prune":
            print(_summary(run_prune(args)))
        elif args.command == "sensitivity":
            print(_sensitivity_summary(run_sensitivity(args)))
    except UserError as e:
        print(f"samrepro: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("samrepro: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
