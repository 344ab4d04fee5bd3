"""`samrepro export`: a checkpoint that plain transformers loads (no samrepro importable) and
that reproduces the run's perplexity, and a sparsity map that matches the weights it ships."""

import json
import os
import subprocess
import sys

import pytest

from samrepro.commands import cli
from samrepro.errors import UserError
from samrepro.study.export import MAP_FORMAT, read_map

SEQLEN, WINDOWS = 64, 3

# Run in a fresh interpreter where `import samrepro` fails: only transformers and torch.
PLAIN = r"""
import json, math, sys
sys.modules["samrepro"] = None  # any import of samrepro now raises ImportError
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

folder, data, seqlen, windows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
lines = open(data, encoding="utf-8").read().splitlines()
ids = torch.tensor(tokenizer(" ".join(line.strip() for line in lines))["input_ids"])
total = len(ids) // seqlen  # K windows spread evenly: window floor((i + 1/2) total / K)
nll = []
with torch.no_grad():
    for w in [int((i + 0.5) * total / windows) for i in range(windows)]:
        x = ids[w * seqlen:(w + 1) * seqlen][None]
        logits = model(input_ids=x).logits[0, :-1].float()
        nll.append(F.cross_entropy(logits, x[0, 1:]).item())
zeros = {n: [int((m.weight == 0).sum()), m.weight.numel()] for n, m in model.named_modules()
         if isinstance(m, torch.nn.Linear) and ".layers." in n}
print(json.dumps({"ppl": math.exp(sum(nll) / len(nll)), "zeros": zeros,
                  "architecture": model.config.architectures[0]}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("export") / "pruned"
    assert cli.main(["export", "--model", "smoke-llama", "--sparsity", "0.5", "--allocation",
                     "paper", "--saliency", "isc", "--estimator", "fisher", "--nsamples", "4",
                     "--seqlen", str(SEQLEN), "--dtype", "float32", "--eval", "ptb",
                     "--eval-windows", str(WINDOWS), "--quiet", "--out", str(out)]) == 0
    return out


def test_plain_transformers_loads_it_and_reproduces_the_runs_perplexity(exported, data_dir):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", PLAIN, str(exported),
                           str(data_dir / "ptb" / "ptb.test.txt"), str(SEQLEN), str(WINDOWS)],
                          capture_output=True, text=True, env=env, cwd=exported.parent, check=True)
    plain = json.loads(done.stdout)
    recorded = read_map(exported)
    assert plain["architecture"] == "LlamaForCausalLM"
    assert recorded["perplexity"]["ptb"]["windows"] == WINDOWS
    assert plain["ppl"] == pytest.approx(recorded["perplexity"]["ptb"]["ppl"], rel=1e-4)
    # the map's achieved sparsities are the zeros the checkpoint really holds
    assert set(plain["zeros"]) == set(recorded["matrices"])
    for name, (zeros, size) in plain["zeros"].items():
        assert recorded["matrices"][name]["parameters"] == size
        assert recorded["matrices"][name]["achieved_sparsity"] == pytest.approx(zeros / size)


def test_the_map_holds_algorithm_1s_targets_and_the_sensitivities(exported):
    recorded = read_map(exported)
    assert recorded["format"] == MAP_FORMAT and recorded["seed"] == 0
    settings = recorded["settings"]
    assert (settings["allocation"], settings["saliency"], settings["alpha"]) == ("paper", "isc", 0.1)
    targets = [m["target_sparsity"] for m in recorded["matrices"].values()]
    # Algorithm 1 as printed: evenly spaced over [p − α, p + α], so their plain mean is p
    assert min(targets) == pytest.approx(0.4) and max(targets) == pytest.approx(0.6)
    assert sum(targets) / len(targets) == pytest.approx(0.5)
    ranked = sorted(recorded["matrices"].values(), key=lambda m: m["sensitivity"])
    assert ranked[0]["target_sparsity"] == pytest.approx(0.6)  # least sensitive: pruned most
    assert ranked[-1]["target_sparsity"] == pytest.approx(0.4)
    assert all(m["sensitivity"] is not None for m in recorded["matrices"].values())


def test_an_occupied_folder_is_refused_and_a_missing_map_explained(tmp_path):
    (tmp_path / "x.txt").write_text("mine")
    assert cli.main(["export", "--model", "smoke-llama", "--sparsity", "0.5", "--nsamples", "2",
                     "--seqlen", "32", "--out", str(tmp_path), "--quiet"]) == 2
    assert (tmp_path / "x.txt").read_text() == "mine"
    with pytest.raises(UserError, match="samrepro export"):
        read_map(tmp_path)
