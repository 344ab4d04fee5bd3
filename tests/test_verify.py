"""`samrepro verify`: the cell-by-cell comparison and its bad input (no model runs)."""

import copy
import json

import pytest

from samrepro.commands.cli import main
from samrepro.errors import UserError
from samrepro.study import verify as verify_module
from samrepro.study.verify import compare, read_results

RESULT = {"preset": "embedded", "settings": {"seeds": 3}, "rows": [
    {"model": "embedded", "method": "sparsegpt", "seeds": 3, "achieved_sparsity": 0.5,
     "wikitext2": 70.9, "wikitext2_low": 69.8, "wikitext2_high": 72.0},
    {"model": "embedded", "method": "ours", "seeds": 3, "achieved_sparsity": 0.516,
     "wikitext2": 78.2, "wikitext2_low": 77.0, "wikitext2_high": 79.5}],
    "claims": [{"claim": "T2-sparsegpt", "verdict": "holds 0, fails 1, inconclusive 0"}]}


def test_a_rerun_inside_every_interval_matches():
    fresh = copy.deepcopy(RESULT)
    fresh["rows"][0]["wikitext2"] = 71.5  # moved, but inside [69.8, 72.0]
    fresh["rows"][1]["seeds"] = 2  # re-run with fewer seeds (verify --seeds 2)
    assert all(ok for ok, _ in compare(RESULT, fresh))


def test_a_tampered_cell_and_a_tampered_verdict_are_reported():
    tampered = copy.deepcopy(RESULT)
    tampered["rows"][1]["wikitext2_high"] = 77.5  # the committed interval no longer holds 78.2
    tampered["claims"][0]["verdict"] = "holds 1, fails 0, inconclusive 0"
    bad = [line for ok, line in compare(tampered, RESULT) if not ok]
    assert len(bad) == 2
    assert bad[0].startswith("embedded ours wikitext2: 78.2 OUTSIDE")
    assert "claim T2-sparsegpt" in bad[1]


def test_a_row_missing_from_the_rerun_is_reported():
    fresh = copy.deepcopy(RESULT)
    del fresh["rows"][1]
    assert [line for ok, line in compare(RESULT, fresh) if not ok] == \
        ["embedded ours: row missing from the re-run"]


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    not_results = tmp_path / "table1.json"
    not_results.write_text(json.dumps({"rows": []}))
    with pytest.raises(UserError, match="not a samrepro results file"):
        read_results(not_results)
    unknown = tmp_path / "table9.json"
    unknown.write_text(json.dumps(RESULT))
    with pytest.raises(UserError, match="no notebook table9.ipynb"):
        read_results(unknown)
    assert main(["verify", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("samrepro: error:") and len(err.splitlines()) == 1


def _cell(outcome, low, high, label="embedded ours vs sparsegpt ptb"):
    return {"outcome": outcome, "low": low, "high": high, "change": (low + high) / 2,
            "text": f"{label}: {100 * (low + high) / 2:+.2f}% [..] (3 seeds × 32 windows): {outcome}"}


def _with_cells(*cells):
    result = copy.deepcopy(RESULT)
    result["claims"] = [{"claim": "T2-sparsegpt", "verdict": "…", "cells": list(cells)}]
    return result


@pytest.mark.parametrize("was, now, agree", [
    (_cell("holds", -0.05, -0.01), _cell("holds", -0.06, -0.02), True),
    # fewer seeds, a wider interval that straddles 0 but overlaps the committed one
    (_cell("holds", -0.05, -0.01), _cell("inconclusive", -0.08, 0.02), True),
    (_cell("inconclusive", -0.01, 0.03), _cell("fails", 0.002, 0.02), True),
    # opposite decisions, or intervals apart, contradict the committed cell
    (_cell("holds", -0.05, -0.01), _cell("fails", 0.01, 0.04), False),
    (_cell("inconclusive", -0.01, 0.01), _cell("inconclusive", 0.02, 0.05), False),
])
def test_claim_cells_are_compared_by_outcome_and_interval(was, now, agree):
    lines = compare(_with_cells(was), _with_cells(now))
    cell_lines = [(ok, line) for ok, line in lines if "embedded ours vs sparsegpt ptb" in line]
    assert len(cell_lines) == 1
    assert cell_lines[0][0] is agree
    assert ("DIFFERS" in cell_lines[0][1]) is (not agree)


def test_the_tampered_claim_cell_is_named():
    committed = _with_cells(_cell("holds", -0.05, -0.01),
                            _cell("holds", -0.04, -0.02, label="embedded ours vs sparsegpt c4"))
    fresh = copy.deepcopy(committed)
    committed["claims"][0]["cells"][1].update(outcome="fails", low=0.01, high=0.03)  # tampered
    bad = [line for ok, line in compare(committed, fresh) if not ok]
    assert len(bad) == 1 and bad[0].startswith("claim T2-sparsegpt embedded ours vs sparsegpt c4:")


def test_fewer_seeds_reach_the_notebook_and_bad_seeds_are_refused(tmp_path, monkeypatch):
    results = tmp_path / "table2.json"
    results.write_text(json.dumps(RESULT))
    calls = []

    def fake_run(args, check, env):  # stands in for papermill: writes what the notebook would
        calls.append(args)
        out = tmp_path / "scratch" / "results" / "embedded"
        out.mkdir(parents=True)
        (out / "table2.json").write_text(json.dumps(RESULT))

    monkeypatch.setattr(verify_module.subprocess, "run", fake_run)
    assert verify_module.verify(results, str(tmp_path / "scratch"), seeds=2) == 0
    assert '{"seeds": 2}' in calls[0]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(UserError, match="seeds"):
            verify_module.verify(results, str(tmp_path / "other"), seeds=bad)
    assert not (tmp_path / "other").exists()  # refused before anything was written


def test_new_cells_are_named_by_what_they_compare_not_by_their_numbers():
    """verify pairs a committed cell with the re-run's by its label: the new cells (C0,
    matched, confounded) keep their numbers out of it."""
    from samrepro.study.claims import keeps_sparsity, lower_perplexity

    c0 = [keeps_sparsity([{"achieved_sparsity": x}], 0.5, "embedded paper (isc) at 50%")
          for x in (0.5176, 0.5181)]
    assert verify_module._cell_label(c0[0]) == verify_module._cell_label(c0[1]) == "embedded paper (isc) at 50%"
    runs = [[{"perplexity": {"ptb": {"window_nll": [3.0 + x, 3.1, 2.9 + x]}},
              "achieved_sparsity": s}] for x, s in ((0.0, 0.5176), (0.1, 0.5))]
    cell = lower_perplexity(*runs, ["ptb"], "embedded paper vs uniform (obs)")[0]
    assert cell["outcome"] == "confounded"
    assert verify_module._cell_label(cell) == "embedded paper vs uniform (obs) ptb"
    # the matched baseline runs at the other arm's achieved sparsity, a mean over the seeds:
    # 3 and 10 seeds name it 51.70% and 51.77%, and the cells are still the same comparison
    matched = [lower_perplexity(*runs, ["ptb"], f"embedded ours vs sparsegpt, matched "
                                                f"(baseline at {x:.2%})")[0] for x in (0.517, 0.5177)]
    assert matched[0]["text"] != matched[1]["text"]
    assert verify_module._cell_label(matched[0]) == verify_module._cell_label(matched[1]) == \
        "embedded ours vs sparsegpt, matched ptb"


def test_a_c3_cell_is_named_without_its_range_of_achieved_sparsities():
    """A C3 cell's text gives the method's achieved sparsities, means over the seeds, which a
    re-run under other rounding or seeds moves (51.70% vs 51.69%): the cells still pair."""
    from samrepro.study.claims import growing_gain

    def arm(nll, s):
        return [{"perplexity": {"ptb": {"window_nll": [nll + d, nll - d, nll]}},
                 "achieved_sparsity": s} for d in (0.01, 0.02)]

    cells = [growing_gain({0.5: arm(3.0, 0.5 + shift), 0.8: arm(5.0, 0.8 + shift)},
                          {0.5: arm(3.1, 0.5), 0.8: arm(5.4, 0.8)}, "ptb", "embedded ours vs sparsegpt")
             for shift in (0.017, 0.0169)]
    assert "51.70%" in cells[0]["text"] and "51.69%" in cells[1]["text"]
    assert verify_module._cell_label(cells[0]) == verify_module._cell_label(cells[1]) == \
        "embedded ours vs sparsegpt ptb: slope of log(ppl ours / ppl baseline)"
