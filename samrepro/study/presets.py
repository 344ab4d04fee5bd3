"""One code path at three sizes (docs/glossary.md): `smoke` (CI, nbval), `embedded` (a 2-core CPU,
offline, SmolLM2-135M) and `paper` (GPUs with hub access, docs/method.md §6 exactly).

A notebook's parameters cell names the preset (or SAMREPRO_PRESET does) and may override any
of these values.
"""

from __future__ import annotations

import os

from samrepro.errors import UserError

PRESETS: dict[str, dict] = {
    "smoke": {
        # a tiny OPT and a tiny LLaMA trained here on PTB (samrepro.standin, their model cards
        # in samrepro/checkpoints/): a run takes seconds, and their perplexities are far from
        # chance and far apart between the methods, so that a broken method moves the smoke
        # regression values (tests/regression/README.md, tests/test_smoke_models.py)
        "models": ["smoke-opt", "smoke-llama"],
        "nsamples": 8, "seqlen": 128, "eval_windows": 4, "batch_size": 8,
        # the mixed rows take the Fisher proxy (one backward a window, never negative: 4
        # Hutchinson probes can give a small trace the wrong sign); Figures 1 and 2 estimate
        # Hutchinson's traces
        "estimator": "fisher", "probes": 4, "rel_tol": 1.0, "seeds": 2,
        "sparsities": [0.5], "figure3_sparsities": [0.5, 0.8], "zero_shot_limit": 2,
        "zero_shot_settings": ["zero-shot"],  # the leaderboard's 25-shot prompts: unit tests
        "allocation_saliencies": ["isc"],
    },
    "embedded": {
        # SmolLM2-135M (a LLaMA) and the OPT stand-in (samrepro.standin: a small OPT trained
        # here on PTB, calibrated on PTB; not an OPT checkpoint)
        "models": ["embedded", "opt-ptb-standin"],
        # sized for a 2-core CPU with a bf16 unit: per seed, a 16-probe Hutchinson estimate
        # (~6 s a probe) and 4 runs of ~45 s for table1.ipynb. 32 evaluation windows a stream
        # cost ~15 s a run and quarter the window part of a comparison's variance against 8
        # (measured on Table 1, docs/method.md §7); the seed part needs more seeds
        # (`seeds=N`, ~4.5 minutes a seed for Table 1)
        "nsamples": 16, "seqlen": 512, "eval_windows": 32, "batch_size": 8,
        "estimator": "hutchinson", "probes": 16, "rel_tol": 0.2, "seeds": 3,
        "sparsities": [0.5, 0.6, 0.7], "figure3_sparsities": [0.5, 0.6, 0.7, 0.8],
        # allocations.ipynb: the method's saliency only (8 allocations × 3 sparsities × seeds,
        # ~2.5 min a SmolLM2 run on AVX512-BF16); Table 1 crosses the paper's allocations
        # with OBS too
        "allocation_saliencies": ["isc"],
        "zero_shot_limit": 10,  # documents a task: ~15 CPU-minutes a model for both settings
        "zero_shot_settings": ["zero-shot", "leaderboard"],
    },
    "paper": {
        "models": ["huggyllama/llama-7b", "meta-llama/Llama-2-7b-hf", "facebook/opt-1.3b"],
        "nsamples": 128, "seqlen": 2048, "eval_windows": None, "batch_size": 1,
        "estimator": "hutchinson", "probes": 200, "rel_tol": 0.1, "seeds": 1,
        "sparsities": [0.5, 0.6, 0.7], "figure3_sparsities": [0.5, 0.6, 0.7, 0.8],
        "allocation_saliencies": ["obs", "isc"],
        "zero_shot_limit": None,
        "zero_shot_settings": ["zero-shot", "leaderboard"],
    },
}


# "The method" in the tables' rows, the same at every size (docs/method.md: the paper's version by
# default): ISC saliency, Algorithm 1 as printed, α = None (0.1). Table 3 keeps its exact
# allocation, as the paper's Table 3 does; Table 1 crosses every allocation with every saliency.
METHOD = {"saliency": "isc", "allocation": "paper", "alpha": None}


def preset(name: str | None = None) -> dict:
    """The named preset (default: $SAMREPRO_PRESET, else `embedded`), as a fresh dict."""
    name = name or os.environ.get("SAMREPRO_PRESET") or "embedded"
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}: choose from {', '.join(PRESETS)}")
    return {"preset": name, **METHOD, **{k: list(v) if isinstance(v, list) else v
                                         for k, v in PRESETS[name].items()}}
