"""The hub ids under datasets ≥ 4 (no dataset scripts): each corpus resolves to plain data
files. The hub is unreachable here, so a local folder laid out as the hub's parquet
conversion stands in for it; what this shows is that `samrepro.io.data` reads that layout (the
config folder, the split folders, the column) with the installed `datasets`, not that the
hub serves it (benchmarks/gpu_check.sh checks that on a machine with the hub)."""

import pytest

from samrepro.io import data


def _mirror(tmp_path, rows: dict[str, list[str]]):
    """refs/convert/parquet's layout: <config>/<split>/0000.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for split, sentences in rows.items():
        folder = tmp_path / "penn_treebank" / split
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"sentence": sentences}), folder / "0000.parquet")
    return tmp_path


def test_ptb_is_read_from_the_parquet_conversion(tmp_path, data_dir, monkeypatch):
    import datasets

    lines = (data_dir / "ptb" / "ptb.test.txt").read_text().splitlines()
    mirror = _mirror(tmp_path / "hub", {"train": lines[:50], "validation": lines[50:80],
                                        "test": lines})
    seen = {}
    real = datasets.load_dataset

    def from_mirror(path, *args, **kwargs):  # the hub repo → the local mirror
        seen.update(path=path, args=args, **kwargs)
        assert kwargs.pop("revision") == "refs/convert/parquet"  # no script to run there
        return real(str(mirror), *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", from_mirror)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    hub = data._from_hub("ptb", "test")
    assert seen["path"] == "ptb-text-only/ptb_text_only" and seen["data_dir"] == "penn_treebank"
    local = data.load_corpus("ptb", "test", data_dir)
    assert hub.docs == local.docs and hub.text == local.text  # rows stripped as the hub loader's
    assert hub.source == "hub:ptb-text-only/ptb_text_only@refs/convert/parquet"
    assert len(data._from_hub("ptb", "validation").docs) == 30


def test_no_hub_id_names_a_dataset_script():
    for name, (args, keywords, column, _joiner) in data._HUB.items():
        assert not any(str(a).endswith(".py") for a in args)
        assert name in data.HUB_DOWNLOADS and "MB" in data.HUB_DOWNLOADS[name]
    for task in ("arc_challenge", "hellaswag", "truthfulqa_mc2", "piqa"):
        assert task in data.HUB_DOWNLOADS


@pytest.mark.parametrize("task, path", [("arc/arc_challenge.yaml", "allenai/ai2_arc"),
                                        ("hellaswag/hellaswag.yaml", "Rowan/hellaswag"),
                                        ("truthfulqa/truthfulqa_mc2.yaml", "truthfulqa/truthful_qa"),
                                        ("piqa/piqa.yaml", "baber/piqa")])
def test_the_lm_eval_tasks_use_the_parquet_datasets_named_in_the_docs(task, path):
    """The installed lm-eval's tasks load these hub ids (HUB_DOWNLOADS states their size);
    a new lm-eval that moves a task elsewhere fails here, so that the docs follow."""
    import importlib.util
    from pathlib import Path

    import re

    path_of = Path(importlib.util.find_spec("lm_eval").origin).parent / "tasks" / task
    text = path_of.read_text()
    while "dataset_path" not in text:  # e.g. arc_challenge includes arc_easy's settings
        path_of = path_of.parent / re.search(r"include: (\S+)", text).group(1)
        text = path_of.read_text()
    assert f"dataset_path: {path}" in text
    assert "trust_remote_code" not in text
    assert any(path in v for v in data.HUB_DOWNLOADS.values())
