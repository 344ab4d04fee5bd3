"""Hutchinson in low precision (issue: per-weight traces near 1e-5 underflow in fp16): on a
model scaled so that its Hessian-vector products sit below fp16's normal range, fp16 without
a loss scale loses them, while the estimator's path (bf16, or fp16 with its dynamic loss
scale; zᵀHz summed in fp32 either way) stays with the float64 reference on the same probes."""

import pytest
import torch

from real_configs import CONFIGS
from samrepro.io.models import tiny_like
from samrepro.method.sensitivity import hutchinson

SCALE = 1e-4  # on the LM head: the Hessian of the earlier weights shrinks by SCALE²
SETTINGS = dict(rel_tol=0.0, min_probes=3, max_probes=3, seed=0, keep_samples=True,
                progress=False)


def scaled_model(dtype):
    model = tiny_like(CONFIGS["huggyllama/llama-7b"], hidden=32, heads=4, vocab_size=64, seed=0)
    with torch.no_grad():
        model.lm_head.weight.mul_(SCALE)  # LLaMA's head is not tied to the embedding
    return model.to(dtype)


def samples(dtype, **kw):
    windows = torch.randint(0, 64, (3, 32), generator=torch.Generator().manual_seed(1))
    result = hutchinson(scaled_model(dtype), windows, **SETTINGS, **kw)
    return torch.tensor([result["samples"][n] for n in result["samples"]]), result


def relative_error(got, reference):
    """The median over matrices and probes of |got - reference| / |reference|: most traces
    are the small ones, which underflow first."""
    return float(((got - reference).abs() / reference.abs()).median())


@pytest.fixture(scope="module")
def reference():
    ref, _ = samples(torch.float64)
    # below fp16's smallest normal number (6.1e-5) as per-weight values: the regime at issue
    assert ref.abs().median() < 1e-6
    return ref


def test_fp16_without_a_loss_scale_underflows(reference):
    got, result = samples(torch.float16, loss_scale=1.0)
    assert result["precision"]["loss_scale"] == 1.0
    assert relative_error(got, reference) > 0.3


def test_bf16_products_with_fp32_sums_keep_the_trace(reference):
    got, result = samples(torch.bfloat16)
    assert result["precision"] == {"hvp_dtype": "bfloat16", "accumulation": "float32",
                                   "loss_scale": 1.0, "loss_scale_backoffs": 0}
    assert relative_error(got, reference) < 0.03


def test_fp16_with_the_dynamic_loss_scale_keeps_the_trace(reference):
    got, result = samples(torch.float16)  # loss_scale="auto"
    assert result["precision"]["loss_scale"] > 1.0
    assert relative_error(got, reference) < 0.03
