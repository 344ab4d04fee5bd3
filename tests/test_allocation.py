"""Algorithm 1 and its variants (docs/method.md §4) against hand computations."""

import math

import numpy as np
import pytest

from samrepro.method.allocation import allocate, overall_sparsity
from samrepro.errors import UserError

# Two LLaMA-like layers: attention matrices smaller than MLP ones, as in LLaMA-7B.
SIZES = {f"model.layers.{i}.{m}": size for i in range(2)
         for m, size in (("self_attn.q_proj", 16), ("self_attn.v_proj", 16),
                         ("mlp.up_proj", 43), ("mlp.down_proj", 43))}
SENS = dict(zip(SIZES, [0.3, 2.0, 0.1, 1.5, 0.25, 3.0, 0.05, 0.9]))


def test_paper_is_linear_in_rank_from_p_plus_alpha_to_p_minus_alpha():
    got = allocate(SENS, SIZES, 0.5, 0.1, "paper")
    by_sensitivity = sorted(SENS, key=SENS.get)  # least sensitive first
    expected = np.linspace(0.6, 0.4, len(SENS))  # sparsity p+α … p−α
    for name, value in zip(by_sensitivity, expected):
        assert got[name] == pytest.approx(value)
    assert got[max(SENS, key=SENS.get)] == pytest.approx(0.4)


def test_paper_overall_sparsity_drifts_with_unequal_sizes():
    got = allocate(SENS, SIZES, 0.5, 0.1, "paper")
    assert sum(got.values()) / len(got) == pytest.approx(0.5)  # unweighted mean is p …
    assert abs(overall_sparsity(got, SIZES) - 0.5) > 1e-3  # … the parameter-weighted one is not


@pytest.mark.parametrize("p, alpha", [(0.5, 0.1), (0.7, 0.2), (0.6, 0.05)])
def test_exact_hits_p_stays_in_range_and_is_monotone(p, alpha):
    got = allocate(SENS, SIZES, p, alpha, "exact")
    assert overall_sparsity(got, SIZES) == pytest.approx(p, abs=1e-4)
    assert all(p - alpha - 1e-12 <= v <= p + alpha + 1e-12 for v in got.values())
    order = sorted(SENS, key=SENS.get)
    values = [got[name] for name in order]
    assert all(a >= b - 1e-12 for a, b in zip(values, values[1:]))  # more sensitive, less pruned


def test_layer_gives_every_matrix_of_a_layer_the_same_value():
    got = allocate(SENS, SIZES, 0.5, 0.1, "layer")
    layer0 = {v for k, v in got.items() if ".layers.0." in k}
    layer1 = {v for k, v in got.items() if ".layers.1." in k}
    assert len(layer0) == len(layer1) == 1
    # layer 1 sums to 4.2 > layer 0's 3.9: more sensitive, so p − α; layer 0 gets p + α
    assert layer1.pop() == pytest.approx(0.4) and layer0.pop() == pytest.approx(0.6)


def test_owl_follows_its_definition_on_a_hand_built_case():
    sizes = {f"m.layers.{i}.fc": 100 for i in range(3)}
    outliers = {"m.layers.0.fc": 2.0, "m.layers.1.fc": 10.0, "m.layers.2.fc": 4.0}
    got = allocate(outliers, sizes, 0.5, 0.08, "owl")
    # ratios .02, .10, .04 → (D−min)/(max−min)·2λ = 0, .16, .04 → −mean(.0667) + (1−p)
    density = [0 - 0.2 / 3 + 0.5, 0.16 - 0.2 / 3 + 0.5, 0.04 - 0.2 / 3 + 0.5]
    for i, d in enumerate(density):
        assert got[f"m.layers.{i}.fc"] == pytest.approx(1 - d)


def test_uniform_is_p_everywhere():
    assert set(allocate({}, SIZES, 0.3, 0.1, "uniform").values()) == {0.3}


@pytest.mark.parametrize("sens, p, alpha, message", [
    (SENS, 0.5, -0.1, "alpha must be"),
    (SENS, 0.5, 0.6, "too wide"),
    (SENS, 0.95, 0.1, "too wide"),
    (SENS, 1.2, 0.1, "[0, 1)"),
    ({k: v for k, v in list(SENS.items())[1:]}, 0.5, 0.1, "no sensitivity"),
    ({**SENS, "model.layers.0.mlp.up_proj": math.nan}, 0.5, 0.1, "finite number"),
    ({**SENS, "model.layers.0.mlp.up_proj": -1.0}, 0.5, 0.1, "finite number"),
])
def test_bad_input_is_refused_not_clipped(sens, p, alpha, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace(")", r"\)")):
        allocate(sens, SIZES, p, alpha, "exact")


def test_unknown_method():
    with pytest.raises(UserError, match="unknown allocation"):
        allocate(SENS, SIZES, 0.5, 0.1, "shuffled")


def test_negative_estimates_within_noise_count_as_zero_and_are_listed():
    from samrepro.method.allocation import floored, traces

    estimate = {"matrices": {"a": {"trace": -1e-6, "stderr": 1e-6},   # noise around 0
                             "b": {"trace": 2e-5, "stderr": 1e-6},
                             "c": {"trace": -5e-6, "stderr": 1e-6}}}  # 5 SE below 0: real
    assert traces(estimate) == {"a": 0.0, "b": 2e-5, "c": -5e-6}
    assert floored(estimate) == ["a"]
    with pytest.raises(UserError, match="finite number"):
        allocate(traces(estimate), {k: 1 for k in "abc"}, 0.5, 0.1, "paper")


def test_paper_code_is_the_authors_formula_on_five_matrices():
    """density 0.4 + rank·(U − 0.4)/(N − 1), U = 2(1 − p) − 0.4, by hand for N = 5."""
    sizes = {f"model.layers.{i}.mlp.down_proj": 10 for i in range(5)}
    sens = dict(zip(sizes, [0.5, 0.1, 0.9, 0.3, 0.7]))  # ranks 2, 0, 4, 1, 3
    at_70 = allocate(sens, sizes, 0.7, 0.1, "paper-code")
    # U = 0.2: densities by rank 0.4, 0.35, 0.3, 0.25, 0.2 → sparsities 0.6 … 0.8
    expected = {0: 0.7, 1: 0.6, 2: 0.8, 3: 0.65, 4: 0.75}
    for i, name in enumerate(sizes):
        assert at_70[name] == pytest.approx(expected[i])
    assert max(at_70, key=at_70.get) == max(sens, key=sens.get)  # most sensitive, most pruned
    assert all(v == pytest.approx(0.6) for v in allocate(sens, sizes, 0.6, 0.1, "paper-code").values())
    at_50 = allocate(sens, sizes, 0.5, 0.1, "paper-code")
    for name, value in allocate(sens, sizes, 0.5, 0.1, "paper").items():
        assert at_50[name] == pytest.approx(value)  # Algorithm 1 at p = 0.5
    with pytest.raises(UserError, match="p < 0.8"):
        allocate(sens, sizes, 0.8, 0.1, "paper-code")


def test_random_control_keeps_the_overall_sparsity_and_its_ranking_follows_the_seed():
    a = allocate({}, SIZES, 0.5, 0.1, "random", seed=0)
    b = allocate({}, SIZES, 0.5, 0.1, "random", seed=1)
    exact = allocate(SENS, SIZES, 0.5, 0.1, "exact")
    for got in (a, b):
        assert overall_sparsity(got, SIZES) == pytest.approx(overall_sparsity(exact, SIZES), abs=1e-4)
        assert overall_sparsity(got, SIZES) == pytest.approx(0.5, abs=1e-4)
        assert all(0.4 - 1e-9 <= v <= 0.6 + 1e-9 for v in got.values())
    assert sorted(SIZES, key=a.get) != sorted(SIZES, key=b.get)
    assert a == allocate({}, SIZES, 0.5, 0.1, "random", seed=0)


def test_depth_control_gives_earlier_layers_lower_sparsity_at_p():
    got = allocate({}, SIZES, 0.5, 0.1, "depth")
    first = [v for k, v in got.items() if ".layers.0." in k]
    last = [v for k, v in got.items() if ".layers.1." in k]
    assert max(first) < min(last)
    assert overall_sparsity(got, SIZES) == pytest.approx(0.5, abs=1e-4)
