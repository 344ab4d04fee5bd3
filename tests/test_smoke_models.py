"""The smoke preset's models (issue 16): one OPT and one LLaMA trained here on PTB, far from
chance (tests/test_standin.py checks each against a unigram model), and pruned far apart by
the methods, so that the smoke regression checks can see a broken method
(tests/regression/README.md)."""

import pytest

from samrepro.io.models import PTB_MODELS, load_model
from samrepro.study.presets import PRESETS
from samrepro.study.report import DEFAULT_TOLERANCE, TOLERANCES
from samrepro.standin import pruning_check

SMOKE = PRESETS["smoke"]


def test_the_smoke_preset_runs_an_opt_and_a_llama_trained_here():
    assert set(SMOKE["models"]) <= set(PTB_MODELS)
    families = sorted(load_model(name)[0].config.model_type for name in SMOKE["models"])
    assert families == ["llama", "opt"]


@pytest.mark.parametrize("name", SMOKE["models"])
def test_pruning_moves_a_smoke_model_far_beyond_the_regression_tolerance(name, data_dir):
    """Issue 16: at the smoke sizes, SparseGPT 50% is worse than dense, and magnitude 50% worse
    than SparseGPT, each by more than 10× Table 2's regression tolerance (relative)."""
    rtol = TOLERANCES.get("table2", DEFAULT_TOLERANCE)[0]
    check = pruning_check(name, (0.5,), ("magnitude", "obs"), nsamples=SMOKE["nsamples"],
                          seqlen=SMOKE["seqlen"], eval_windows=SMOKE["eval_windows"],
                          data_dir=data_dir)
    dense = check["dense"]
    sparsegpt = check["rows"]["SparseGPT (OBS)"]["0.5"]
    magnitude = check["rows"]["magnitude"]["0.5"]
    assert sparsegpt > dense * (1 + 10 * rtol), check
    assert magnitude > sparsegpt * (1 + 10 * rtol), check
