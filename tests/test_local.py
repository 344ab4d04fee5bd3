"""A run of your own against the committed one, and its promotion (samrepro.study.local): the
comparison finds a planted contradiction and nothing in an identical copy."""

import json
import shutil
from pathlib import Path

import pytest

from samrepro.study import local
from samrepro.errors import UserError

COMMITTED = Path(__file__).resolve().parents[1] / "results" / "embedded" / "table1.json"


@pytest.fixture
def root(tmp_path):
    (tmp_path / "embedded").mkdir()
    (tmp_path / "local" / "embedded").mkdir(parents=True)
    shutil.copy(COMMITTED, tmp_path / "embedded" / "table1.json")
    shutil.copy(COMMITTED, tmp_path / "local" / "embedded" / "table1.json")
    return tmp_path


def test_an_identical_run_agrees_everywhere(root):
    bad, text = local.summary("table1", root=root)
    assert bad == 0 and "make promote NOTEBOOK=table1" in text
    rows = json.loads(COMMITTED.read_text())["rows"]
    assert "DIFF" not in text and len(rows) > 0


def test_a_flipped_cell_and_a_value_outside_its_interval_are_reported(root):
    path = root / "local" / "embedded" / "table1.json"
    data = json.loads(path.read_text())
    cell = next(c for claim in data["claims"] for c in claim["cells"] if c["outcome"] == "holds")
    cell["outcome"], cell["low"], cell["high"] = "fails", 0.5, 0.6  # opposite side, no overlap
    row = data["rows"][0]
    row["ptb"] = row["ptb_high"] * 2
    data["settings"]["seeds"] = 2  # fewer than the committed run's
    path.write_text(json.dumps(data))
    bad, text = local.summary("table1", root=root)
    assert bad == 2
    assert sum(line.startswith("  DIFF ") for line in text.splitlines()) == 2 and "OUTSIDE" in text and "another seed count than committed" in text
    assert "(2 seeds" in text and "disagree" in text


def test_promote_copies_the_local_files_over_the_committed_ones(root):
    folder = root / "local" / "embedded"
    (folder / "table1.md").write_text("mine")
    (folder / "figure2-embedded.png").write_bytes(b"png")  # another notebook's: stays
    copied = local.promote("table1", root=root)
    assert sorted(p.name for p in copied) == ["table1.json", "table1.md"]
    assert (root / "embedded" / "table1.md").read_text() == "mine"
    assert not (root / "embedded" / "figure2-embedded.png").exists()


def test_a_missing_local_run_says_what_to_do(tmp_path):
    with pytest.raises(UserError, match="run `make table1` first"):
        local.summary("table1", root=tmp_path)
    assert local.main(["compare", "table9"]) == 2


def test_a_second_promotion_replaces_the_section(root):
    path = root / "local" / "embedded" / "table1.json"
    data = json.loads(path.read_text())
    data["settings"]["seeds"] = 7
    path.write_text(json.dumps(data))
    local.promote("table1", root=root)
    local.promote("table1", root=root)
    changes = (root / "embedded" / "CHANGES.md").read_text()
    assert changes.count("## table1") == 1 and "Replaced: 7 seeds" in changes and "New: 7 seeds" in changes
    assert len([l for l in changes.splitlines() if l.startswith("| C") or l.startswith("| T")]) == len(data["claims"])


def test_the_first_promotion_shows_the_replaced_verdicts(root):
    path = root / "local" / "embedded" / "table1.json"
    data = json.loads(path.read_text())
    old = data["claims"][0]["verdict"]
    data["claims"][0]["verdict"] = "fails 9, holds 0, inconclusive 0"
    path.write_text(json.dumps(data))
    local.promote("table1", root=root)
    row = next(l for l in (root / "embedded" / "CHANGES.md").read_text().splitlines()
               if l.startswith(f"| {data['claims'][0]['claim']} |"))
    assert row.split(" | ")[1].startswith(old) and row.split(" | ")[2].startswith("fails 9")


def test_a_notebook_without_results_promotes_its_executed_copy(root):
    """The walkthrough writes no results JSON: `make promote NOTEBOOK=walkthrough` copies its
    executed notebook (it said "run `make walkthrough` first", though that had been done)."""
    (root / "local" / "embedded" / "walkthrough.ipynb").write_text("{}")
    copied = local.promote("walkthrough", root=root)
    assert [p.name for p in copied] == ["walkthrough.ipynb"]
    assert (root / "embedded" / "walkthrough.ipynb").read_text() == "{}"
    assert not (root / "embedded" / "CHANGES.md").exists()
    with pytest.raises(UserError, match="run `make figure9` first"):  # nothing run: still refused
        local.promote("figure9", root=root)
