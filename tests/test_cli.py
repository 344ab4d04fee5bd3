"""`samrepro prune` end to end on a tiny model, and its answers to bad input."""

import json
import os
import subprocess
import sys

import pytest

from samrepro.commands.cli import main

TINY = ["--model", "tiny-llama", "--nsamples", "4", "--seqlen", "32", "--eval-windows", "2",
        "--quiet"]


def test_prune_writes_json_and_a_checkpoint_that_reloads_with_its_zeros(tmp_path, data_dir):
    out, saved = tmp_path / "run.json", tmp_path / "pruned"
    proc = subprocess.run(
        [sys.executable, "-m", "samrepro", "prune", *TINY, "--sparsity", "0.5",
         "--eval", "wikitext2,ptb", "--json", str(out), "--save", str(saved)],
        capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["achieved_sparsity"] == 0.5
    assert set(result["perplexity"]) == {"wikitext2", "ptb"}
    assert all(p["windows"] == 2 and p["ppl"] > 1 for p in result["perplexity"].values())
    assert set(result["sparsities"]) == set(result["matrices"])
    assert result["config"]["model"] == "tiny-llama" and result["versions"]["torch"]

    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(saved)
    assert (saved / "model.safetensors").exists()
    for name, info in result["matrices"].items():
        weight = reloaded.get_submodule(name).weight
        assert int((weight == 0).sum()) == info["zeros"] == weight.numel() // 2

    # `samrepro eval` scores the saved pruned model as it is (no second pruning)
    scored = tmp_path / "eval.json"
    assert main(["eval", "--model", str(saved), "--tasks", "piqa", "--limit", "2", "--quiet",
                 "--json", str(scored)]) == 0
    evaluated = json.loads(scored.read_text())
    assert evaluated["achieved_sparsity"] == 0.5 and "matrices" not in evaluated
    piqa = evaluated["accuracy"]["zero-shot"]["piqa"]
    assert piqa["documents"] == 2 and piqa["shots"] == 0 and piqa["value"] in (0.0, 0.5, 1.0)


def test_two_four_sparsity_from_the_cli(tmp_path, data_dir):
    out = tmp_path / "nm.json"
    assert main(["prune", *TINY, "--nm", "2:4", "--eval", "ptb", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["achieved_sparsity"] == 0.5 and result["config"]["nm"] == [2, 4]


@pytest.mark.parametrize("args, message", [
    (["--sparsity", "1.5"], "[0, 1)"),
    (["--sparsity", "-0.2"], "[0, 1)"),
    (["--nm", "4:4"], "N:M"),
    (["--sparsity", "0.6", "--nm", "2:4"], "agree"),
    (["--sparsity", "0.5", "--wbits", "1"], "wbits"),
    (["--sparsity", "0.5", "--alpha", "-1"], "alpha"),
    (["--sparsity", "0.5", "--seqlen", "100000"], "context"),
    (["--sparsity", "0.5", "--data-dir", "/nonexistent/folder"], "does not exist"),
    (["--sparsity", "0.5", "--model", "no-such-org/no-such-model"], "could not load model"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, args, message):
    out = tmp_path / "never.json"
    base = [a for a in TINY]
    if "--model" in args:
        i = base.index("--model")
        del base[i:i + 2]
    code = main(["prune", *base, "--eval", "ptb", *args, "--json", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("samrepro: error:") and message in err and "\n" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_argparse_rejects_unknown_saliency_and_dataset(capsys):
    for args in (["--saliency", "random"], ["--eval", "wikitext3"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["prune", *TINY, "--sparsity", "0.5", *args])
        assert exit_info.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


def _sensitivity_file(tmp_path, value=lambda k: 1.0 + k):
    from samrepro.io.models import load_model, prunable_linears

    model, _ = load_model("tiny-llama")
    names = list(prunable_linears(model))
    path = tmp_path / "sens.json"
    path.write_text(json.dumps({"matrices": {n: {"trace": value(k)} for k, n in enumerate(names)}}))
    return path, names


def test_exact_allocation_from_a_sensitivity_file(tmp_path, data_dir):
    sens, names = _sensitivity_file(tmp_path)
    out = tmp_path / "exact.json"
    assert main(["prune", *TINY, "--sparsity", "0.5", "--allocation", "exact", "--sensitivity",
                 str(sens), "--eval", "ptb", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    targets = [result["sparsities"][n] for n in names]  # sensitivity grows with the index
    assert targets[0] > targets[-1] and max(targets) <= 0.6 + 1e-9 and min(targets) >= 0.4 - 1e-9
    assert result["achieved_sparsity"] == pytest.approx(0.5, abs=2e-3)
    for name, info in result["matrices"].items():
        assert info["zeros"] / info["numel"] == pytest.approx(info["target"], abs=2e-3)


def test_sensitivity_command_writes_estimates_with_errors(tmp_path, data_dir):
    out = tmp_path / "s.json"
    args = [a for a in TINY if a not in ("--eval-windows", "2")]
    assert main(["sensitivity", *args, "--probes", "4", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["probes"] == 4 and len(result["matrices"]) == 14
    assert all("stderr" in m for m in result["matrices"].values())
    assert set(result["layers"]) == {"model.layers.0", "model.layers.1"}


@pytest.mark.parametrize("extra, message", [
    (["--allocation", "exact", "--alpha", "0.7"], "too wide"),
    (["--allocation", "paper", "--nm", "2:4"], "cannot be combined"),
])
def test_bad_allocation_input(tmp_path, capsys, data_dir, extra, message):
    sens, _ = _sensitivity_file(tmp_path)
    args = ["prune", *TINY, "--eval", "ptb", "--sensitivity", str(sens), *extra]
    if "--nm" not in extra:
        args += ["--sparsity", "0.5"]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_negative_sensitivity_is_refused(tmp_path, capsys, data_dir):
    sens, _ = _sensitivity_file(tmp_path, value=lambda k: k - 3.0)
    assert main(["prune", *TINY, "--sparsity", "0.5", "--allocation", "paper", "--sensitivity",
                 str(sens), "--eval", "ptb"]) == 2
    assert "must be a finite number" in capsys.readouterr().err


@pytest.mark.parametrize("model, calib, scored", [
    ("embedded", "c4", ("wikitext2", "ptb", "c4")),  # docs/method.md §6
    ("opt-ptb-standin", "ptb", ("ptb",)),  # trained on PTB only: as the notebooks score it
])
def test_cli_defaults_follow_the_model_as_the_notebooks_do(model, calib, scored):
    from samrepro.study import settings
    from samrepro.commands.cli import _config, build_parser

    args = build_parser().parse_args(["prune", "--model", model, "--sparsity", "0.5"])
    config = _config(args)
    assert (config.calib, config.eval) == (calib, scored)
    notebook = settings.config(settings.settings("embedded"), model, sparsity=0.5)
    assert (notebook.calib, notebook.eval) == (config.calib, config.eval)
    explicit = build_parser().parse_args(["prune", "--model", model, "--sparsity", "0.5",
                                          "--eval", "wikitext2", "--calib", "c4"])
    assert (_config(explicit).calib, _config(explicit).eval) == ("c4", ("wikitext2",))
