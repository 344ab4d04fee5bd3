"""Defaults that follow the model: a window length the user did not set never refuses a model
whose context is shorter than the paper's 2048 tokens, and only what a run uses is checked."""

import json

import pytest
import torch

from samrepro.commands.cli import main
from samrepro.errors import UserError
from samrepro.study.experiments import RunConfig, load
from samrepro.io.models import DEFAULT_SEQLEN, default_seqlen, embedded_checkpoint, load_tokenizer

CONTEXT = 256


@pytest.fixture(scope="module")
def short_model(tmp_path_factory):
    """A tiny random OPT whose context is 256 tokens, saved as a local checkpoint."""
    from transformers import OPTConfig, OPTForCausalLM

    tokenizer = load_tokenizer(str(embedded_checkpoint()))
    torch.manual_seed(0)
    config = OPTConfig(vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64,
                       num_hidden_layers=1, num_attention_heads=2, word_embed_proj_dim=32,
                       max_position_embeddings=CONTEXT)
    folder = tmp_path_factory.mktemp("short-context")
    OPTForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_the_default_window_is_2048_or_the_shorter_context(short_model):
    assert default_seqlen(short_model) == CONTEXT
    assert default_seqlen("tiny-llama") == DEFAULT_SEQLEN == 2048
    assert default_seqlen("opt-ptb-standin") == 512  # the stand-in's context
    assert default_seqlen("no/such-model-here") == DEFAULT_SEQLEN  # loading says what is wrong


def test_eval_of_a_short_context_model_needs_no_seqlen(short_model, tmp_path, data_dir):
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", short_model, "--tasks", "piqa", "--limit", "1", "--quiet",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["accuracy"]["zero-shot"]["piqa"]["documents"] == 1
    assert result["config"]["seqlen"] == CONTEXT


def test_prune_of_a_short_context_model_uses_its_context_as_the_window(short_model, tmp_path,
                                                                      data_dir):
    out = tmp_path / "prune.json"
    assert main(["prune", "--model", short_model, "--sparsity", "0.5", "--nsamples", "2",
                 "--eval", "ptb", "--eval-windows", "1", "--quiet", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["config"]["seqlen"] == CONTEXT
    assert result["perplexity"]["ptb"]["tokens"] == CONTEXT - 1  # one window of 256


def test_a_window_the_user_set_beyond_the_context_is_still_refused(short_model, tmp_path,
                                                                   capsys):
    out = tmp_path / "never.json"
    assert main(["prune", "--model", short_model, "--sparsity", "0.5", "--seqlen", "2048",
                 "--nsamples", "2", "--eval", "ptb", "--quiet", "--json", str(out)]) == 2
    assert "exceeds the model's context of 256" in capsys.readouterr().err
    assert not out.exists()


def test_only_a_window_that_is_used_is_checked(short_model):
    unused = RunConfig(model=short_model, sparsity=0.0, seqlen=4096, eval=())
    load(unused, torch.device("cpu"))  # no calibration, no perplexity: nothing to refuse
    for used in (RunConfig(model=short_model, sparsity=0.0, seqlen=4096, eval=("ptb",)),
                 RunConfig(model=short_model, sparsity=0.5, seqlen=4096, eval=()),
                 RunConfig(model=short_model, sparsity=0.0, wbits=4, seqlen=4096, eval=())):
        with pytest.raises(UserError, match="exceeds the model's context"):
            load(used, torch.device("cpu"))
