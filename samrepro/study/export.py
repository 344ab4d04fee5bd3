"""A pruned model to take away: a Hugging Face checkpoint that plain transformers loads, and its
sparsity map (docs/usage.md, "A pruned model to take away").

    samrepro export --model embedded --sparsity 0.5 --allocation paper --saliency isc --out DIR

DIR holds the pruned model as `save_pretrained` writes it (config, safetensors weights,
tokenizer: `AutoModelForCausalLM.from_pretrained(DIR)` needs no samrepro) and
`sparsity_map.json`: for every pruned matrix its target and achieved sparsity and its
sensitivity with standard error (docs/method.md §3–§4), with the run's settings, seed and
perplexities. The zeros are stored in dense tensors: unstructured and mixed sparsity give no
speed-up by themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

from samrepro import __version__
from samrepro.method.allocation import allocation
from samrepro.errors import UserError
from samrepro.study.experiments import RunConfig, estimates_for, on_device, prune_and_evaluate
from samrepro.io.files import write_json
from samrepro.machine.hardware import default_device
from samrepro.io.models import load_model, prunable_linears

MAP_FILE = "sparsity_map.json"
MAP_FORMAT = "samrepro-sparsity-map/1"


def export(config: RunConfig, out, data_dir=None, device=None, progress: bool = True,
           sensitivity: dict[str, float] | None = None) -> dict:
    """Prune and evaluate `config`, save the checkpoint into `out` (a new or empty folder) and
    write its sparsity map there; returns the map. `sensitivity`: per-matrix values to rank
    instead of an estimate (as `samrepro prune --sensitivity FILE`)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not an empty folder: choose a new folder")
    device = default_device(device)
    config = on_device(config, device)
    result = prune_and_evaluate(config, data_dir, device, progress, sensitivity=sensitivity,
                                save=str(out))
    estimate = (_sensitivity(config, data_dir, device, progress) if sensitivity is None
                else {"matrices": {n: {"trace": v} for n, v in sensitivity.items()}})
    sparsity_map = build_map(config, result, zeros_per_matrix(out), estimate)
    write_json(out / MAP_FILE, sparsity_map)
    return sparsity_map


def _sensitivity(config: RunConfig, data_dir, device, progress: bool) -> dict | None:
    """The estimate the allocation ranked (read back from the cache the run filled), or None
    for an allocation that reads none (uniform, the controls)."""
    rule = allocation(config.allocation)
    if not rule.needs_estimate or config.sparsity == 0:
        return None
    name = rule.estimator or config.estimator
    return estimates_for(config, [name], data_dir, device, progress)[0][name]


def zeros_per_matrix(folder) -> dict[str, tuple[int, int]]:
    """(zeros, parameters) of every prunable matrix of the checkpoint in `folder`, as saved."""
    model, _ = load_model(str(folder))
    return {name: (int((linear.weight == 0).sum()), linear.weight.numel())
            for name, linear in prunable_linears(model).items()}


def build_map(config: RunConfig, result: dict, zeros: dict[str, tuple[int, int]],
              estimate: dict | None) -> dict:
    """The sparsity map's content (its schema: docs/usage.md)."""
    matrices = {}
    for name, (count, size) in zeros.items():
        entry = (estimate or {}).get("matrices", {}).get(name, {})
        matrices[name] = {"parameters": size,
                          "target_sparsity": result["sparsities"].get(name, config.sparsity),
                          "achieved_sparsity": count / size,
                          "sensitivity": entry.get("trace"),
                          "sensitivity_stderr": entry.get("stderr")}
    total = sum(size for _, size in zeros.values())
    return {
        "format": MAP_FORMAT, "samrepro_version": __version__,
        "model": result["model"], "weights_sha256": result["weights_sha256"],
        "settings": {**config.key(), "alpha": config.resolved_alpha},
        "seed": config.seed,
        "sensitivity_estimator": None if estimate is None else (
            allocation(config.allocation).estimator or config.estimator),
        "overall": {"target_sparsity": config.sparsity,
                    "planned_sparsity": result["planned_sparsity"],
                    "achieved_sparsity": sum(c for c, _ in zeros.values()) / total},
        "calibration_data": result.get("calibration_data"),
        "perplexity": {stream: {k: v for k, v in ppl.items() if k != "window_nll"}
                       for stream, ppl in result.get("perplexity", {}).items()
                       if isinstance(ppl, dict)},
        "matrices": matrices,
    }


def read_map(folder) -> dict:
    """A sparsity map written by export, or a UserError saying what is wrong."""
    path = Path(folder) / MAP_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: no readable sparsity map ({type(e).__name__}); "
                        "write one with `samrepro export`") from None
    if data.get("format") != MAP_FORMAT:
        raise UserError(f"{path}: format {data.get('format')!r}, expected {MAP_FORMAT}")
    return data
