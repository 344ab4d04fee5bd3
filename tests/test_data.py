"""The corpora per docs/method.md §6, from the local folder, and the errors when data is missing."""

import hashlib
import json

import pytest
import torch

from samrepro.io.data import C4_EVAL_DOCS, calibration_windows, eval_stream, load_corpus
from samrepro.errors import UserError


def test_wikitext2_local_equals_the_hub_rows_joined(data_dir):
    text = load_corpus("wikitext2", "test", data_dir).text
    # Size and hash of the hub's 4358 test rows joined with "\n\n" (data/SOURCES.md, W1).
    assert len(text) == 1_294_336
    assert hashlib.sha256(text.encode()).hexdigest().startswith("696cca6b65a171b0")


def test_ptb_rows_are_stripped_and_joined_with_spaces(data_dir):
    corpus = load_corpus("ptb", "test", data_dir)
    assert len(corpus.docs) == 3761
    raw = (data_dir / "ptb" / "ptb.test.txt").read_text().splitlines()
    assert raw[0].startswith(" ") and not corpus.docs[0].startswith(" ")
    assert corpus.text == " ".join(line.strip() for line in raw)


def test_c4_sample_evaluation_and_calibration_documents_are_disjoint(data_dir):
    val = load_corpus("c4", "validation", data_dir)
    train = load_corpus("c4", "train", data_dir)
    assert len(val.docs) == C4_EVAL_DOCS
    assert not set(val.docs) & set(train.docs)
    assert "C4 sample" in val.source and "C4 sample" in train.source


def test_calibration_windows_are_seeded_slices_of_long_train_documents(data_dir, embedded_tokenizer):
    a, corpus = calibration_windows("c4", embedded_tokenizer, 4, 64, seed=0, folder=data_dir)
    b, _ = calibration_windows("c4", embedded_tokenizer, 4, 64, seed=0, folder=data_dir)
    c, _ = calibration_windows("c4", embedded_tokenizer, 4, 64, seed=1, folder=data_dir)
    assert a.shape == (4, 64) and torch.equal(a, b) and not torch.equal(a, c)
    docs = [embedded_tokenizer(d)["input_ids"] for d in corpus.docs]
    for window in a.tolist():  # each window is a contiguous piece of one train document
        assert any(len(d) > 64 and any(d[s:s + 64] == window for s in range(len(d) - 63))
                   for d in docs)


def test_c4_eval_stream_is_cut_to_256_windows(data_dir, embedded_tokenizer):
    ids, _ = eval_stream("c4", embedded_tokenizer, 16, data_dir)
    assert ids.numel() == 256 * 16


def test_missing_local_file_names_the_file(tmp_path):
    (tmp_path / "ptb").mkdir()
    with pytest.raises(UserError, match=r"ptb\.test\.txt"):
        load_corpus("ptb", "test", tmp_path)
    with pytest.raises(UserError, match="wiki.train.raw"):  # no WikiText-2 train split locally
        load_corpus("wikitext2", "train", tmp_path)


def test_malformed_c4_file_names_file_and_line(tmp_path):
    (tmp_path / "c4").mkdir()
    lines = [json.dumps({"text": f"doc {i}"}) for i in range(1200)]
    lines[7] = "{not json"
    (tmp_path / "c4" / "c4_validation_2k.jsonl").write_text("\n".join(lines))
    with pytest.raises(UserError, match="c4_validation_2k.jsonl, line 8"):
        load_corpus("c4", "validation", tmp_path)


def test_offline_without_local_data_says_how_to_provide_it(monkeypatch):
    monkeypatch.delenv("SAMREPRO_DATA_DIR", raising=False)
    with pytest.raises(UserError, match="SAMREPRO_DATA_DIR"):
        load_corpus("wikitext2", "test")


def test_data_folder_that_does_not_exist(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_corpus("ptb", "test", tmp_path / "nowhere")
