"""Sensitivity estimators against exact Hessians and direct gradients (docs/method.md §3)."""

import pytest
import torch
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from samrepro.errors import UserError
from samrepro.io.models import prunable_linears, tiny_model
from samrepro.method.pipeline import layer_hessian_diagonals
from samrepro.method.sensitivity import fisher, hutchinson, layer_sensitivity, owl_outliers

NAME = "model.layers.0.self_attn.v_proj"  # a clearly non-zero trace at this init


def tiny():
    return tiny_model("llama", vocab_size=32, num_layers=1, hidden=16, seed=0).double()


def ids(n=1, seqlen=12, seed=0):
    return torch.randint(0, 32, (n, seqlen), generator=torch.Generator().manual_seed(seed))


def exact_average_trace(model, window, name):
    weight = model.get_submodule(name).weight.detach()

    def loss(w):
        out = functional_call(model, {f"{name}.weight": w}, args=(),
                              kwargs={"input_ids": window, "labels": window})
        return out.loss

    with sdpa_kernel(SDPBackend.MATH):
        H = torch.autograd.functional.hessian(loss, weight)
    n = weight.numel()
    return float(H.reshape(n, n).diagonal().sum()) / n


@pytest.mark.parametrize("distribution", ["gaussian", "rademacher"])
def test_hutchinson_is_within_three_standard_errors_of_the_exact_trace(distribution):
    model, window = tiny(), ids()
    exact = exact_average_trace(model, window, NAME)
    est = hutchinson(model, window, rel_tol=0.0, max_probes=400, distribution=distribution,
                     progress=False)["matrices"][NAME]
    assert abs(est["trace"] - exact) < 3 * est["stderr"]
    assert est["stderr"] < 0.5 * abs(exact)  # and the estimate is informative


def test_hutchinson_standard_error_shrinks_like_one_over_sqrt_probes():
    model, window = tiny(), ids()
    few = hutchinson(model, window, rel_tol=0.0, max_probes=50, progress=False, seed=1)
    many = hutchinson(model, window, rel_tol=0.0, max_probes=800, progress=False, seed=1)
    ratios = [few["matrices"][k]["stderr"] / many["matrices"][k]["stderr"] for k in few["matrices"]]
    median = sorted(ratios)[len(ratios) // 2]
    assert 4 * 0.75 < median < 4 * 1.25  # √(800/50) = 4


def test_hutchinson_stops_on_tolerance_and_bad_options_are_refused():
    model, window = tiny(), ids()
    result = hutchinson(model, window, rel_tol=10.0, min_probes=5, max_probes=100, progress=False)
    assert result["probes"] == 5 and result["rel_stderr_q90"] <= 10.0
    with pytest.raises(UserError, match="distribution"):
        hutchinson(model, window, distribution="uniform", progress=False)
    assert all(p.requires_grad for p in model.parameters())  # the model is left as it was


def test_fisher_is_the_mean_of_squared_per_window_gradients():
    model, windows = tiny(), ids(n=3)
    got = fisher(model, windows, progress=False)["matrices"]
    for name, linear in prunable_linears(model).items():
        per_window = []
        for w in windows:
            model.zero_grad()
            model(input_ids=w[None], labels=w[None]).loss.backward()
            per_window.append(float(linear.weight.grad.square().mean()))
        assert got[name]["trace"] == pytest.approx(sum(per_window) / 3, rel=1e-6)


def test_owl_outliers_count_weights_above_m_times_the_layer_mean():
    model, windows = tiny_model("llama", vocab_size=32, num_layers=2, seed=1), ids(n=2, seqlen=16)
    linears = prunable_linears(model)
    norms = {}
    hooks = [linear.register_forward_hook(lambda m, i, o, n=name: norms.__setitem__(
        n, i[0].reshape(-1, i[0].shape[-1]).norm(dim=0))) for name, linear in linears.items()]
    with torch.no_grad():
        model(input_ids=windows)  # one batch holds every token: ‖X_j‖ over all of them
    for h in hooks:
        h.remove()
    got = owl_outliers(model, layer_hessian_diagonals(model, windows, progress=False), m=2.0)
    for layer in ("model.layers.0", "model.layers.1"):
        names = [n for n in linears if n.startswith(layer + ".")]
        scores = {n: linears[n].weight.abs() * norms[n] for n in names}
        mean = torch.cat([s.flatten() for s in scores.values()]).mean()
        for n in names:
            assert got[n] == float((scores[n] > 2.0 * mean).sum())
    assert sum(got.values()) > 0


def test_layer_sensitivity_sums_each_layers_matrices():
    got = layer_sensitivity({"m.layers.0.a": 1.0, "m.layers.0.b": 2.0, "m.layers.1.a": 0.5})
    assert got == {"m.layers.0": 3.0, "m.layers.1": 0.5}


# ---- the layer-by-layer Hessian-vector product against the whole model's double backward ---

def _samples(model, windows, row_function, probes=2, seed=0):
    """Per-probe zᵀHz/n_W rows of `row_function` on the same probes and windows."""
    from samrepro.method import sensitivity

    rows = []
    with sensitivity._OnlyWeightsTrainable(model) as params:
        for k in range(probes):
            rows.append(row_function(model, params, windows[k % len(windows)][None],
                                     lambda i, p, k=k: sensitivity.draw_probe(seed, k, i, p)))
    return torch.stack(rows)


def _family_models():
    from real_configs import CONFIGS

    from samrepro.io.models import tiny_like

    return {
        "llama-gqa": lambda: tiny_model("llama", vocab_size=64, num_layers=3, hidden=32, seed=0),
        "opt": lambda: tiny_model("opt", vocab_size=64, num_layers=3, hidden=32, seed=0),
        # post-norm layers and projections in and out of a narrower embedding (in the head)
        "opt-350m-like": lambda: tiny_like(CONFIGS["facebook/opt-350m"], hidden=32, heads=4,
                                           num_layers=2, vocab_size=64, seed=0),
        "llama-2-70b-like": lambda: tiny_like(CONFIGS["meta-llama/Llama-2-70b-hf"], hidden=64,
                                              heads=8, num_layers=2, vocab_size=64, seed=0),
    }


@pytest.mark.parametrize("family", ["llama-gqa", "opt", "opt-350m-like", "llama-2-70b-like"])
def test_layer_by_layer_samples_equal_the_whole_model_double_backward(family, monkeypatch):
    from samrepro.method import sensitivity

    monkeypatch.setattr(sensitivity, "HEAD_CHUNK", 7)  # the head in several token chunks
    model = _family_models()[family]().float()
    windows = ids(n=2, seqlen=20, seed=3) % 64
    reference = _samples(model, windows, sensitivity.probe_row_whole_model)
    layered = _samples(model, windows, sensitivity.probe_row)
    assert reference.abs().min() > 0  # every matrix has a sample to compare
    assert torch.allclose(layered, reference, rtol=1e-5, atol=1e-7 * float(reference.abs().max()))
    assert all(p.requires_grad for p in model.parameters())  # the model is left as it was


def test_layer_by_layer_bf16_is_within_two_standard_errors_of_fp32():
    from samrepro.io.models import load_model

    windows = ids(n=4, seqlen=48, seed=5) % 1000
    settings = dict(rel_tol=0.0, max_probes=16, progress=False, seed=2)
    fp32 = hutchinson(load_model("smoke-llama")[0], windows, **settings)["matrices"]
    bf16 = hutchinson(load_model("smoke-llama", torch.bfloat16)[0], windows, **settings)
    assert bf16["precision"]["hvp_dtype"] == "bfloat16"
    for name, exact in fp32.items():
        assert abs(bf16["matrices"][name]["trace"] - exact["trace"]) <= 2 * exact["stderr"], name


def test_streamed_layers_visit_the_device_in_turn_and_give_the_same_samples(monkeypatch):
    """models.streaming (plan: weights streamed from host RAM): each decoder layer is
    moved to the device twice a probe (forward and reverse sweeps), the samples unchanged."""
    from samrepro.io import models
    from samrepro.method import sensitivity

    model = _family_models()["llama-gqa"]().float()
    windows = ids(n=2, seqlen=20, seed=3) % 64
    plain = _samples(model, windows, sensitivity.probe_row)
    visits, real = [], sensitivity.visiting
    monkeypatch.setattr(sensitivity, "visiting",
                        lambda layer, device: visits.append((id(layer), device)) or
                        real(layer, device))
    with models.streaming(model, "cpu"):
        streamed = _samples(model, windows, sensitivity.probe_row)
    assert torch.equal(streamed, plain)
    layers = [id(layer) for layer in model.model.layers]
    assert sorted(visits) == sorted((i, torch.device("cpu")) for i in layers * 2 * 2)
    assert not hasattr(model, models.STREAM_ATTRIBUTE)


@pytest.mark.parametrize("dtype, before, inside", [
    (torch.bfloat16, False, True),   # bf16: the math attention stays in bf16
    (torch.float16, False, False),   # fp16 (loss-scaled): upcast to fp32 as torch does
    (torch.float32, False, False),
    (torch.float16, True, True),     # a value set outside is kept, and restored
])
def test_probe_sets_the_math_attention_reduction_flag_and_restores_it(dtype, before, inside,
                                                                      monkeypatch):
    flags, real = torch.backends.cuda, torch.nn.functional.scaled_dot_product_attention
    seen = []
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", lambda *a, **k: (
        seen.append(flags.fp16_bf16_reduction_math_sdp_allowed()) or real(*a, **k)))
    flags.allow_fp16_bf16_reduction_math_sdp(before)
    try:
        model = tiny_model("llama", vocab_size=32, num_layers=1, hidden=16, seed=0).to(dtype)
        hutchinson(model, ids(), rel_tol=0.0, max_probes=2, progress=False)
        assert seen and set(seen) == {inside}
        assert flags.fp16_bf16_reduction_math_sdp_allowed() == before
    finally:
        flags.allow_fp16_bf16_reduction_math_sdp(False)
