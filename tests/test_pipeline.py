"""The layer-by-layer pass against a plain re-implementation with full-model forwards."""

import pytest
import torch
from reference import reference_prune

from samrepro.errors import UserError
from samrepro.io.models import count_zeros, decoder_layers, prunable_linears, tiny_model
from samrepro.method.pipeline import prune_model


def windows(vocab, n=6, seqlen=24, seed=0):
    return torch.randint(0, vocab, (n, seqlen), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", ["llama", "opt"])
@pytest.mark.parametrize("saliency", ["obs", "isc"])
def test_pipeline_matches_full_forward_reference(family, saliency):
    model = tiny_model(family, vocab_size=101, seed=3)
    reference = tiny_model(family, vocab_size=101, seed=3)
    ids = windows(101)
    names = prunable_linears(model)
    prune_model(model, ids, {n: 0.5 for n in names}, saliency, batch_size=4, progress=False)
    reference_prune(reference, ids, 0.5, saliency)
    for name, linear in names.items():
        ref = reference.get_submodule(name).weight
        assert ((linear.weight == 0) == (ref == 0)).float().mean() > 0.99, name
        torch.testing.assert_close(linear.weight, ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_prunes_every_prunable_linear_and_nothing_else(family):
    model = tiny_model(family, vocab_size=101, seed=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = prunable_linears(model)
    expected = {"llama": 7, "opt": 6}[family] * len(decoder_layers(model))
    assert len(names) == expected
    report = prune_model(model, windows(101), {n: 0.5 for n in names}, progress=False)
    weights = {f"{n}.weight" for n in names}
    for key, value in model.state_dict().items():
        if key in weights:
            assert (value == 0).float().mean().item() == 0.5, key
            assert not torch.equal(value, before[key]), key
        else:
            assert torch.equal(value, before[key]), key  # embeddings, norms, biases, head
    zeros, total = count_zeros(model)
    assert zeros / total == 0.5  # achieved sparsity = the request
    assert set(report["matrices"]) == set(names)
    assert report["tokens"] == 6 * 24


def test_per_matrix_sparsities_are_honoured():
    model = tiny_model("llama", vocab_size=101, seed=5)
    names = list(prunable_linears(model))
    targets = {n: [0.25, 0.5, 0.75][k % 3] for k, n in enumerate(names)}
    prune_model(model, windows(101), targets, "isc", progress=False)
    for name, linear in prunable_linears(model).items():
        assert (linear.weight == 0).float().mean().item() == pytest.approx(targets[name], abs=2e-3)


def test_sparsity_dict_must_name_every_prunable_matrix():
    model = tiny_model("llama", vocab_size=101)
    names = list(prunable_linears(model))
    with pytest.raises(UserError, match="missing"):
        prune_model(model, windows(101), {n: 0.5 for n in names[1:]}, progress=False)
    with pytest.raises(UserError, match=r"\[0, 1\)"):
        prune_model(model, windows(101), {n: 1.5 for n in names}, progress=False)
