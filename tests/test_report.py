"""Claims verdicts and the regression check of the notebooks (no model runs)."""

import pandas as pd
import pytest

from samrepro import report, tables


def test_verdict_counts_the_comparisons():
    assert report.verdict("C1", "x", [(True, "a"), (True, "b")])["verdict"] == "holds"
    assert report.verdict("C1", "x", [(False, "a"), (False, "b")])["verdict"] == "does not hold"
    assert report.verdict("C1", "x", [(True, "a"), (False, "b")])["verdict"] == "partly (1 of 2)"


def test_claims_follow_the_numbers():
    layers = {"m": pd.DataFrame({"trace": [5.0, 1.0, 2.0, 1.5, 4.0]})}
    assert tables.figure1_claim(layers)["verdict"] == "holds"
    layers = {"m": pd.DataFrame({"trace": [1.0, 5.0, 2.0, 1.5, 0.5]})}
    assert tables.figure1_claim(layers)["verdict"] == "does not hold"
    matrices = {"m": pd.DataFrame({"type": ["q_proj", "v_proj", "down_proj", "up_proj"],
                                   "trace": [1.0, 3.0, 0.5, 2.0]})}
    assert tables.figure2_claim(matrices)["verdict"] == "partly (1 of 2)"


def test_regression_check_fails_when_numbers_move(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "__file__", str(tmp_path / "samrepro" / "report.py"))
    s = {"preset": "smoke"}
    df = pd.DataFrame({"model": ["a"], "ppl": [10.0]})
    with pytest.raises(AssertionError, match="no stored values"):
        report.check_regression(s, "t", df)
    monkeypatch.setenv("SAMREPRO_UPDATE_REGRESSION", "1")
    report.check_regression(s, "t", df)
    monkeypatch.delenv("SAMREPRO_UPDATE_REGRESSION")
    assert "within" in report.check_regression(s, "t", pd.DataFrame({"model": ["a"], "ppl": [10.3]}))
    with pytest.raises(AssertionError, match="moved"):
        report.check_regression(s, "t", pd.DataFrame({"model": ["a"], "ppl": [11.0]}))
    assert "only at the smoke" in report.check_regression({"preset": "embedded"}, "t", df)


def test_paper_reference_is_packaged():
    ref = report.paper_reference()
    assert ref["paper"]["table1"]["rows"][0]["wikitext2"] == 7.79
