"""`samrepro verify`: the cell-by-cell comparison and its bad input (no model runs)."""

import copy
import json

import pytest

from samrepro.cli import main
from samrepro.errors import UserError
from samrepro.verify import compare, read_results

RESULT = {"preset": "embedded", "settings": {"seeds": 3}, "rows": [
    {"model": "embedded", "method": "sparsegpt", "seeds": 3, "achieved_sparsity": 0.5,
     "wikitext2": 70.9, "wikitext2_low": 69.8, "wikitext2_high": 72.0},
    {"model": "embedded", "method": "ours", "seeds": 3, "achieved_sparsity": 0.516,
     "wikitext2": 78.2, "wikitext2_low": 77.0, "wikitext2_high": 79.5}],
    "claims": [{"claim": "T2-sparsegpt", "verdict": "holds 0, fails 1, inconclusive 0"}]}


def test_a_rerun_inside_every_interval_matches():
    fresh = copy.deepcopy(RESULT)
    fresh["rows"][0]["wikitext2"] = 71.5  # moved, but inside [69.8, 72.0]
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
