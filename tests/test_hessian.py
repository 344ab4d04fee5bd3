import pytest
import torch

from samrepro.hessian import HessianAccumulator


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
