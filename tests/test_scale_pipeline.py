"""Pruning at scale: offloaded activations and half-precision weights (fp32 maths)."""

import pytest
import torch

from samrepro.method import pipeline
from samrepro.io.models import prunable_linears, tiny_model
from samrepro.method.pipeline import activations_home, prune_model
from reference import reference_prune


def windows(vocab=101, n=6, seqlen=24):
    return torch.randint(0, vocab, (n, seqlen), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("family", ["llama", "opt"])
def test_offloaded_and_on_device_activations_prune_alike(family, monkeypatch):
    homes = []
    real = pipeline.activations_home
    monkeypatch.setattr(pipeline, "activations_home",
                        lambda *a: homes.append(a[1]) or real(*a))
    pruned = []
    for offload in (False, True):
        model = tiny_model(family, vocab_size=101, seed=7)
        prune_model(model, windows(), {n: 0.5 for n in prunable_linears(model)}, "isc",
                    batch_size=4, progress=False, offload_activations=offload)
        pruned.append({n: l.weight.clone() for n, l in prunable_linears(model).items()})
    assert homes == [False, True]  # both paths taken
    for name in pruned[0]:
        assert torch.equal(pruned[0][name], pruned[1][name]), name


def test_automatic_placement_keeps_activations_on_a_cpu_device():
    model = tiny_model("llama", vocab_size=101)
    cpu = torch.device("cpu")
    assert activations_home(cpu, None, model, windows(), 4) == cpu
    assert activations_home(cpu, True, model, windows(), 4) == cpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_offload_keeps_activations_on_the_host_with_a_gpu():
    model = tiny_model("llama", vocab_size=101)
    assert activations_home(torch.device("cuda"), True, model, windows(), 4).type == "cpu"
    assert activations_home(torch.device("cuda"), False, model, windows(), 4).type == "cuda"


def test_bf16_model_prunes_with_fp32_hessians_and_solver(monkeypatch):
    """The pipeline on a bf16 model against a reference that builds H in fp64 from the bf16
    inputs each linear sees and solves in fp32 (prune_weight on W.float()); a solve in bf16
    would differ by far more than the bf16 rounding of the result."""
    seen = []
    real = pipeline.prune_weights
    monkeypatch.setattr(pipeline, "prune_weights",
                        lambda Ws, H, *a: seen.append((Ws[0].dtype, H.dtype)) or real(Ws, H, *a))
    model = tiny_model("llama", vocab_size=101, seed=9).to(torch.bfloat16)
    reference = tiny_model("llama", vocab_size=101, seed=9).to(torch.bfloat16)
    ids = windows()
    prune_model(model, ids, {n: 0.5 for n in prunable_linears(model)}, "obs", batch_size=6,
                progress=False)
    assert seen and all(w == torch.bfloat16 and h == torch.float32 for w, h in seen)
    reference_prune(reference, ids, 0.5, "obs")
    for name, linear in prunable_linears(model).items():
        ref = reference.get_submodule(name).weight
        assert linear.weight.dtype == torch.bfloat16
        assert ((linear.weight == 0) == (ref == 0)).float().mean() > 0.98, name
        close = torch.isclose(linear.weight.float(), ref.float(), rtol=0.02, atol=0.02)
        assert close.float().mean() > 0.99, name  # a mask flip here and there (bf16 inputs)
