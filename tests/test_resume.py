"""Trustworthy runs: a run SIGKILLed at any point and started again ends with exactly the
numbers of an uninterrupted run, recomputing only what was unfinished; two runs of the same
config in separate processes agree bit for bit; damaged or foreign checkpoints are recomputed.
"""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from samrepro.io import resume
from samrepro.io.models import embedded_checkpoint, prunable_linears, tiny_model
from samrepro.method.pipeline import prune_model

ARGS = ["prune", "--model", "tiny-llama", "--calib", "ptb", "--nsamples", "4", "--seqlen", "32",
        "--eval-windows", "2", "--eval", "wikitext2,ptb", "--sparsity", "0.5",
        "--saliency", "isc", "--allocation", "exact", "--estimator", "fisher", "--quiet"]


def _cache(folder: Path) -> Path:
    """A fresh cache folder (checkpoints, runs) sharing the converted embedded model."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "smollm2-135m").symlink_to(embedded_checkpoint())
    return folder


@pytest.fixture(scope="module")
def small_data(tmp_path_factory, data_dir) -> Path:
    """The first lines of the local corpora: the runs below spend no time tokenizing."""
    folder = tmp_path_factory.mktemp("data")
    for path, lines in (("wikitext2/wiki.test.raw", 200), ("ptb/ptb.test.txt", 200),
                        ("ptb/ptb.train.txt", 400)):
        (folder / path).parent.mkdir(exist_ok=True)
        text = (data_dir / path).read_text(encoding="utf-8")
        (folder / path).write_text("".join(text.splitlines(keepends=True)[:lines]), encoding="utf-8")
    return folder


def _cli(cache: Path, out: Path, data: Path, fault: str | None = None):
    env = {**os.environ, "SAMREPRO_CACHE_DIR": str(cache), "SAMREPRO_DATA_DIR": str(data)}
    env.pop("SAMREPRO_FAULT", None)
    if fault:
        env["SAMREPRO_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "samrepro", *ARGS, "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)


def _numbers(result: dict) -> dict:
    """What must not change: weights, per-matrix report, perplexities."""
    return {"weights": result["weights_sha256"], "matrices": result["matrices"],
            "sparsities": result["sparsities"],
            "ppl": {k: (v["ppl"], v["nll"], v["tokens"]) for k, v in result["perplexity"].items()}}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, small_data):
    folder = tmp_path_factory.mktemp("uninterrupted")
    out = folder / "run.json"
    proc = _cli(_cache(folder / "cache"), out, small_data)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def _stored(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "checkpoints").rglob("*") if p.is_file())


def test_run_killed_again_and_again_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted,
                                                                         small_data):
    """SIGKILL during calibration, inside a layer and during an evaluation in turn, each time
    starting the same command again; then let it finish. After each kill exactly the finished
    work is stored, each restart reads it back instead of computing it, and the end result
    equals the uninterrupted run's."""
    cache, out = _cache(tmp_path / "cache"), tmp_path / "run.json"
    steps = [  # (fault, files stored after the kill, what that restart said it read back)
        ("calibration", [], None),  # layer 0's inputs captured, nothing pruned yet
        ("pruned-1", ["inputs-001.safetensors", "layer-000.safetensors"], None),  # in layer 1
        ("eval-ptb", ["eval-wikitext2.json", "layer-000.safetensors", "layer-001.safetensors"],
         "layers 0-0 of 2"),
    ]
    for fault, files, read_back in steps:
        killed = _cli(cache, out, small_data, fault)
        assert killed.returncode == -9, killed.stderr  # SIGKILL: no clean-up ran
        assert not out.exists()
        assert [f for f in _stored(cache) if f != "state.json"] == files, fault
        assert all(f.endswith((".json", ".safetensors")) for f in _stored(cache))  # no pickle
        assert (read_back is None) == ("resuming" not in killed.stderr), killed.stderr
        if read_back:
            assert read_back in killed.stderr

    resumed = _cli(cache, out, small_data)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(out.read_text())
    assert result["resumed_layers"] == [0, 1]
    assert result["resumed_evaluations"] == ["wikitext2"]
    assert _numbers(result) == _numbers(uninterrupted)
    assert _stored(cache) == []  # checkpoints removed when the run completed


def test_same_config_is_bit_identical_in_two_processes(tmp_path, uninterrupted, small_data):
    out = tmp_path / "again.json"
    proc = _cli(_cache(tmp_path / "cache"), out, small_data)
    assert proc.returncode == 0, proc.stderr
    again = json.loads(out.read_text())
    assert again["resumed_layers"] == [] and again["resumed_evaluations"] == []
    assert _numbers(again) == _numbers(uninterrupted)
    assert again["model"]["weights_sha256"] == uninterrupted["model"]["weights_sha256"]
    assert uninterrupted["weights_sha256"] != uninterrupted["model"]["weights_sha256"]  # pruned


def test_results_record_their_provenance(uninterrupted, small_data):
    import hashlib

    r = uninterrupted
    assert r["versions"]["torch"] == torch.__version__ and "lm_eval" in r["versions"]
    assert r["device"] == "cpu" and r["config"]["seed"] == 0
    for name, path in (("ptb", "ptb/ptb.test.txt"), ("wikitext2", "wikitext2/wiki.test.raw")):
        expected = hashlib.sha256((small_data / path).read_bytes()).hexdigest()
        assert r["perplexity"][name]["sha256"] == expected
    train = hashlib.sha256((small_data / "ptb/ptb.train.txt").read_bytes()).hexdigest()
    assert r["calibration_data"]["sha256"] == train


# ---- damaged or foreign checkpoints, in process ----------------------------------------

class Interrupted(Exception):
    pass


def _prune(checkpoint=None):
    model = tiny_model("opt", vocab_size=101, seed=7, num_layers=3)
    ids = torch.randint(0, 101, (4, 16), generator=torch.Generator().manual_seed(1))
    report = prune_model(model, ids, {n: 0.5 for n in prunable_linears(model)}, "obs",
                         batch_size=2, progress=False, checkpoint=checkpoint)
    return model, report


@pytest.fixture
def interrupted_after_two_layers(tmp_path, monkeypatch):
    """A pass stopped after layer 1 was stored; returns its checkpoint folder."""
    monkeypatch.setenv("SAMREPRO_CACHE_DIR", str(tmp_path))
    save = resume.RunCheckpoint.save

    def save_then_stop(self, i, *args, **kwargs):
        save(self, i, *args, **kwargs)
        if i == 1:
            raise Interrupted

    monkeypatch.setattr(resume.RunCheckpoint, "save", save_then_stop)
    with pytest.raises(Interrupted):
        _prune(resume.RunCheckpoint({"run": "test"}))
    monkeypatch.setattr(resume.RunCheckpoint, "save", save)
    return resume.RunCheckpoint({"run": "test"}).folder


def _assert_same_weights(model, reference):
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name


def test_interrupted_pass_resumes_in_process(interrupted_after_two_layers):
    reference, ref_report = _prune()
    model, report = _prune(resume.RunCheckpoint({"run": "test"}))
    assert report["resumed_layers"] == [0, 1]
    assert report["matrices"] == ref_report["matrices"]
    _assert_same_weights(model, reference)


def _flip_a_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    lambda f: _flip_a_byte(f / "layer-000.safetensors"),
    lambda f: (f / "inputs-002.safetensors").write_bytes(
        (f / "inputs-002.safetensors").read_bytes()[:100]),  # truncated
    lambda f: (f / "layer-001.safetensors").unlink(),
    lambda f: (f / "state.json").write_text("{not json"),
    lambda f: (f / "state.json").write_text(json.dumps(
        {**json.loads((f / "state.json").read_text()), "key": {"run": "other"}})),  # foreign
], ids=["flipped-byte", "truncated-inputs", "missing-layer", "unparsable-state", "foreign-state"])
def test_damaged_or_foreign_checkpoint_is_recomputed(interrupted_after_two_layers, damage):
    damage(interrupted_after_two_layers)
    reference, _ = _prune()
    with pytest.warns(UserWarning, match="ignoring the checkpoints"):
        model, report = _prune(resume.RunCheckpoint({"run": "test"}))
    assert report["resumed_layers"] == []
    _assert_same_weights(model, reference)


def test_damaged_evaluation_checkpoint_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMREPRO_CACHE_DIR", str(tmp_path))
    checkpoint = resume.RunCheckpoint({"run": "eval"})
    assert checkpoint.evaluation("ptb", lambda: {"ppl": 1.5}) == {"ppl": 1.5}
    assert resume.RunCheckpoint({"run": "eval"}).evaluation("ptb", lambda: 1 / 0) == {"ppl": 1.5}
    (checkpoint.folder / "eval-ptb.json").write_text('{"key": {"run": "other"}, "value": 3}')
    again = resume.RunCheckpoint({"run": "eval"})
    with pytest.warns(UserWarning, match="damaged or foreign"):
        assert again.evaluation("ptb", lambda: {"ppl": 2.5}) == {"ppl": 2.5}
    assert again.resumed_evaluations == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resume.RunCheckpoint({"run": "eval"}).evaluation("ptb", lambda: 1 / 0) == {"ppl": 2.5}


# ---- SAMREPRO_RESUME: checkpoints limited or off ---------------------------------------------

def test_resume_off_stores_nothing_and_gives_the_same_result(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMREPRO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("SAMREPRO_RESUME", "off")
    reference, ref_report = _prune()
    checkpoint = resume.RunCheckpoint({"run": "off"})
    model, report = _prune(checkpoint)
    assert checkpoint.evaluation("ptb", lambda: {"ppl": 3.0}) == {"ppl": 3.0}
    assert not checkpoint.folder.exists()  # nothing written, not even the evaluation
    assert report["matrices"] == ref_report["matrices"]
    _assert_same_weights(model, reference)


def test_resume_budget_stops_storing_and_resumes_from_the_last_stored_layer(tmp_path,
                                                                            monkeypatch):
    """A budget of one layer's weights and one set of layer inputs (fp32 bytes counted by hand
    from the tiny OPT: 3 layers, hidden 64, fc 256, biases and 2 layer norms) and a half: layer
    0 is stored, layer 1 is not; a run started again resumes after layer 0."""
    monkeypatch.setenv("SAMREPRO_CACHE_DIR", str(tmp_path))
    h, f = 64, 256
    layer = 4 * (4 * h * h + 4 * h + h * f + f + f * h + h + 4 * h)  # attention, fc1, fc2, 2 norms
    inputs = 4 * 4 * 16 * h  # 4 windows × 16 tokens × hidden, fp32
    monkeypatch.setenv("SAMREPRO_RESUME", str((1.5 * layer + inputs) / 2**30))
    reference, ref_report = _prune()
    with pytest.warns(UserWarning, match="at layer 1: later layers are not stored"):
        _prune(resume.RunCheckpoint({"run": "budget"}))
    folder = resume.RunCheckpoint({"run": "budget"}).folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "inputs-001.safetensors", "layer-000.safetensors", "state.json"]
    monkeypatch.setenv("SAMREPRO_RESUME", "on")
    model, report = _prune(resume.RunCheckpoint({"run": "budget"}))
    assert report["resumed_layers"] == [0]
    assert report["matrices"] == ref_report["matrices"]
    _assert_same_weights(model, reference)


def test_resume_setting_must_be_on_off_or_a_size(monkeypatch):
    from samrepro.errors import UserError

    monkeypatch.setenv("SAMREPRO_RESUME", "sometimes")
    with pytest.raises(UserError, match="on, off, or a number of GiB"):
        resume.RunCheckpoint({"run": "x"})
