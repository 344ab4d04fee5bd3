"""Runs: a config (model, method, sizes, seed) → metrics, cached by the config's hash.

The CLI and the notebooks go through `prune_and_evaluate` (one run) and `run` (the same,
cached on disk so that a re-run or an interrupted notebook picks up where it stopped).
A run is a sequence of named steps, each a short function below, in the order it runs them:
load, record (the dense model's provenance), calibrate, estimate, allocate_sparsities,
prune, save_pruned, evaluate_model.
"""

from __future__ import annotations

import hashlib
import json
import resource
import time
from dataclasses import replace
from pathlib import Path

import torch

from samrepro.method.allocation import allocate, allocation, floored, overall_sparsity, traces
from samrepro.config import RunConfig
from samrepro.io.cache import cached, digest
from samrepro.io.data import calibration_windows, eval_stream
from samrepro.io.data import data_dir as local_data_dir
from samrepro.method.estimators import estimator
from samrepro.errors import UserError
from samrepro.io.evaluate import check_tasks, perplexity, zero_shot
from samrepro.io.files import save_model
from samrepro.machine.hardware import DTYPES, default_device, machine, resolve_dtype
from samrepro.io.models import count_zeros, load_model, prunable_linears, weights_fingerprint
from samrepro.method.pipeline import prune_model
from samrepro.machine.plan import EVAL_BATCH, hutchinson_placement, inference_placement, placed
from samrepro.io.provenance import (code_hash, git_commit, model_provenance, versions,
                                    warn_if_versions_differ, weights_sha256)
from samrepro.io.resume import RunCheckpoint

def on_device(config: RunConfig, device) -> RunConfig:
    """`config` with its dtype resolved for `device` (`auto` → bfloat16, float16 or float32),
    so that the run's identity names the dtype it computed in."""
    return replace(config, dtype=resolve_dtype(config.dtype, device))


def load(config: RunConfig, device: torch.device):
    """Step 1: the model (in the config's dtype for `device`) and its tokenizer."""
    dtype = DTYPES[resolve_dtype(config.dtype, device)]
    model, tokenizer = load_model(config.model, dtype, config.trust_remote_code,
                                  config.num_layers, seed=config.seed,
                                  allow_bin_weights=config.allow_bin_weights)
    context = getattr(model.config, "max_position_embeddings", None)
    uses_windows = needs_calibration(config) or bool(config.eval)  # else seqlen is unused
    if context and uses_windows and config.seqlen > context:
        raise UserError(f"seqlen {config.seqlen} exceeds the model's context of {context} tokens")
    return model, tokenizer


def estimate_sensitivity(model, windows, name: str, key: dict, settings: dict,
                         progress: bool = True, place=None) -> dict:
    """Per-matrix sensitivity by the estimator `name` registered in samrepro.method.estimators
    (hutchinson, fisher, xxt, or OWL's outlier counts), computed once per (model, calibration,
    estimator settings) and cached.

    `key` names the model and the calibration data (model id, layers, data source, sizes,
    seed) so that the cache can tell runs apart; the estimator's own settings (those it
    declares, taken from `settings`) are added here.
    Returns {"matrices": {name: {"trace", "stderr"?}}, ...} as the estimator gives it.
    `place()`: a context manager that puts the model where the estimate runs (only entered
    when the estimate is computed, not when it is read from the cache).
    """
    spec = estimator(name)
    own = {k: settings[k] for k in spec.settings}

    def compute():
        if place is None:
            return spec.estimate(model, windows, own, progress)
        with place():
            return spec.estimate(model, windows, own, progress)

    return cached("sensitivity", {**key, "estimator": name, **own, **spec.version}, compute)


def sensitivity_for(config: RunConfig, model, windows, corpus, name: str, device,
                    progress: bool = True, placement: dict | None = None) -> dict:
    """estimate_sensitivity keyed by the parts of `config` that determine it.

    The Hutchinson estimate runs where samrepro.machine.plan places it (`placement`, else
    plan.hutchinson_placement: one GPU, the model split over several, or the CPU), which
    refuses one that cannot fit before anything runs; an estimate already in the cache (e.g.
    from samrepro.commands.distributed under torchrun) is read whatever the plan says."""
    key = {"model": config.model, "num_layers": config.num_layers, "dtype": str(model.dtype),
           "calibration": corpus.source, "nsamples": config.nsamples,
           "seqlen": config.seqlen, "seed": config.seed,
           "weights": weights_fingerprint(config.model)}
    settings = {"rel_tol": config.rel_tol, "probes": config.probes,
                "distribution": config.distribution, "seed": config.seed}
    if estimator(name).whole_model:
        def place():
            return placed(model, placement or hutchinson_placement(model, config.seqlen, device))

        return estimate_sensitivity(model, windows, name, key, settings, progress, place)
    model.to(device)
    try:
        return estimate_sensitivity(model, windows, name, key, settings, progress)
    finally:
        if device.type != "cpu":
            model.to("cpu")  # the pruning pass moves one layer at a time


def estimates_for(config: RunConfig, names, data_dir=None, device=None, progress: bool = True,
                  placement: dict | None = None) -> tuple[dict, object]:
    """Load → calibrate → estimate: {estimator: estimate} of `config`'s model on its
    calibration windows (read from the cache when there), and the calibration corpus. The one
    path of `samrepro sensitivity`, the torchrun entry, the export and the figures' tables."""
    device = default_device(device)
    config = on_device(config, device)
    model, tokenizer = load(config, device)
    windows, corpus = calibration_windows(config.calib, tokenizer, config.nsamples,
                                          config.seqlen, config.seed, data_dir)
    return {name: sensitivity_for(config, model, windows, corpus, name, device, progress,
                                  placement) for name in names}, corpus


_STREAMS: dict = {}


def _eval_stream(name, tokenizer, seqlen, data_dir):
    """data.eval_stream, kept in memory: the runs of a notebook share their tokenized streams."""
    key = (name, tokenizer.name_or_path, len(tokenizer), seqlen, str(data_dir))
    if key not in _STREAMS:
        _STREAMS[key] = eval_stream(name, tokenizer, seqlen, data_dir)
    return _STREAMS[key]


SAVE_MARK = "samrepro-run.json"  # inside a --save folder: the hash of the weights it holds


def save_pruned(model, tokenizer, folder, sha256: str, config: dict) -> None:
    """Step 7: files.save_model, unless `folder` already holds these very weights (written
    by this run before it was interrupted)."""
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


def needs_calibration(config: RunConfig) -> bool:
    """Whether the run changes the weights (prunes or quantizes), and so reads calibration data."""
    return config.sparsity > 0 or config.wbits < 16


def record(config: RunConfig, model, device) -> dict:
    """Step 2: what the run computes with, taken from the dense model before it is pruned:
    its zeros, library versions, code, machine, and the model's revision and weights hash."""
    dense_zeros, total = count_zeros(model)
    return {"config": config.key(), "dense_zeros": dense_zeros, "prunable_parameters": total,
            "device": str(device), "machine": machine(), "versions": versions(),
            "code": code_hash(), "git_commit": git_commit(),
            "model": model_provenance(config.model, model)}


def calibrate(config: RunConfig, tokenizer, data_dir):
    """Step 3: the calibration windows and their corpus, or (None, None) for a run that
    changes no weights."""
    if not needs_calibration(config):
        return None, None
    return calibration_windows(config.calib, tokenizer, config.nsamples, config.seqlen,
                               config.seed, data_dir)


def estimate(config: RunConfig, model, windows, corpus, device, progress: bool,
             given: dict[str, float] | None = None) -> tuple[dict[str, float], list[str] | None]:
    """Step 4: the per-matrix values the allocation ranks, and the matrices whose negative
    estimate counts as 0 (None when nothing was estimated here): none for `uniform`, the
    controls and a run without calibration; `given` when the caller has them (a file); else
    the estimator's (OWL's outlier counts for `owl`) through allocation.traces."""
    rule = allocation(config.allocation)
    if not rule.needs_estimate or windows is None:
        return {}, None
    if given is not None:
        return given, None
    found = sensitivity_for(config, model, windows, corpus, rule.estimator or config.estimator,
                            device, progress)
    return traces(found), floored(found)


def allocate_sparsities(config: RunConfig, sensitivity: dict[str, float],
                        sizes: dict[str, int]) -> dict[str, float]:
    """Step 5: every prunable matrix's sparsity (allocation.allocate, docs/method.md §4)."""
    return allocate(sensitivity, sizes, config.sparsity, config.resolved_alpha,
                    config.allocation, seed=config.seed)


def resume_point(config: RunConfig, device, data_dir, dense_sha256: str, windows,
                 sparsities: dict[str, float]) -> RunCheckpoint:
    """Where an interrupted run left its pruned layers and finished evaluations, keyed by
    everything that determines them."""
    folder = local_data_dir(data_dir)
    return RunCheckpoint({
        "config": config.key(), "batch_size": config.batch_size, "device": device.type,
        "data_dir": str(folder or "hub"), "dense_weights": dense_sha256,
        "calibration": _tensor_sha256(windows), "sparsities": sparsities})


def prune(config: RunConfig, model, windows, sparsities: dict[str, float], device,
          checkpoint: RunCheckpoint, progress: bool) -> dict:
    """Step 6: the layer-by-layer pass (pipeline.prune_model); its seconds, per-matrix report
    and the layers read back from `checkpoint`."""
    prune_n, prune_m = config.nm or (0, 0)
    report = prune_model(model, windows, sparsities, config.saliency, prune_n, prune_m,
                         config.wbits, device=device, batch_size=config.batch_size,
                         progress=progress, checkpoint=checkpoint)
    return {"pruning_seconds": report["seconds"], "matrices": report["matrices"],
            "resumed_layers": report.get("resumed_layers", [])}


def evaluate_model(config: RunConfig, model, tokenizer, streams: dict, data_dir,
                   checkpoint: RunCheckpoint, progress: bool, device=None) -> dict:
    """Step 8: perplexity on each stream and, with `tasks`, accuracy through
    lm-evaluation-harness; each finished evaluation is kept in `checkpoint`. Each runs where
    samrepro.machine.plan places its step (plan.inference_placement: one GPU, the model split over
    several, or its last layers offloaded to the host), refused up front if it cannot fit."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    found = {"perplexity": {}}
    if streams:
        placement = inference_placement(model, config.seqlen, device, step="perplexity")
        found["placement"] = {"perplexity": placement}
        with placed(model, placement):
            for name, (ids, corpus) in streams.items():
                ppl = checkpoint.evaluation(name, lambda: perplexity(
                    model, ids, config.seqlen, config.eval_windows, batch_size=EVAL_BATCH,
                    progress=progress, desc=f"perplexity {name}"))
                found["perplexity"][name] = {**ppl, **corpus.provenance}
    found["resumed_evaluations"] = checkpoint.resumed_evaluations
    if config.tasks:
        placement = inference_placement(model, config.seqlen, device, step="lm-eval")
        found.setdefault("placement", {})["lm-eval"] = placement
        with placed(model, placement):
            found["accuracy"] = checkpoint.evaluation("accuracy", lambda: zero_shot(
                model, tokenizer, config.tasks, config.settings, config.limit,
                config.task_source, data_dir))
    return found


def prune_and_evaluate(config: RunConfig, data_dir=None, device=None, progress: bool = True,
                       sensitivity: dict[str, float] | None = None, save: str | None = None) -> dict:
    """One run: load, record, calibrate, estimate, allocate, prune, save, evaluate.

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
    model, tokenizer = load(config, device)
    sizes = {name: linear.weight.numel() for name, linear in prunable_linears(model).items()}
    # read the evaluation data first: a missing or damaged file fails before any pruning
    streams = {name: _eval_stream(name, tokenizer, config.seqlen, data_dir) for name in config.eval}
    result = record(config, model, device)
    windows, corpus = calibrate(config, tokenizer, data_dir)
    if corpus is not None:
        result["calibration_source"] = corpus.source
        result["calibration_data"] = corpus.provenance
    sensitivity, floored_at_zero = estimate(config, model, windows, corpus, device, progress,
                                            given=sensitivity)
    if floored_at_zero is not None:
        result["sensitivity_floored_at_zero"] = floored_at_zero
    sparsities = allocate_sparsities(config, sensitivity, sizes)
    result["sparsities"] = sparsities
    result["planned_sparsity"] = overall_sparsity(sparsities, sizes)
    checkpoint = resume_point(config, device, data_dir, result["model"]["weights_sha256"],
                              windows, sparsities)
    if needs_calibration(config):
        result.update(prune(config, model, windows, sparsities, device, checkpoint, progress))
    zeros, _ = count_zeros(model)
    result["achieved_sparsity"] = zeros / result["prunable_parameters"]
    result["weights_sha256"] = weights_sha256(model)
    if save:
        save_pruned(model, tokenizer, save, result["weights_sha256"], config.key())
        result["saved_to"] = str(save)
    result.update(evaluate_model(config, model, tokenizer, streams, data_dir, checkpoint,
                                 progress, device))
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
    from samrepro.io.data import data_dir as resolve

    folder = resolve(data_dir)
    device = default_device(device)
    config = on_device(config, device)
    # the CPU's vector ISA changes the rounding of bf16 and fp32 kernels (hardware.machine)
    key = {**config.key(), "data_dir": str(folder) if folder else "hub", "isa": _isa(device),
           "weights": weights_fingerprint(config.model)}
    result = cached("runs", key, lambda: prune_and_evaluate(config, data_dir, device, progress))
    warn_if_versions_differ(result.get("versions"), f"the cached run {digest(key)}")
    return {**result, "run_id": digest(key)}
