"""The `samrepro` command line: `samrepro prune …`, `samrepro eval …`, `samrepro sensitivity …`,
`samrepro plan …`, `samrepro verify …` (options and outputs: docs/usage.md).

User mistakes end in a one-line `samrepro: error: …` on stderr and exit status 2, with
nothing written; results are written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from samrepro import __version__, checks
from samrepro.method.allocation import ALLOCATIONS, ALPHA, OWL_LAMBDA, traces
from samrepro.config import DISTRIBUTIONS
from samrepro.io.data import DATASETS
from samrepro.io.evaluate import SETTINGS, TASK_SOURCES, TASKS, check_tasks
from samrepro.errors import UserError, check_sparsity
from samrepro.method.estimators import estimator, sensitivity_estimators
from samrepro.machine.hardware import DTYPES
from samrepro.study.experiments import SAVE_MARK, RunConfig, estimates_for, prune_and_evaluate
from samrepro.io.files import write_json
from samrepro.io.models import default_calibration, default_evaluation, default_seqlen
from samrepro.io.provenance import versions
from samrepro.method.sensitivity import layer_sensitivity
from samrepro.method.solver import SALIENCIES


def _nm(text: str) -> tuple[int, int]:
    try:
        n, m = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N:M such as 2:4, got {text!r}") from None
    return n, m


def _tasks(text: str) -> list[str]:
    try:
        return list(check_tasks([name for name in text.split(",") if name], "zero-shot")[0])
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


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
                   help="hub id, local folder, 'embedded' (SmolLM2-135M), 'opt-ptb-standin' "
                        "(a small OPT trained on PTB: a stand-in for OPT), smoke-opt / smoke-llama "
                        "(tiny models trained on PTB, for tests), tiny-llama or tiny-opt")
    p.add_argument("--calib", choices=DATASETS, default=None,
                   help="calibration corpus (default: c4; ptb for the models trained on PTB)")
    p.add_argument("--nsamples", type=int, default=None, help=f"calibration windows (default {RunConfig.nsamples})")
    p.add_argument("--seqlen", type=int, default=None,
                   help="tokens per window (default: 2048, or the model's context if shorter)")
    p.add_argument("--data-dir", default=None, help="local data folder (else SAMREPRO_DATA_DIR, else the hub)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, … (default: cuda if present)")
    p.add_argument("--dtype", choices=("auto", *DTYPES), default="auto",
                   help="dtype of the model's weights and forwards; Hessians and the solver "
                        "stay fp32 (default auto: bfloat16 on a CPU with a bf16 unit or a GPU "
                        "of compute capability ≥ 8, float16 on older GPUs, else float32)")
    p.add_argument("--num-layers", type=int, default=None,
                   help="keep only the first N decoder layers (smoke tests)")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"calibration windows per forward (default {RunConfig.batch_size})")
    p.add_argument("--seed", type=int, default=None, help=f"calibration seed (default {RunConfig.seed})")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the checkpoint's own code (Baichuan needs it); only for code you trust")
    p.add_argument("--allow-bin-weights", action="store_true",
                   help="also read PyTorch .bin (pickle) weights; default: safetensors only")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _estimation(p: argparse.ArgumentParser) -> None:
    p.add_argument("--estimator", choices=sensitivity_estimators(), default=None,
                   help=f"sensitivity estimator (docs/method.md §3; default {RunConfig.estimator})")
    p.add_argument("--probes", type=int, default=None,
                   help=f"Hutchinson: at most this many probes (default {RunConfig.probes})")
    p.add_argument("--rel-tol", type=float, default=None,
                   help="Hutchinson: stop when 90%% of matrices reach this relative standard error")
    p.add_argument("--distribution", choices=DISTRIBUTIONS, default=None,
                   help="Hutchinson probe distribution (paper: gaussian; authors' code: rademacher)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samrepro", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"samrepro {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prune", help="prune a model in one shot and evaluate its perplexity")
    _pruning(p)
    p.add_argument("--eval", type=_datasets, default=None, metavar="D1,D2",
                   help="datasets to evaluate, comma-separated (empty string: none; default: "
                        "all three, for the OPT stand-in ptb)")
    _outputs(p)

    e = sub.add_parser("eval", help="accuracy through lm-evaluation-harness (Table 3) of a "
                                    "saved model, or of one pruned here first")
    _pruning(e)
    e.add_argument("--tasks", type=_tasks, default=list(TASKS), metavar="T1,T2",
                   help=f"comma-separated, of {','.join(TASKS)}")
    e.add_argument("--settings", nargs="+", choices=SETTINGS, default=["zero-shot"],
                   help="zero-shot: all 0-shot; leaderboard: ARC-c 25, HellaSwag 10 shots "
                        "(the Open LLM Leaderboard's, which the paper's dense rows equal)")
    e.add_argument("--limit", type=int, default=None, metavar="N",
                   help="score only the first N documents of each task (CPU)")
    e.add_argument("--task-source", choices=TASK_SOURCES, default=None,
                   help="local: the package's tasks over the data folder; hub: the harness's "
                        "(default: local when a data folder is in force)")
    e.add_argument("--eval", type=_datasets, default=[], metavar="D1,D2",
                   help="also evaluate perplexity on these datasets (default: none)")
    _outputs(e)
    e.set_defaults(sparsity=0.0)  # as loaded: a saved pruned model, or the dense one

    s = sub.add_parser("sensitivity", help="estimate every prunable matrix's sensitivity")
    _common(s)
    _estimation(s)
    s.add_argument("--json", default=None, metavar="FILE", help="write the estimates here")

    v = sub.add_parser("verify", help="re-run a committed result from a scratch cache and "
                                      "check each value against its committed interval")
    v.add_argument("results", help="a results JSON, e.g. results/embedded/table1.json")
    v.add_argument("--scratch", default=None, help="folder for the re-run (default: a new "
                                                   "temporary folder)")
    v.add_argument("--seeds", type=int, default=None, help="calibration seeds for the re-run "
                   "(default: as many as were committed; fewer is quicker and less decisive)")

    x = sub.add_parser("export", help="prune, then write a Hugging Face checkpoint that plain "
                                      "transformers loads, with its sparsity map")
    _pruning(x)
    x.add_argument("--eval", type=_datasets, default=None, metavar="D1,D2",
                   help="datasets whose perplexity the map records (default: as prune)")
    x.add_argument("--eval-windows", type=int, default=None, metavar="K",
                   help="evaluate only the first K windows of each stream (CPU presets)")
    x.add_argument("--out", required=True, metavar="DIR", help="a new folder for the checkpoint "
                   "and sparsity_map.json")
    x.set_defaults(save=None)

    pl = sub.add_parser("plan", help="where each step of a run goes, its peak memory and time, "
                                     "and whether it fits: from config.json alone, no weights")
    _planning(pl)
    return parser


def _planning(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", default=None, metavar="M",
                   help="a folder holding config.json, a hub id, or a name of samrepro.machine.memory's "
                        "PAPER_MODELS (repeat or comma-separate; default: the preset's models)")
    p.add_argument("--preset", default=None, help="take the sizes (and models) from this preset")
    p.add_argument("--gpus", default=None, metavar="NxKIND",
                   help="plan for these GPUs, e.g. 1xA100-80GB, 8xH100-80GB, 2x80GB, or cpu "
                        "(default: the GPUs this machine has)")
    p.add_argument("--host-ram", type=float, default=None, metavar="GB",
                   help="the host's RAM in GiB (default: this machine's; not checked with --gpus)")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"),
                   help="weights dtype (auto: bf16 on GPUs that have it, fp16 on older ones)")
    for flag, kind, help_ in (("--nsamples", int, "calibration windows (paper 128)"),
                              ("--seqlen", int, "tokens per window (paper 2048)"),
                              ("--probes", int, "Hutchinson probes at most"),
                              ("--eval-windows", int, "evaluate K windows spread evenly over a stream"),
                              ("--batch-size", int, "calibration windows per forward")):
        p.add_argument(flag, type=kind, default=None, help=help_)
    p.add_argument("--estimator", choices=sensitivity_estimators(), default=None)
    p.add_argument("--lm-eval", nargs="*", choices=SETTINGS, default=None, metavar="SETTING",
                   help="lm-eval settings to plan (zero-shot, leaderboard; none: no lm-eval)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the plans here")


def _pruning(p: argparse.ArgumentParser) -> None:
    """What `prune` and `eval` share: the model, calibration and the pruning method."""
    _common(p)
    p.add_argument("--sparsity", type=float, default=None,
                   help="overall target sparsity in [0, 1); 0 evaluates the dense model")
    p.add_argument("--saliency", choices=SALIENCIES, default=None,
                   help=f"which weights to drop (docs/method.md §2; default {RunConfig.saliency})")
    p.add_argument("--allocation", choices=ALLOCATIONS, default=None,
                   help=f"per-matrix sparsities (docs/method.md §4; default {RunConfig.allocation})")
    p.add_argument("--alpha", type=float, default=None,
                   help=f"half-width of the sparsity range (default {ALPHA}; OWL's lambda {OWL_LAMBDA} "
                        "for owl)")
    _estimation(p)
    p.add_argument("--sensitivity", default=None, metavar="FILE",
                   help="use the sensitivities in this JSON (from `samrepro sensitivity`)")
    p.add_argument("--nm", type=_nm, default=None, metavar="N:M",
                   help="semi-structured N:M sparsity, e.g. 2:4 (implies sparsity N/M)")
    p.add_argument("--wbits", type=int, default=None,
                   help=f"quantize kept weights to 3 or 4 bits (default {RunConfig.wbits}: no quantization)")


def _outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eval-windows", type=int, default=None, metavar="K",
                   help="evaluate K windows spread evenly over each stream (CPU presets)")
    p.add_argument("--save", default=None, metavar="DIR", help="write the pruned checkpoint here")
    p.add_argument("--json", default=None, metavar="FILE", help="write the results here")


def _check_common_args(args) -> None:
    if args.seqlen is None:  # not given: follows the model (2048, or its shorter context)
        args.seqlen = default_seqlen(args.model, args.trust_remote_code)
    for flag, value in (("--nsamples", args.nsamples), ("--seqlen", args.seqlen),
                        ("--batch-size", args.batch_size)):
        checks.at_least(value, 1, flag)
    if "probes" in estimator(getattr(args, "estimator", None) or RunConfig.estimator).settings:
        checks.at_least(args.probes, 2, "--probes")  # 2: for a standard error
        if args.rel_tol is not None:
            checks.non_negative(args.rel_tol, "--rel-tol")
    if args.device is not None:
        checks.device(args.device)
    checks.folder(args.data_dir, "--data-dir")


def _config(args, **overrides) -> RunConfig:
    """The RunConfig that the command line describes (it checks every value; an option not
    given takes RunConfig's default)."""
    fields = set(RunConfig.__dataclass_fields__) - {"extra"}
    values = {k: v for k, v in vars(args).items() if k in fields and v is not None}
    values.update(overrides)
    if values.get("calib") is None:
        values["calib"] = default_calibration(args.model)
    if values.get("eval") is None:
        values["eval"] = default_evaluation(args.model)
    for name in ("eval", "tasks", "settings"):
        if name in values:
            values[name] = tuple(values[name])
    return RunConfig(**values)


def _read_sensitivity(path: str) -> dict[str, float]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return traces(data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"--sensitivity {path}: not a readable `samrepro sensitivity` JSON "
                        f"({type(e).__name__}); write one with samrepro sensitivity --json") from None


def _check_prune_args(args) -> tuple[float, int, int]:
    prune_n, prune_m = args.nm or (0, 0)
    if args.sparsity is None and not args.nm:
        raise UserError("give --sparsity P (e.g. 0.5), or --nm N:M (e.g. 2:4)")
    # N:M is checked before N/M is used as the sparsity (4:4 must read as a bad N:M)
    if args.nm and not 0 < prune_n < prune_m:
        raise UserError(f"N:M sparsity needs 0 < N < M (e.g. 2:4), got {prune_n}:{prune_m}")
    sparsity = check_sparsity(args.sparsity) if args.sparsity is not None else prune_n / prune_m
    if args.nm and abs(sparsity - prune_n / prune_m) > 1e-9:
        raise UserError(f"--nm {prune_n}:{prune_m} means sparsity {prune_n / prune_m}, "
                        f"but --sparsity is {sparsity}: drop --sparsity or make them agree")
    _check_common_args(args)
    if args.save:
        save = Path(args.save)  # a folder this same run wrote before it was interrupted is fine
        if save.exists() and any(save.iterdir()) and not (save / SAVE_MARK).exists():
            raise UserError(f"--save {args.save} exists and is not empty: choose a new folder")
    return sparsity, prune_n, prune_m


def _checked_config(args) -> RunConfig:
    """prune's and eval's RunConfig: the command line's own rules, then RunConfig's checks."""
    sparsity, prune_n, prune_m = _check_prune_args(args)
    return _config(args, sparsity=sparsity, nm=(prune_n, prune_m) if prune_n else None)


def run_prune(args) -> dict:
    config = _checked_config(args)
    sensitivity = _read_sensitivity(args.sensitivity) if args.sensitivity else None
    result = prune_and_evaluate(config, args.data_dir, args.device, not args.quiet,
                                sensitivity=sensitivity, save=args.save)
    if args.sensitivity:
        result["sensitivity_file"] = args.sensitivity
    if args.json:
        write_json(args.json, result)
    return result


def run_export(args) -> str:
    """`samrepro export`: the checkpoint and its sparsity map (samrepro.study.export); a summary."""
    from samrepro.study.export import MAP_FILE, export

    config = _checked_config(args)
    sensitivity = _read_sensitivity(args.sensitivity) if args.sensitivity else None
    found = export(config, args.out, args.data_dir, args.device, not args.quiet, sensitivity)
    ppl = ", ".join(f"{k} {v['ppl']:.2f}" for k, v in found["perplexity"].items())
    return (f"wrote {args.out}: a transformers checkpoint and {MAP_FILE} ({len(found['matrices'])} "
            f"matrices, achieved sparsity {found['overall']['achieved_sparsity']:.2%}"
            f"{'; perplexity ' + ppl if ppl else ''})")


def run_sensitivity(args) -> dict:
    _check_common_args(args)
    config = _config(args, sparsity=0.0)
    found, corpus = estimates_for(config, [config.estimator], args.data_dir, args.device,
                                  not args.quiet)
    estimate = found[config.estimator]
    result = {"config": config.key(), "calibration_source": corpus.source,
              "versions": versions(), **estimate, "layers": layer_sensitivity(traces(estimate))}
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
    for setting, scores in result.get("accuracy", {}).items():
        for task, score in scores.items():
            stderr = f" ± {100 * score['stderr']:.1f}" if score["stderr"] is not None else ""
            lines.append(f"{setting:11s} {task:15s} {score['metric']:8s} "
                         f"{100 * score['value']:5.1f}{stderr} %  ({score['shots']}-shot, "
                         f"{score['documents']} documents, {score['source']})")
    return "\n".join(lines)


def run_plan(args) -> tuple[str, list]:
    from samrepro.machine import plan
    from samrepro.machine.memory import GIB
    from samrepro.study.presets import preset

    values = preset(args.preset or "paper")
    if args.preset is None:
        values["zero_shot_limit"] = None
    models = [m for spec in (args.model or []) for m in spec.split(",") if m]
    if models:
        values["models"] = models
    elif args.preset is None:
        raise UserError("give --model (a folder holding config.json, a hub id or e.g. "
                        "llama-2-7b), or --preset to plan a preset's models")
    for key in ("nsamples", "seqlen", "probes", "eval_windows", "batch_size", "estimator"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    if args.lm_eval is not None:
        values["zero_shot_settings"] = args.lm_eval
    values["dtype"] = args.dtype
    for key in ("nsamples", "seqlen", "probes", "batch_size", "eval_windows"):
        checks.at_least(values[key], 1, f"--{key.replace('_', '-')}")
    if args.gpus is not None:
        machine = plan.Machine(plan.parse_gpus(args.gpus),
                               None if args.host_ram is None else args.host_ram * GIB)
    else:
        here = plan.this_machine()
        machine = plan.Machine(here.gpus, args.host_ram * GIB if args.host_ram else here.host_bytes,
                               here.disk_bytes)
    plans = plan.plan_settings(values, machine)
    if args.json:
        write_json(args.json, {"machine": machine.kind, "plans": [
            {"model": p.model, "verdict": p.verdict, "gpus_needed": p.gpus_needed,
             "dtype": str(p.dtype).removeprefix("torch."), "host_peak_bytes": p.host_peak,
             "resume_disk_bytes": p.disk,
             "problem": p.problem(), "steps": [vars(s) for s in p.steps]} for p in plans]})
    return plan.render(plans), plans


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "quiet", False):  # no progress bars from the libraries: stderr holds only errors
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        if args.command in ("prune", "eval"):
            print(_summary(run_prune(args)))
        elif args.command == "sensitivity":
            print(_sensitivity_summary(run_sensitivity(args)))
        elif args.command == "verify":
            from samrepro.study.verify import verify

            return verify(args.results, args.scratch, args.seeds)
        elif args.command == "export":
            print(run_export(args))
        elif args.command == "plan":
            text, plans = run_plan(args)
            print(text)
            bad = [p for p in plans if not p.fits]
            if bad:
                raise UserError(bad[0].problem())
    except UserError as e:
        print(f"samrepro: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("samrepro: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
