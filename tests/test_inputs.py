"""A results file names what it was computed from: the models' weights hashes and every text's
source and file hash (samrepro.io.inputs, recorded by settings.run_all, written by report.write)."""

import hashlib
import json

import pandas as pd

from samrepro.io import inputs
from samrepro.study import report, settings


def test_the_summary_keeps_each_input_once_and_shows_a_mix_up():
    run = {"model": {"name": "m", "revision": None, "weights_sha256": "aa"},
           "calibration_data": {"source": "local:ptb/ptb.train.txt", "sha256": "11", "revision": None},
           "perplexity": {"ptb": {"ppl": 3.0, "source": "local:ptb/ptb.test.txt", "sha256": "22",
                                  "revision": None}}}
    other = {**run, "model": {"name": "m", "revision": None, "weights_sha256": "bb"}}
    found = inputs.summary([run, run])
    assert found == {"models": {"m": {"revision": None, "weights_sha256": "aa"}},
                     "data": {"local:ptb/ptb.test.txt": {"sha256": "22", "revision": None},
                              "local:ptb/ptb.train.txt": {"sha256": "11", "revision": None}}}
    assert [e["weights_sha256"] for e in inputs.summary([run, other])["models"]["m"]] == ["aa", "bb"]
    assert inputs.of({}) is None


def test_a_notebook_result_records_the_data_files_sha256(tmp_path, data_dir):
    s = settings.settings("smoke", models=["smoke-llama"], nsamples=2, seqlen=32, eval_windows=2,
                          seeds=1, output_dir=tmp_path)
    cfg = settings.config(s, "smoke-llama", sparsity=0.5, saliency="obs")
    settings.run_all(s, [cfg])
    folder = report.write(s, "table1", pd.DataFrame([{"a": 1}]), [])
    recorded = json.loads((folder / "table1.json").read_text())["inputs"]
    for name in ("ptb.train.txt", "ptb.test.txt"):
        digest = hashlib.sha256((data_dir / "ptb" / name).read_bytes()).hexdigest()
        assert recorded["data"][f"local:ptb/{name}"]["sha256"] == digest
    assert len(recorded["models"]["smoke-llama"]["weights_sha256"]) == 64
