import pytest
import torch

from samrepro.method.hessian import HessianAccumulator


@pytest.mark.parametrize("features", [5, 300])  # one block, and several (BLOCK = 128)
def test_running_mean_equals_2XXT_over_all_tokens(features):
    g = torch.Generator().manual_seed(0)
    batches = [torch.randn(3, 7, features, generator=g), torch.randn(1, 4, features, generator=g),
               torch.randn(2, 9, features, generator=g)]
    acc = HessianAccumulator(features)
    for batch in batches:
        acc.add(batch)
    X = torch.cat([b.reshape(-1, features) for b in batches]).double()
    expected = 2 * X.T @ X / X.shape[0]
    assert acc.tokens == X.shape[0]
    torch.testing.assert_close(acc.H.double(), expected, rtol=1e-5, atol=1e-6)


def test_accumulates_in_fp32_from_half_inputs():
    acc = HessianAccumulator(4)
    acc.add(torch.ones(2, 4, dtype=torch.float16))
    assert acc.H.dtype == torch.float32
    torch.testing.assert_close(acc.H, torch.full((4, 4), 2.0))


@pytest.mark.parametrize("amx", [True, False])
@pytest.mark.parametrize("features", [5, 300])
def test_bf16_inputs_give_the_fp64_H_of_those_inputs(features, amx, monkeypatch):
    """Both paths for bf16 inputs (one product on the bf16 unit with AMX, else the fp32
    block triangle) multiply bf16 numbers exactly and add in fp32: H equals the float64
    2XXᵀ/n of the bf16 inputs to fp32 accuracy (a product rounded to bf16 would be off by
    ~1e-3)."""
    import samrepro.method.hessian

    monkeypatch.setattr(samrepro.method.hessian, "has_amx", lambda: amx)
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(2, 64, features, generator=g).bfloat16() for _ in range(3)]
    acc = HessianAccumulator(features)
    for batch in batches:
        acc.add(batch)
    X = torch.cat([b.reshape(-1, features) for b in batches]).double()
    expected = 2 * X.T @ X / X.shape[0]
    assert acc.H.dtype == torch.float32
    torch.testing.assert_close(acc.H.double(), expected, rtol=1e-5, atol=1e-5)


def test_bf16_activations_give_H_within_1e3_of_the_fp32_activations():
    """Issue 15: a bf16 model's activations (the fp32 ones rounded) give an H within 1e-3
    relative (Frobenius) of the fp32 H of the same activations."""
    g = torch.Generator().manual_seed(2)
    X = torch.randn(4096, 576, generator=g) * torch.linspace(0.1, 3.0, 576)  # uneven scales
    fp32, bf16 = HessianAccumulator(576), HessianAccumulator(576)
    fp32.add(X)
    bf16.add(X.bfloat16())
    error = (bf16.H - fp32.H).norm() / fp32.H.norm()
    assert error < 1e-3, float(error)
