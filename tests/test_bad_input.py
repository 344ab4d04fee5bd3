"""Bad input, tried systematically: every case ends in one line `samrepro: error: …` that
names the problem, exit status 2, no traceback, and nothing written (neither --json nor
--save exists afterwards). docs/usage.md's table of faults and bad input lists these cases."""

import gzip
import json
import shutil
from pathlib import Path

import pytest

from samrepro.commands.cli import main


def _data_copy(tmp_path: Path, data_dir: Path) -> Path:
    """A data folder of links to the local corpora, whose files a case may then replace."""
    folder = tmp_path / "data"
    for sub in ("wikitext2", "ptb", "c4"):
        (folder / sub).mkdir(parents=True)
        for f in (data_dir / sub).iterdir():
            (folder / sub / f.name).symlink_to(f)
    return folder


def _replace(folder: Path, path: str, data: bytes | None) -> None:
    (folder / path).unlink(missing_ok=True)
    if data is not None:
        (folder / path).write_bytes(data)


def _data(path: str, make) -> callable:
    """Case set-up: a copy of the data folder with `path` replaced by make(original bytes)
    (None: the file is removed)."""
    def prepare(tmp_path, data_dir):
        folder = _data_copy(tmp_path, data_dir)
        original = (data_dir / path).read_bytes() if (data_dir / path).exists() else b""
        _replace(folder, path, make(original))
        return ["--data-dir", str(folder)]
    return prepare


def _model(kind: str) -> callable:
    """Case set-up: a local checkpoint folder that is wrong in one way."""
    def prepare(tmp_path, data_dir):
        from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

        from samrepro.io.models import embedded_checkpoint, load_tokenizer

        folder = tmp_path / f"model-{kind}"
        small = dict(vocab_size=49152, hidden_size=16, intermediate_size=32,
                     num_attention_heads=2, num_key_value_heads=2)
        if kind == "gpt2":  # an architecture samrepro does not know
            model = GPT2LMHeadModel(GPT2Config(vocab_size=49152, n_embd=16, n_layer=1, n_head=2))
        else:
            layers = 0 if kind == "no-layers" else 1
            model = LlamaForCausalLM(LlamaConfig(num_hidden_layers=layers, **small))
        model.save_pretrained(folder)
        if kind == "bin-only":  # transformers writes safetensors only: make the old format
            import torch

            torch.save(model.state_dict(), folder / "pytorch_model.bin")
            (folder / "model.safetensors").unlink()
        load_tokenizer(str(embedded_checkpoint())).save_pretrained(folder)
        return ["--model", str(folder)]
    return prepare


def _file(name: str, text: str) -> callable:
    def prepare(tmp_path, data_dir):
        (tmp_path / name).write_text(text)
        return [str(tmp_path / name)]
    return prepare


def _sensitivity(tmp_path, data_dir):
    from samrepro.io.models import load_model, prunable_linears

    names = prunable_linears(load_model("tiny-llama")[0])
    path = tmp_path / "sens.json"
    path.write_text(json.dumps({"matrices": {n: {"trace": 1.0 + k} for k, n in enumerate(names)}}))
    return ["--sensitivity", str(path)]


def _truncated_gzip(original: bytes) -> bytes:
    whole = gzip.compress(b'{"text": "a document"}\n' * 2000)
    return whole[: len(whole) // 2]


# (case id, arguments, set-up adding arguments or None, what the message must say)
CASES = [
    ("sparsity-above-one", ["--sparsity", "1.5"], None, "[0, 1)"),
    ("sparsity-negative", ["--sparsity", "-0.2"], None, "[0, 1)"),
    ("sparsity-nan", ["--sparsity", "nan"], None, "[0, 1)"),
    ("sparsity-missing", [], None, "give --sparsity"),
    ("alpha-negative", ["--sparsity", "0.5", "--alpha", "-1"], None, "alpha must be in [0, 1)"),
    ("alpha-one", ["--sparsity", "0.5", "--alpha", "1"], None, "alpha must be in [0, 1)"),
    ("alpha-too-wide", ["--sparsity", "0.5", "--allocation", "exact", "--alpha", "0.7"],
     _sensitivity, "too wide"),
    ("wbits-1", ["--sparsity", "0.5", "--wbits", "1"], None, "wbits must be 16"),
    ("wbits-20", ["--sparsity", "0.5", "--wbits", "20"], None, "wbits must be 16"),
    ("nm-4:4", ["--nm", "4:4"], None, "0 < N < M"),
    ("nm-0:4", ["--nm", "0:4"], None, "0 < N < M"),
    ("nm-2:0", ["--nm", "2:0"], None, "0 < N < M"),
    ("nm-and-other-sparsity", ["--sparsity", "0.6", "--nm", "2:4"], None, "agree"),
    ("nm-and-mixed-allocation", ["--nm", "2:4", "--allocation", "paper"], None,
     "cannot be combined"),
    ("unknown-hub-model", ["--sparsity", "0.5", "--model", "no-such-org/no-such-model"], None,
     "could not load model"),
    ("unsupported-architecture", ["--sparsity", "0.5"], _model("gpt2"), "is not supported"),
    ("model-without-prunable-layers", ["--sparsity", "0.5"], _model("no-layers"),
     "no prunable linear layers"),
    ("bin-only-checkpoint", ["--sparsity", "0.5"], _model("bin-only"), "--allow-bin-weights"),
    ("seqlen-over-context", ["--sparsity", "0.5", "--seqlen", "100000"], None, "context"),
    ("seqlen-zero", ["--sparsity", "0.5", "--seqlen", "0"], None, "seqlen must be a whole number of at least 1"),
    ("nsamples-zero", ["--sparsity", "0.5", "--nsamples", "0"], None, "nsamples must be a whole number of at least 1"),
    ("eval-windows-zero", ["--sparsity", "0.5", "--eval-windows", "0"], None, "eval_windows must be a whole number of at least 1"),
    ("data-folder-missing", ["--sparsity", "0.5", "--data-dir", "/nonexistent/folder"], None,
     "does not exist"),
    ("data-folder-without-test-split", ["--sparsity", "0.5"],
     _data("ptb/ptb.test.txt", lambda b: None), "PTB test not found"),
    ("no-local-train-split", ["--sparsity", "0.5", "--calib", "wikitext2"], None,
     "WikiText-2 raw train not found"),
    ("empty-eval-text", ["--sparsity", "0.5"], _data("ptb/ptb.test.txt", lambda b: b""),
     "fewer than one window"),
    ("empty-train-text", ["--sparsity", "0.5", "--calib", "ptb"], _data("ptb/ptb.train.txt", lambda b: b"\n\n"),
     "not more than seqlen"),
    ("eval-file-not-text", ["--sparsity", "0.5"],
     _data("ptb/ptb.test.txt", lambda b: bytes(range(256)) * 8), "is not UTF-8 text"),
    ("c4-sample-truncated", ["--sparsity", "0.5", "--calib", "c4"],
     _data("c4/c4_validation_2k.jsonl", lambda b: b[: len(b) // 2]), "truncated"),
    ("c4-sample-wrong-format", ["--sparsity", "0.5", "--calib", "c4"],
     _data("c4/c4_validation_2k.jsonl", lambda b: b"id,text\n1,hello\n" * 2000),
     "expected a JSON object with a 'text' field"),
    ("c4-shard-truncated-gzip", ["--sparsity", "0.5", "--calib", "c4"],
     _data("c4/c4-train.00000-of-01024.json.gz", _truncated_gzip), "truncated"),
    ("sensitivity-file-not-json", ["--sparsity", "0.5", "--allocation", "exact", "--sensitivity"],
     _file("bad.json", "{not json"), "not a readable"),
]


@pytest.mark.parametrize("args, prepare, message", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, capsys, data_dir, args, prepare, message):
    out, saved = tmp_path / "out" / "run.json", tmp_path / "out" / "pruned"
    extra = prepare(tmp_path, data_dir) if prepare else []
    capsys.readouterr()  # what the set-up printed
    code = main(["prune", "--model", "tiny-llama", "--calib", "c4", "--nsamples", "2",
                 "--seqlen", "32", "--eval", "ptb", "--eval-windows", "1", "--quiet",
                 "--json", str(out), "--save", str(saved), *args, *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("samrepro: error:") and "\n" not in err, err
    assert message in err, err
    assert "Traceback" not in err
    assert not out.exists() and not saved.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [["--sparsity", "half"], ["--nm", "2-4"],
                                  ["--sparsity", "0.5", "--saliency", "random"],
                                  ["--sparsity", "0.5", "--eval", "wikitext3"]],
                         ids=["sparsity-not-a-number", "nm-not-n:m", "unknown-saliency",
                              "unknown-dataset"])
def test_malformed_flags_are_refused_by_argparse(tmp_path, capsys, args):
    """argparse's own refusal: usage line and one error line, exit status 2."""
    out = tmp_path / "run.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["prune", "--model", "tiny-llama", *args, "--json", str(out)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "error:" in err and "Traceback" not in err
    assert not out.exists()


def test_a_finished_save_folder_of_another_run_is_refused(tmp_path, capsys, data_dir):
    """--save never overwrites: a folder holding other weights is an error, nothing changes."""
    saved = tmp_path / "pruned"
    base = ["prune", "--model", "tiny-llama", "--calib", "c4", "--nsamples", "2", "--seqlen",
            "32", "--eval", "", "--quiet", "--save", str(saved)]
    assert main([*base, "--sparsity", "0.5"]) == 0
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    assert main([*base, "--sparsity", "0.5"]) == 0  # the same run again: the same weights
    assert main([*base, "--sparsity", "0.6"]) == 2
    assert "holds another pruned model" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    shutil.rmtree(saved)


def test_bin_weights_load_only_with_the_explicit_opt_in(tmp_path, data_dir):
    import torch

    from samrepro.errors import UserError
    from samrepro.io.models import load_model

    args = _model("bin-only")(tmp_path, data_dir)
    with pytest.raises(UserError, match="--allow-bin-weights"):
        load_model(args[1])
    model, _ = load_model(args[1], allow_bin_weights=True)
    stored = torch.load(Path(args[1]) / "pytorch_model.bin", weights_only=True)
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight,
                       stored["model.layers.0.mlp.up_proj.weight"])


# ---- notebook parameters: checked as the CLI checks its flags (samrepro.checks) -------------

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _parameters_cell(name: str) -> str:
    cells = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]
    source = next(c["source"] for c in cells if "parameters" in c["metadata"].get("tags", []))
    return "".join(source)  # nbformat stores a string or a list of lines


def _namespace(name: str, **given) -> dict:
    """A notebook's globals after its parameters cell and papermill's injected cell."""
    import ast

    namespace = {"In": [], "Out": {}, "get_ipython": print, "__name__": "__main__"}
    exec(compile(ast.parse(_parameters_cell(name)), name, "exec"), namespace)
    namespace.update(given)
    return namespace


def test_each_notebooks_parameters_are_the_names_its_settings_know():
    import ast

    from samrepro.study.settings import PARAMETERS

    for name, known in PARAMETERS.items():
        tree = ast.parse(_parameters_cell(name))
        assigned = [t.id for node in tree.body for t in node.targets]
        assert assigned == list(known), name
        assert all(ast.literal_eval(node.value) is None for node in tree.body), name


@pytest.mark.parametrize("given, key, expected", [
    ({"models": '["smoke-llama"]'}, "models", ["smoke-llama"]),  # papermill -p: a JSON string
    ({"models": "[smoke-llama, smoke-opt]"}, "models", ["smoke-llama", "smoke-opt"]),  # YAML
    ({"models": ["smoke-llama"]}, "models", ["smoke-llama"]),  # papermill -y: a list
    ({"models": "smoke-llama"}, "models", ["smoke-llama"]),  # one name
    ({"models": "smoke-opt,smoke-llama"}, "models", ["smoke-opt", "smoke-llama"]),
    ({"sparsities": 0.6}, "sparsities", [0.6]),  # -p sparsities 0.6: papermill's float
    ({"sparsities": "[0.5, 0.7]"}, "sparsities", [0.5, 0.7]),
    ({}, "models", ["smoke-opt", "smoke-llama"]),  # the preset's
])
def test_list_parameters_take_a_list_a_json_or_yaml_string_or_one_value(given, key, expected):
    from samrepro.study import settings

    assert settings.notebook("table1", _namespace("table1", preset="smoke", **given),
                             show=False)[key] == expected


def test_the_regression_check_runs_only_for_the_stored_case():
    from samrepro.study import settings

    def skip(**given):
        s = settings.notebook("table1", _namespace("table1", **given), show=False)
        return settings.regression_skip(s)

    assert skip(preset="smoke") is None
    assert skip(preset="smoke", seeds=2, models="smoke-opt,smoke-llama") is None  # = the preset's
    assert skip(preset="smoke", models='["smoke-llama"]') == "sets models"
    assert skip(preset="smoke", seeds=3, alpha=0.05) == "sets seeds, alpha"
    assert skip(preset="embedded") == "is at the embedded preset"


# ---- the same mistakes on the other routes: notebook parameters, torchrun, make variables ----
# (case id, route, input, what the one-line message must say). notebook: a notebook's
# parameters as papermill injects them (settings.notebook); torchrun: samrepro.commands.distributed's
# options; make: variables of a make target.
ROUTE_CASES = [
    ("nb-unknown-name", "notebook", {"sparsity": 1.2}, "table1 has no parameter 'sparsity'"),
    ("nb-two-unknown-names", "notebook", {"model": "x", "seed": 1}, "'model', 'seed'"),
    ("nb-sparsity-above-one", "notebook", {"sparsities": 1.2}, "sparsities must be in [0, 1)"),
    ("nb-sparsity-in-list", "notebook", {"sparsities": "[0.5, 1.5]"}, "must be in [0, 1)"),
    ("nb-sparsity-word", "notebook", {"sparsities": "half"}, "sparsities must be a number"),
    ("nb-models-broken-list", "notebook", {"models": '["smoke-llama"'}, "must be a list"),
    ("nb-models-empty", "notebook", {"models": "[]"}, "at least one value"),
    ("nb-model-layers-not-a-number", "notebook", {"models": "embedded@two"}, "after @"),
    ("nb-seeds-zero", "notebook", {"seeds": 0}, "seeds must be a whole number of at least 1"),
    ("nb-seeds-fraction", "notebook", {"seeds": 1.5}, "seeds must be a whole number"),
    ("nb-nsamples-zero", "notebook", {"nsamples": 0}, "nsamples must be a whole number"),
    ("nb-seqlen-word", "notebook", {"seqlen": "long"}, "seqlen must be a whole number"),
    ("nb-probes-one", "notebook", {"probes": 1}, "probes must be a whole number of at least 2"),
    ("nb-eval-windows-zero", "notebook", {"eval_windows": 0}, "eval_windows must be"),
    ("nb-alpha-too-wide", "notebook", {"alpha": 0.9}, "too wide"),
    ("nb-alpha-negative", "notebook", {"alpha": -0.1}, "alpha must be in [0, 1)"),
    ("nb-unknown-allocation", "notebook", {"allocation": "best"}, "unknown allocation 'best'"),
    ("nb-unknown-estimator", "notebook", {"estimator": "hessian"}, "unknown estimator"),
    ("nb-unknown-preset", "notebook", {"preset": "large"}, "unknown preset 'large'"),
    ("nb-device-absent", "notebook", {"device": "cuda:7"}, "device 'cuda:7' is not available"),
    ("nb-device-typo", "notebook", {"device": "gpu"}, "unknown device 'gpu'"),
    ("nb-data-dir-missing", "notebook", {"data_dir": "/nonexistent/folder"}, "does not exist"),
    ("nb3-unknown-setting", "notebook:table3", {"zero_shot_settings": "five-shot"},
     "unknown zero_shot_settings entry"),
    ("nb3-limit-zero", "notebook:table3", {"zero_shot_limit": 0}, "zero_shot_limit must be"),
    ("nb-figure1-has-no-sparsities", "notebook:figure1", {"sparsities": [0.5]},
     "figure1 has no parameter 'sparsities'"),
    ("tr-not-hutchinson", "torchrun", ["--estimator", "fisher"], "spreads the probes of a whole-model estimate"),
    ("tr-nsamples-zero", "torchrun", ["--nsamples", "0"], "--nsamples must be a whole number"),
    ("tr-probes-one", "torchrun", ["--probes", "1"], "--probes must be a whole number of at least 2"),
    ("tr-rel-tol-negative", "torchrun", ["--rel-tol", "-0.1"], "--rel-tol must be a number ≥ 0"),
    ("tr-device-absent", "torchrun", ["--device", "cuda"], "device 'cuda' is not available"),
    ("tr-data-dir-missing", "torchrun", ["--data-dir", "/nonexistent/folder"], "does not exist"),
    ("make-verify-unknown-notebook", "make", ["verify", "NOTEBOOK=table9"], "table9.json"),
    ("make-verify-seeds-zero", "make", ["verify", "SEEDS=0"], "seeds=0"),
    ("make-verify-unknown-preset", "make", ["verify", "PRESET=large"], "large/table1.json"),
    ("make-verify-seeds-word", "make", ["verify", "SEEDS=three"], "invalid int value"),
]


def _make(args: list[str], tmp_path: Path):
    """`make` in the checkout with the running Python's environment as its .venv (never set
    up again: -o), its stderr."""
    import subprocess
    import sys

    venv = Path(sys.executable).parent.parent
    done = subprocess.run(["make", "--no-print-directory", f"VENV={venv}",
                           "-o", f"{venv}/.installed", *args], cwd=NOTEBOOKS.parent,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stderr


@pytest.mark.parametrize("route, given, message", [c[1:] for c in ROUTE_CASES],
                         ids=[c[0] for c in ROUTE_CASES])
def test_bad_input_on_every_route(tmp_path, capsys, monkeypatch, route, given, message):
    """One line naming the problem (exit status 2 for commands), nothing written, and the
    results already there unchanged."""
    from samrepro.commands import distributed
    from samrepro.study import settings
    from samrepro.errors import UserError

    committed = sorted((NOTEBOOKS.parent / "results").rglob("*"))
    before = {p: p.read_bytes() for p in committed if p.is_file()}
    monkeypatch.setenv("SAMREPRO_RESULTS_DIR", str(tmp_path / "results"))
    if route.startswith("notebook"):
        name = route.partition(":")[2] or "table1"
        with pytest.raises(UserError) as error:
            settings.notebook(name, _namespace(name, **{"preset": "smoke", **given}), show=False)
        err = f"samrepro: error: {error.value}"
    elif route == "torchrun":
        out = tmp_path / "sens.json"
        code = distributed.main(["--model", "tiny-llama", "--json", str(out), *given])
        err = capsys.readouterr().err.strip()
        assert code == 2 and not out.exists(), err
    else:
        code, err = _make(given, tmp_path)
        assert code == 2, err
        # make adds its own line about the failed recipe; the command's is one line
        err = "\n".join(line for line in err.strip().splitlines() if not line.startswith("make"))
        err = err.splitlines()[-1] if "invalid int value" in err else err  # argparse's usage
    assert err.startswith(("samrepro: error:", "samrepro verify: error:", "usage:")) \
        or "error:" in err, err
    assert "\n" not in err and "Traceback" not in err and message in err, err
    assert not (tmp_path / "results").exists()
    after = sorted((NOTEBOOKS.parent / "results").rglob("*"))
    assert after == committed and all(p.read_bytes() == b for p, b in before.items())


@pytest.mark.parametrize("params, message", [
    (["-p", "sparsity", "1.2"], "UserError: table1 has no parameter 'sparsity': its parameters "
                                "are preset, models, allocation, sparsities, alpha, eval_windows, "
                                "nsamples, seqlen, estimator, probes, seeds, device, data_dir, "
                                "output_dir"),
    (["-y", "seeds: 0"], "UserError: seeds must be a whole number of at least 1, got 0"),
], ids=["unknown-name", "seeds-zero"])
def test_papermill_refuses_a_bad_parameter_in_one_line(tmp_path, params, message):
    """The real route: papermill's exit status is not 0, and the notebook's error is one line
    (UserError renders without a traceback in IPython); nothing is written."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "SAMREPRO_RESULTS_DIR": str(tmp_path / "results")}
    done = subprocess.run([sys.executable, "-m", "papermill", "--cwd", str(NOTEBOOKS),
                           str(NOTEBOOKS / "table1.ipynb"), str(tmp_path / "out.ipynb"),
                           "-p", "preset", "smoke", *params],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode != 0
    cells = json.loads((tmp_path / "out.ipynb").read_text())["cells"]
    errors = [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert [e["traceback"] for e in errors] == [[message]]
    assert not (tmp_path / "results").exists()
