"""Runs: a config (model, method, sizes, seed) → metrics, cached by the config's hash.

The CLI and the notebooks go through `prune_and_evaluate` (one run) and `run` (the same,
cached on disk so that a re-run or an interrupted notebook picks up where it stopped).
"""

from __future__ import annotations

import hashlib
import json
import resource
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .allocation import CONTROLS, allocate, overall_sparsity
from .cache import cached, digest
from .data import calibration_windows, eval_stream
from .data import data_dir as local_data_dir
from .errors import UserError
from .evaluate import check_tasks, perplexity, zero_shot
from .files import save_model
from .hardware import DTYPES, default_device, machine, resolve_dtype
from .models import count_zeros, load_model, prunable_linears, weights_fingerprint
from .pipeline import layer_hessian_diagonals, prune_model
from .provenance import (code_hash, git_commit, model_provenance, versions,
                         warn_if_versions_differ, weights_sha256)
from .resume import RunCheckpoint
from .sensitivity import ESTIMATORS, fisher, hutchinson, owl_outliers

@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers (the device aside)."""

    model: str
    sparsity: float = 0.5
    saliency: str = "obs"
    allocation: str = "uniform"
    alpha: float | None = None  # None: 0.1, or OWL's λ = 0.08 for `owl`
    estimator: str = "hutchinson"
    nm: tuple[int, int] | None = None
    wbits: int = 16
    calib: str = "c4"
    nsamples: int = 128
    seqlen: int = 2048
    eval: tuple[str, ...] = ("wikitext2", "ptb", "c4")
    eval_windows: int | None = None
    seed: int = 0
    num_layers: int | None = None
    dtype: str = "auto"  # auto: bf16 where the device has a bf16 unit (hardware.fast_dtype)
    probes: int = 100
    rel_tol: float = 0.2
    distribution: str = "gaussian"
    batch_size: int = 8
    trust_remote_code: bool = False
    # accuracy through lm-evaluation-harness (evaluate.zero_shot); none by default
    tasks: tuple[str, ...] = ()
    settings: tuple[str, ...] = ("zero-shot",)  # and/or "leaderboard"
    limit: int | None = None  # first N documents of each task
    task_source: str | None = None  # local, hub; None: local when a data folder is in force
    allow_bin_weights: bool = False  # also read .bin (pickle) weights; not part of the identity
    extra: dict = field(default_factory=dict, compare=False)  # not part of the identity

    @property
    def resolved_alpha(self) -> float:
        return self.alpha if self.alpha is not None else (
            0.08 if self.allocation == "owl" else 0.1)

    def key(self) -> dict:
        data = asdict(self)
        data.pop("extra")
        data.pop("batch_size")  # changes speed, not results (up to float rounding)
        data.pop("allow_bin_weights")  # the weights hash records what was loaded
        if not self.tasks:  # keeps the keys of perplexity-only runs as they were
            for name in ("tasks", "settings", "limit", "task_source"):
                data.pop(name)
        return data


def on_device(config: RunConfig, device) -> RunConfig:
    """`config` with its dtype resolved for `device` (`auto` → bfloat16, float16 or float32),
    so that the run's identity names the dtype it computed in."""
    return replace(config, dtype=resolve_dtype(config.dtype, device))


def load(config: RunConfig, device: torch.device):
    dtype = DTYPES[resolve_dtype(config.dtype, device)]
    model, tokenizer = load_model(config.model, dtype, config.trust_remote_code,
                                  config.num_layers, seed=config.seed,
                                  allow_bin_weights=config.allow_bin_weights)
    context = getattr(model.config, "max_position_embeddings", None)
    uses_windows = config.sparsity > 0 or config.wbits < 16 or bool(config.eval)  # else unused
    if context and uses_windows and config.seqlen > context:
        raise UserError(f"seqlen {config.seqlen} exceeds the model's context of {context} tokens")
    return model, tokenizer


def estimate_sensitivity(model, windows, estimator: str, key: dict, *, rel_tol: float = 0.2,
                         max_probes: int = 100, distribution: str = "gaussian", seed: int = 0,
                         progress: bool = True, place=None) -> dict:
    """Per-matrix sensitivity by `estimator` (hutchinson, fisher, xxt, or owl outlier counts),
    computed once per (model, calibration, estimator settings) and cached.

    `key` names the model and the calibration data (model id, layers, data source, sizes,
    seed) so that the cache can tell runs apart; the estimator's own settings are added here.
    Returns {"matrices": {name: {"trace", "stderr"?}}, ...} as the estimator gives it.
    `place()`: a context manager that puts the model where the estimate runs (only entered
    when the estimate is computed, not when it is read from the cache).
    """
    if estimator not in ESTIMATORS + ("owl",):
        raise UserError(f"unknown estimator {estimator!r}: choose from "
                        f"{', '.join(ESTIMATORS + ('owl',))}")
    settings = {"estimator": estimator}
    if estimator == "hutchinson":
        settings.update(rel_tol=rel_tol, max_probes=max_probes, distribution=distribution,
                        seed=seed)

    def compute():
        if place is not None:
            with place():
                return estimate()
        return estimate()

    def estimate():
        if estimator == "hutchinson":
            return hutchinson(model, windows, rel_tol=rel_tol, max_probes=max_probes,
                              distribution=distribution, seed=seed, progress=progress)
        if estimator == "fisher":
            return fisher(model, windows, progress=progress)
        if estimator == "xxt":
            diagonals = layer_hessian_diagonals(model, windows, progress=progress)
            return {"matrices": {n: {"trace": float(d.mean())} for n, d in diagonals.items()}}
        counts = owl_outliers(model, windows, progress=progress)
        return {"matrices": {n: {"trace": c} for n, c in counts.items()}}

    return cached("sensitivity", {**key, **settings}, compute)


# Windows per evaluation forward: 1.5× the tokens/s of one at a time in bf16 on 2 cores
# (benchmarks/bf16.py); the fp32 logits of 4 × 2048 tokens of a 32k vocabulary take 1 GiB.
EVAL_BATCH = 4

NOISE_FLOOR = 3.0  # standard errors


def _noise_below_zero(entry: dict) -> bool:
    stderr = entry.get("stderr")
    return entry["trace"] < 0 and stderr is not None and -entry["trace"] <= NOISE_FLOOR * stderr


def traces(result: dict) -> dict[str, float]:
    """{matrix name: sensitivity value} from an estimate_sensitivity result.

    A Hutchinson estimate below zero but within NOISE_FLOOR standard errors of it is noise
    around a trace near 0: it counts as 0 (and is listed by floored(), which every run
    records, so the floor is never silent). One further below zero is kept, and allocation
    refuses it.
    """
    return {name: 0.0 if _noise_below_zero(entry) else entry["trace"]
            for name, entry in result["matrices"].items()}


def floored(result: dict) -> list[str]:
    """The matrices whose negative estimate traces() counts as 0."""
    return [name for name, entry in result["matrices"].items() if _noise_below_zero(entry)]


def sensitivity_for(config: RunConfig, model, windows, corpus, estimator: str, device,
                    progress: bool = True, placement: dict | None = None) -> dict:
    """estimate_sensitivity keyed by the parts of `config` that determine it.

    The Hutchinson estimate runs where samrepro.plan places it (`placement`, else
    plan.hutchinson_placement: one GPU, the model split over several, or the CPU), which
    refuses one that cannot fit before anything runs; an estimate already in the cache (e.g.
    from samrepro.distributed under torchrun) is read whatever the plan says."""
    key = {"model": config.model, "num_layers": config.num_layers, "dtype": str(model.dtype),
           "calibration": corpus.source, "nsamples": config.nsamples,
           "seqlen": config.seqlen, "seed": config.seed,
           "weights": weights_fingerprint(config.model)}
    if estimator == "hutchinson":
        from .plan import hutchinson_placement, placed

        def place():
            return placed(model, placement or hutchinson_placement(model, config.seqlen, device))

        return estimate_sensitivity(model, windows, estimator, key, rel_tol=config.rel_tol,
                                    max_probes=config.probes, distribution=config.distribution,
                                    seed=config.seed, progress=progress, place=place)
    model.to(device)
    try:
        return estimate_sensitivity(model, windows, estimator, key, rel_tol=config.rel_tol,
                                    max_probes=config.probes, distribution=config.distribution,
                                    seed=config.seed, progress=progress)
    finally:
        if device.type != "cpu":
            model.to("cpu")  # the pruning pass moves one layer at a time


_STREAMS: dict = {}


def _eval_stream(name, tokenizer, seqlen, data_dir):
    """data.eval_stream, kept in memory: the runs of a notebook share their tokenized streams."""
    key = (name, tokenizer.name_or_path, len(tokenizer), seqlen, str(data_dir))
    if key not in _STREAMS:
        _STREAMS[key] = eval_stream(name, tokenizer, seqlen, data_dir)
    return _STREAMS[key]


SAVE_MARK = "samrepro-run.json"  # inside a --save folder: the hash of the weights it holds


def _save(model, tokenizer, folder, sha256: str, config: dict) -> None:
    """files.save_model, unless `folder` already holds these very weights (written by this
    run before it was interrupted)."""
    mark = Path(folder) / SAVE_MARK
    if mark.exists():
        try:
            stored = json.loads(mark.read_text(encoding="utf-8")).get("weights_sha256")
        except (OSError, ValueError, AttributeError):
            stored = None
        if stored == sha256:
            return
        raise UserError(f"--save {folder} holds another pruned model: choose a new folder")
    save_model(model, tokenizer, folder,
               {SAVE_MARK: json.dumps({"weights_sha256": sha256, "config": config}, indent=2)})


def _tensor_sha256(t: torch.Tensor | None) -> str | None:
    return None if t is None else hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def prune_and_evaluate(config: RunConfig, data_dir=None, device=None, progress: bool = True,
                       sensitivity: dict[str, float] | None = None, save: str | None = None) -> dict:
    """One run: load, calibrate, allocate, prune, count zeros, evaluate perplexity.

    `sensitivity` overrides the estimate (e.g. read from a file); `save` writes the pruned
    checkpoint (before the evaluation, so that it survives an evaluation failure).
    A run interrupted at any point continues where it stopped when started again with the
    same inputs (resume.RunCheckpoint): `resumed_layers` and `resumed_evaluations` list what
    was read back instead of computed. The result records what it was computed with: library
    versions, the model's revision and weights hash, the data files' hashes, device and seed.
    """
    started = time.perf_counter()
    if config.tasks:  # before hours of pruning, not after
        check_tasks(config.tasks, config.settings, config.limit)
    device = default_device(device)
    config = on_device(config, device)
    prune_n, prune_m = config.nm or (0, 0)
    model, tokenizer = load(config, device)
    dense_zeros, total = count_zeros(model)
    sizes = {name: linear.weight.numel() for name, linear in prunable_linears(model).items()}
    # read the evaluation data first: a missing or damaged file fails before any pruning
    streams = {name: _eval_stream(name, tokenizer, config.seqlen, data_dir) for name in config.eval}
    result = {"config": config.key(), "dense_zeros": dense_zeros, "prunable_parameters": total,
              "device": str(device), "machine": machine(), "versions": versions(),
              "code": code_hash(), "git_commit": git_commit(),
              "model": model_provenance(config.model, model)}
    needs_data = config.sparsity > 0 or config.wbits < 16
    windows = None
    if needs_data:
        windows, corpus = calibration_windows(config.calib, tokenizer, config.nsamples,
                                              config.seqlen, config.seed, data_dir)
        result["calibration_source"] = corpus.source
        result["calibration_data"] = corpus.provenance
    if config.allocation in ("uniform", *CONTROLS) or not needs_data:
        sensitivity = {}
    elif sensitivity is None:
        estimator = "owl" if config.allocation == "owl" else config.estimator
        estimate = sensitivity_for(config, model, windows, corpus, estimator, device, progress)
        sensitivity = traces(estimate)
        result["sensitivity_floored_at_zero"] = floored(estimate)
    sparsities = allocate(sensitivity, sizes, config.sparsity, config.resolved_alpha,
                          config.allocation, seed=config.seed)
    result["sparsities"] = sparsities
    result["planned_sparsity"] = overall_sparsity(sparsities, sizes)
    folder = local_data_dir(data_dir)
    checkpoint = RunCheckpoint({
        "config": config.key(), "batch_size": config.batch_size, "device": device.type,
        "data_dir": str(folder or "hub"),
        "dense_weights": result["model"]["weights_sha256"], "calibration": _tensor_sha256(windows),
        "sparsities": sparsities})
    if needs_data:
        report = prune_model(model, windows, sparsities, config.saliency, prune_n, prune_m,
                             config.wbits, device=device, batch_size=config.batch_size,
                             progress=progress, checkpoint=checkpoint)
        result["pruning_seconds"] = report["seconds"]
        result["matrices"] = report["matrices"]
        result["resumed_layers"] = report.get("resumed_layers", [])
    zeros, _ = count_zeros(model)
    result["achieved_sparsity"] = zeros / total
    result["weights_sha256"] = weights_sha256(model)
    if save:
        _save(model, tokenizer, save, result["weights_sha256"], config.key())
        result["saved_to"] = str(save)

    model.to(device)
    result["perplexity"] = {}
    for name, (ids, corpus) in streams.items():
        ppl = checkpoint.evaluation(name, lambda: perplexity(
            model, ids, config.seqlen, config.eval_windows, batch_size=EVAL_BATCH,
            progress=progress, desc=f"perplexity {name}"))
        result["perplexity"][name] = {**ppl, **corpus.provenance}
    result["resumed_evaluations"] = checkpoint.resumed_evaluations
    if config.tasks:
        result["accuracy"] = checkpoint.evaluation("accuracy", lambda: zero_shot(
            model, tokenizer, config.tasks, config.settings, config.limit, config.task_source,
            data_dir))
    result["wall_seconds"] = time.perf_counter() - started
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    checkpoint.remove()
    return result


def _isa(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    facts = machine()
    return "+".join([facts["isa"], *facts["bf16_units"]])


def run(config: RunConfig, data_dir=None, device=None, progress: bool = True) -> dict:
    """prune_and_evaluate, cached by the config (and the data folder in force)."""
    from .data import data_dir as resolve

    folder = resolve(data_dir)
    device = default_device(device)
    config = on_device(config, device)
    # the CPU's vector ISA changes the rounding of bf16 and fp32 kernels (hardware.machine)
    key = {**config.key(), "data_dir": str(folder) if folder else "hub", "isa": _isa(device),
           "weights": weights_fingerprint(config.model)}
    result = cached("runs", key, lambda: prune_and_evaluate(config, data_dir, device, progress))
    warn_if_versions_differ(result.get("versions"), f"the cached run {digest(key)}")
    return {**result, "run_id": digest(key)}
