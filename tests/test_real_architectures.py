"""Tiny random models with the real configs' options (models.tiny_like) through pruning,
Hutchinson and perplexity: OPT-350m's projections in and out and post-norm layers, LLaMA-2-70B's
grouped-query attention, and the others as they are. Each result is checked against an
independent computation (zeros counted, torch.func's Hessian-vector product, the model's own
loss)."""

import math

import pytest
import torch
from torch.func import functional_call, grad, jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from real_configs import CONFIGS
from samrepro.io.evaluate import perplexity
from samrepro.machine.memory import shape_of
from samrepro.io.models import prunable_linears, tiny_like
from samrepro.method.pipeline import prune_model
from samrepro.method.sensitivity import draw_probe, hutchinson

# one of each kind: the 7B/13B configs differ from these only in numbers that tiny_like scales
KINDS = ["facebook/opt-125m", "facebook/opt-350m", "huggyllama/llama-7b",
         "meta-llama/Llama-2-70b-hf"]


def ids(n, seqlen=24, seed=0):
    return torch.randint(0, 512, (n, seqlen), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("hub_id", CONFIGS)
def test_tiny_models_keep_the_real_options(hub_id):
    model = tiny_like(CONFIGS[hub_id])
    # the memory model counts what transformers built (projections, norms, biases, GQA)
    assert shape_of(model.config).parameters() == sum(p.numel() for p in model.parameters())
    if hub_id == "facebook/opt-350m":
        decoder = model.model.decoder
        assert decoder.project_in.weight.shape == (64, 32) and decoder.final_layer_norm is None
        assert not decoder.layers[0].do_layer_norm_before  # post-norm
    if hub_id == "meta-llama/Llama-2-70b-hf":
        attention = model.model.layers[0].self_attn
        assert attention.q_proj.weight.shape == (64, 64) and attention.k_proj.weight.shape == (8, 64)


@pytest.mark.parametrize("hub_id", KINDS)
def test_pruning_reaches_each_matrix_target(hub_id):
    model = tiny_like(CONFIGS[hub_id], seed=1)
    linears = prunable_linears(model)
    targets = {name: (0.4 if i % 2 else 0.6) for i, name in enumerate(linears)}
    prune_model(model, ids(4), targets, saliency="isc", batch_size=2, progress=False)
    for name, linear in linears.items():
        zeros = int((linear.weight == 0).sum())
        assert zeros / linear.weight.numel() == pytest.approx(targets[name], abs=0.02), name


@pytest.mark.parametrize("hub_id", KINDS)
def test_hutchinson_samples_are_torch_func_hessian_vector_products(hub_id):
    model = tiny_like(CONFIGS[hub_id], seed=2).double()
    windows = ids(2, seed=3)
    got = hutchinson(model, windows, rel_tol=0.0, min_probes=2, max_probes=3, seed=5,
                     keep_samples=True, progress=False)["samples"]
    names = list(prunable_linears(model))
    weights = {f"{n}.weight": model.get_submodule(n).weight.detach() for n in names}
    k = 2  # probe 2 runs on batch 0
    z = {key: draw_probe(5, k, j, w) for j, (key, w) in enumerate(weights.items())}
    batch = windows[k % 2][None]

    def loss(ws):
        return functional_call(model, ws, args=(), kwargs={"input_ids": batch,
                                                            "labels": batch}).loss

    with sdpa_kernel(SDPBackend.MATH), torch.no_grad():
        _, hz = jvp(grad(loss), (weights,), (z,))
    for n in names:
        key = f"{n}.weight"
        expected = float((z[key] * hz[key]).sum()) / z[key].numel()
        assert got[n][k] == pytest.approx(expected, rel=1e-5, abs=1e-12), n


@pytest.mark.parametrize("hub_id", KINDS)
def test_perplexity_is_the_models_own_loss(hub_id):
    model = tiny_like(CONFIGS[hub_id], seed=4)
    stream = ids(1, seqlen=3 * 16 + 5).flatten()
    got = perplexity(model, stream, 16, progress=False)
    with torch.no_grad():
        losses = [float(model(input_ids=w[None], labels=w[None]).loss)
                  for w in stream[:48].view(3, 16)]
    assert got["windows"] == 3
    assert got["ppl"] == pytest.approx(math.exp(sum(losses) / 3), rel=1e-5)
