"""A new allocation or saliency is one registered function (docs/architecture.md): registered
here, in this one file, each runs through the CLI and a notebook's settings with nothing else
changed. Checked against what the rule says, computed here by hand."""

import json

import pytest
import torch

from samrepro.method import allocation, solver
from samrepro.study import settings
from samrepro.commands.cli import main
from samrepro.io.models import layer_of

TINY = ["--model", "tiny-llama", "--nsamples", "4", "--seqlen", "32", "--eval-windows", "2",
        "--eval", "ptb", "--quiet"]


def first_layer_dense(scores, sizes, p, alpha, seed):
    """A toy rule: the first decoder layer keeps every weight, the others share its part."""
    first = layer_of(next(iter(sizes)))
    rest = sum(n for name, n in sizes.items() if layer_of(name) != first)
    share = p * sum(sizes.values()) / rest
    return {name: 0.0 if layer_of(name) == first else share for name in sizes}


@pytest.fixture
def toy_allocation():
    allocation.register("toy-first-dense", needs_estimate=False, uses_alpha=False)(
        first_layer_dense)
    yield "toy-first-dense"
    del allocation.ALLOCATIONS["toy-first-dense"]


@pytest.fixture
def toy_saliency():
    # OBS's score with the roles of the terms swapped: drop the largest-weight columns first
    solver.register_saliency("toy-inverse")(lambda W, U_diag, H_diag: -W.square())
    yield "toy-inverse"
    del solver.SALIENCIES["toy-inverse"]


def _expected_zeros(result):
    return {name: round(result["sparsities"][name] * m["numel"])
            for name, m in result["matrices"].items()}


def test_a_new_allocation_runs_through_the_cli(tmp_path, data_dir, toy_allocation):
    out = tmp_path / "toy.json"
    assert main(["prune", *TINY, "--sparsity", "0.4", "--allocation", toy_allocation,
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    first = layer_of(next(iter(result["matrices"])))
    for name, m in result["matrices"].items():
        if layer_of(name) == first:
            assert m["zeros"] == 0 and result["sparsities"][name] == 0.0
        else:  # each solve block drops round(s·n) of its n weights: within a block of the target
            assert abs(m["zeros"] - _expected_zeros(result)[name]) <= m["numel"] // 64
    assert result["achieved_sparsity"] == pytest.approx(0.4, abs=0.01)


def test_a_new_allocation_runs_through_a_notebooks_settings(data_dir, toy_allocation):
    s = settings.settings("smoke", models=["tiny-llama"], nsamples=4, seqlen=32, eval_windows=2)
    cfg = settings.config(s, "tiny-llama", sparsity=0.4, allocation=toy_allocation,
                          eval=("ptb",))
    [result] = settings.run_all(s, [cfg])
    sizes = {name: m["numel"] for name, m in result["matrices"].items()}
    assert result["sparsities"] == pytest.approx(first_layer_dense({}, sizes, 0.4, None, 0))


def test_a_new_saliency_runs_through_the_cli(tmp_path, data_dir, toy_saliency):
    out = tmp_path / "saliency.json"
    assert main(["prune", *TINY, "--sparsity", "0.5", "--saliency", toy_saliency,
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["achieved_sparsity"] == pytest.approx(0.5, abs=1e-3)


def test_a_registered_saliency_chooses_the_mask(toy_saliency):
    """The toy score drops the largest weights: with H = I (no cross-column updates) the kept
    weights of each 4-column block are its smallest half by magnitude, checked by sorting."""
    torch.manual_seed(0)
    W = torch.randn(3, 4)
    new = solver.prune_weight(W, torch.eye(4) * 2, 0.5, saliency=toy_saliency, blocksize=4,
                              percdamp=0.0)
    kept = torch.sort(W.abs().flatten()).indices[:6]
    assert set(torch.nonzero(new.flatten()).flatten().tolist()) == set(kept.tolist())
