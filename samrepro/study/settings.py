"""A notebook's settings: its preset with the parameters cell's overrides, the run configs
of its rows, and running them (through the cache).

    s = settings.notebook("table1", globals())  # the notebooks' second cell
    cfg = settings.config(s, "embedded", sparsity=0.5, allocation="paper")
    results = settings.run_all(s, [cfg, …])

The parameters are checked as the CLI checks its flags (samrepro.checks): a name the
notebook does not have, or a bad value, is a one-line UserError. Where the results go
(results_dir) is decided here too; samrepro.study.report writes them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from tqdm.auto import tqdm

from samrepro import checks
from samrepro.method.allocation import allocation
from samrepro.errors import UserError
from samrepro.study.experiments import RunConfig, run
from samrepro.io.inputs import record as record_inputs
from samrepro.io.models import default_calibration, default_evaluation
from samrepro.io.models import split_model
from samrepro.study.presets import preset

SETTING_KEYS = ("models", "nsamples", "seqlen", "eval_windows", "batch_size", "estimator",
                "probes", "rel_tol", "seeds", "sparsities", "figure3_sparsities",
                "zero_shot_limit", "zero_shot_settings", "allocation_saliencies", "saliency",
                "allocation", "alpha")


def results_dir() -> Path:
    """$SAMREPRO_RESULTS_DIR, else the checkout's results/ (editable install), else ./results."""
    if os.environ.get("SAMREPRO_RESULTS_DIR"):
        return Path(os.environ["SAMREPRO_RESULTS_DIR"])
    checkout = Path(__file__).resolve().parents[2]
    return checkout / "results" if (checkout / "pyproject.toml").exists() else Path("results")


PLACES = ("device", "data_dir", "output_dir")  # where a run computes, reads and writes

# Each notebook's parameters (its `parameters` cell; tests/test_bad_input.py checks the two
# agree): what papermill's `-p name value` may set. Every value's default is the preset's.
_SIZES = ("nsamples", "seqlen", "estimator", "probes", "seeds")
_TABLE = ("sparsities", "alpha", "eval_windows")
PARAMETERS = {
    "table1": ("preset", "models", "allocation", *_TABLE, *_SIZES, *PLACES),
    "table2": ("preset", "models", "saliency", "allocation", *_TABLE, *_SIZES, *PLACES),
    "table3": ("preset", "models", "sparsities", "alpha", "saliency", "zero_shot_limit",
               "zero_shot_settings", *_SIZES, *PLACES),
    "table4": ("preset", "models", "saliency", "allocation", *_TABLE, *_SIZES, *PLACES),
    "figure1": ("preset", "models", *_SIZES, *PLACES),
    "figure2": ("preset", "models", *_SIZES, *PLACES),
    "figure3": ("preset", "models", "saliency", "allocation", *_TABLE, *_SIZES, *PLACES),
    "allocations": ("preset", "models", *_TABLE, *_SIZES, *PLACES),
}
# what a notebook's namespace holds besides its parameters: IPython's own names (and
# papermill's PAPERMILL_INPUT_PATH / _OUTPUT_PATH with --inject-paths)
_IPYTHON = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def settings(preset_name: str | None = None, **overrides) -> dict:
    """The preset's values with every override that is not None applied, checked."""
    values = preset(preset_name)
    unknown = set(overrides) - set(SETTING_KEYS) - set(PLACES)
    if unknown:
        raise UserError(f"unknown settings: {sorted(unknown)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    values.setdefault("device", None)
    values.setdefault("data_dir", None)
    checks.values(values)
    values["output_dir"] = values.get("output_dir") or results_dir()
    values["started"] = time.time()
    return values


def notebook(name: str, namespace: dict, show: bool = True) -> dict:
    """The settings of notebook `name` from its parameters (`namespace`: its globals() after
    the parameters cell and papermill's injected one). A name the notebook has no parameter
    for is refused, naming the ones it has; values are checked by settings(). At the paper
    preset the plan comes first (placement, memory, time of each step; what cannot fit is
    refused); `show` prints one line of what runs."""
    import types

    known = PARAMETERS[name]
    unknown = sorted(k for k, v in namespace.items()
                     if k not in known and k not in _IPYTHON
                     and not k.startswith(("_", "PAPERMILL_"))
                     and not isinstance(v, (types.ModuleType, types.FunctionType, type)))
    if unknown:
        raise UserError(f"{name} has no parameter {', '.join(map(repr, unknown))}: its "
                        f"parameters are {', '.join(known)}")
    values = {k: namespace.get(k) for k in known if k != "preset"}
    s = settings(namespace.get("preset"), **values)
    if s["preset"] == "paper":
        from samrepro.machine import plan

        plan.show(s, lm_eval=name == "table3")
    if show:
        sizes = ", ".join(f"{k} {s[k]}" for k in known if k in SETTING_KEYS)
        print(f"{name} at the {s['preset']} preset: {sizes}")
    return s


def changed(s: dict) -> list[str]:
    """The settings of `s` whose values are not its preset's (a notebook's overrides)."""
    base = preset(s["preset"])
    return [k for k in SETTING_KEYS if k in s and k in base and s[k] != base[k]]


def regression_skip(s: dict) -> str | None:
    """Why the stored regression values (tests/regression/: the smoke preset with its own
    values) are not those of the run `s`; None when they are."""
    if s["preset"] != "smoke":
        return f"is at the {s['preset']} preset"
    if changed(s):
        return f"sets {', '.join(changed(s))}"
    return None


def recorded_settings(s: dict, notebook: str) -> dict:
    """The settings a results file records: SETTING_KEYS, with α as the value used where it
    was left to the method's allocation (0.1 for `paper` and `exact`); None only in
    allocations.ipynb, where every allocation takes its own."""
    recorded = {k: s.get(k) for k in SETTING_KEYS}
    if recorded["alpha"] is None and s.get("allocation") and notebook != "allocations":
        recorded["alpha"] = allocation(s["allocation"]).default_alpha
    return recorded


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
