"""The regression checks catch a broken method (issue 16): each test breaks the method on
purpose, recomputes one smoke table from an empty cache, and asserts that the table's
regression check (the one its notebook runs under nbval) fails on moved values. A check
weakened so far that a broken method passes turns the suite red here."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from samrepro.method import allocation, sensitivity, solver
from samrepro.io import evaluate
from samrepro.study import experiments, report, settings, tables


def obs_update_off(monkeypatch):
    """(a) the OBS error update switched off: a diagonal U spreads no error onto the columns
    not yet processed (the masks still use the true [H⁻¹]_mm)."""
    real = solver._upper_cholesky_of_inverse
    monkeypatch.setattr(solver, "_upper_cholesky_of_inverse", lambda H: real(H).diagonal().diag())


def isc_scored_as_obs(monkeypatch):
    """(b) ISC replaced by OBS inside the solver: "the method" prunes like SparseGPT."""
    real = solver.saliency_scores
    monkeypatch.setattr(solver, "saliency_scores", lambda name, *a: real(
        "obs" if name == "isc" else name, *a))


def mixed_is_uniform(monkeypatch):
    """(c) every mixed allocation replaced by uniform."""
    real = allocation.allocate
    monkeypatch.setattr(experiments, "allocate", lambda sens, sizes, p, alpha, method, **kw: real(
        sens, sizes, p, alpha, "uniform"))


def shift_off_by_one(monkeypatch):
    """(d) the perplexity's targets shifted by one more token (each logit scored against
    the token two ahead)."""
    class ShiftedF:
        def __getattr__(self, name):
            return getattr(F, name)

        @staticmethod
        def cross_entropy(logits, targets, **kw):
            return F.cross_entropy(logits, torch.roll(targets, -1, dims=-1), **kw)

    monkeypatch.setattr(evaluate, "F", ShiftedF())


def gradient_not_hvp(monkeypatch):
    """(e) Hutchinson's Hessian-vector product replaced by the gradient: zᵀg, not zᵀHz."""
    def probe_row(model, params, batch, draw, loss_scale=1.0):
        grads = torch.autograd.grad(sensitivity._loss(model, batch), params)
        probes = [draw(i, p) for i, p in enumerate(params)]
        return torch.stack([(z.double() * g.double()).sum().cpu() / z.numel()
                            for z, g in zip(probes, grads)])

    monkeypatch.setattr(sensitivity, "probe_row", probe_row)


MUTATIONS = {
    "obs-update-off": (obs_update_off, "table2"),
    "isc-scored-as-obs": (isc_scored_as_obs, "table1"),
    "mixed-is-uniform": (mixed_is_uniform, "table1"),
    "perplexity-shift-off-by-one": (shift_off_by_one, "table2"),
    "hutchinson-gradient-not-hvp": (gradient_not_hvp, "figure1"),
}


def _fresh_cache(monkeypatch, folder: Path) -> None:
    """An empty run cache: a cached run (the code hash cannot see a monkeypatch) would hide
    the break."""
    folder.mkdir()
    monkeypatch.setenv("SAMREPRO_CACHE_DIR", str(folder))


def _smoke_settings(folder: Path) -> dict:
    return settings.settings("smoke", output_dir=str(folder))


def test_the_unbroken_method_passes_the_same_checks(monkeypatch, tmp_path):
    """The control: without a break, the very tables the mutations recompute pass."""
    _fresh_cache(monkeypatch, tmp_path / "cache")
    s = _smoke_settings(tmp_path / "results")
    for table in sorted({table for _, table in MUTATIONS.values()}):
        assert "within" in report.check_regression(s, table, getattr(tables, table)(s)[0])


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_a_broken_method_fails_a_smoke_regression_check(mutation, monkeypatch, tmp_path):
    break_it, table = MUTATIONS[mutation]
    _fresh_cache(monkeypatch, tmp_path / "cache")

    break_it(monkeypatch)
    s = _smoke_settings(tmp_path / "results")
    df = getattr(tables, table)(s)[0]
    # values moved, or cells appeared or vanished (mixed = uniform needs no matched arm)
    with pytest.raises(AssertionError, match="values moved|cells changed"):
        report.check_regression(s, table, df)
