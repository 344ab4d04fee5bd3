"""The smoke preset's models (issue 16): one OPT and one LLaMA trained here on PTB, far from
chance, and pruned far apart by the methods, so that the smoke regression checks can see a
broken method (tests/regression/README.md)."""

import pytest
import torch

from samrepro.data import eval_stream, load_corpus, tokenize
from samrepro.evaluate import perplexity
from samrepro.models import PTB_MODELS, load_model
from samrepro.presets import PRESETS
from samrepro.report import DEFAULT_TOLERANCE, TOLERANCES
from samrepro.standin import pruning_check, unigram_perplexity

SMOKE = PRESETS["smoke"]


def test_the_smoke_preset_runs_an_opt_and_a_llama_trained_here():
    assert set(SMOKE["models"]) <= set(PTB_MODELS)
    families = sorted(load_model(name)[0].config.model_type for name in SMOKE["models"])
    assert families == ["llama", "opt"]


@pytest.mark.parametrize("name", SMOKE["models"])
def test_a_smoke_model_predicts_ptb_far_better_than_a_unigram_model(name, data_dir):
    model, tokenizer = load_model(name)
    ids, _ = eval_stream("ptb", tokenizer, SMOKE["seqlen"], data_dir)
    with torch.no_grad():
        dense = perplexity(model, ids, SMOKE["seqlen"], SMOKE["eval_windows"], progress=False)
    train_ids = tokenize(tokenizer, " ".join(load_corpus("ptb", "train", data_dir).docs))
    scored = ids[:dense["windows"] * SMOKE["seqlen"]].view(dense["windows"], -1)[:, 1:]
    unigram = unigram_perplexity(train_ids, scored.reshape(-1), len(tokenizer))
    assert unigram > 300  # not trivially predictable token by token (chance: the vocabulary)
    assert dense["ppl"] < 0.5 * unigram, (dense["ppl"], unigram)


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
