"""A notebook's settings: its preset with the parameters cell's overrides, the run configs
of its rows, and running them (through the cache).

    s = settings.settings(preset, models=models, …)   # the notebooks' second cell
    cfg = settings.config(s, "embedded", sparsity=0.5, allocation="paper")
    results = settings.run_all(s, [cfg, …])

Where the results go (results_dir) is decided here too; samrepro.report writes them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tqdm.auto import tqdm

from .allocation import allocation
from .errors import UserError
from .experiments import RunConfig, run
from .inputs import record as record_inputs
from .models import default_calibration, default_evaluation
from .models import split_model
from .presets import preset

SETTING_KEYS = ("models", "nsamples", "seqlen", "eval_windows", "batch_size", "estimator",
                "probes", "rel_tol", "seeds", "sparsities", "figure3_sparsities",
                "zero_shot_limit", "zero_shot_settings", "allocation_saliencies", "saliency",
                "allocation", "alpha")


def results_dir() -> Path:
    """$SAMREPRO_RESULTS_DIR, else the checkout's results/ (editable install), else ./results."""
    if os.environ.get("SAMREPRO_RESULTS_DIR"):
        return Path(os.environ["SAMREPRO_RESULTS_DIR"])
    checkout = Path(__file__).resolve().parents[1]
    return checkout / "results" if (checkout / "pyproject.toml").exists() else Path("results")


def settings(preset_name: str | None = None, **overrides) -> dict:
    """The preset's values with every override that is not None applied."""
    values = preset(preset_name)
    unknown = set(overrides) - set(SETTING_KEYS) - {"device", "data_dir", "output_dir"}
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    if not isinstance(values["seeds"], int) or values["seeds"] < 1:
        raise UserError(f"seeds must be a whole number ≥ 1 (calibration seeds 0 … seeds − 1), "
                        f"got {values['seeds']!r}")
    values.setdefault("device", None)
    values.setdefault("data_dir", None)
    values["output_dir"] = values.get("output_dir") or results_dir()
    values["started"] = time.time()
    return values


def config(s: dict, model_spec: str, **fields) -> RunConfig:
    """A RunConfig for one model of the settings `s`, with per-run fields (sparsity, …)."""
    name, layers = split_model(model_spec)
    fields.setdefault("calib", default_calibration(name))
    fields.setdefault("eval", default_evaluation(name))
    if allocation(fields.get("allocation", "uniform")).mixed:  # α: the mixed ones' range (§4)
        fields.setdefault("alpha", s.get("alpha"))
    return RunConfig(model=name, num_layers=layers, nsamples=s["nsamples"], seqlen=s["seqlen"],
                     eval_windows=s["eval_windows"], estimator=s["estimator"],
                     probes=s["probes"], rel_tol=s["rel_tol"], batch_size=s["batch_size"],
                     **fields)


def run_all(s: dict, configs: list[RunConfig], desc: str = "runs") -> list[dict]:
    """Run (or read from the cache) every config, with a progress bar over them (and none
    inside them: transformers' bar over each model's weights would print one a run)."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        results = [run(cfg, s["data_dir"], s["device"], progress=False)
                   for cfg in tqdm(configs, desc=desc)]
        record_inputs(s, results)  # the models' and texts' hashes, for the results file
        return results
    finally:
        if shown:
            hf_logging.enable_progress_bar()
