"""Safe loading: no pickle anywhere in the package, remote code only on an explicit flag,
and a warning when stored results were made with other library versions."""

import ast
import json
import warnings
from pathlib import Path

import pytest

from samrepro.study import experiments
from samrepro.io import provenance
from samrepro.commands.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _calls(tree, name):
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == name]


@pytest.mark.parametrize("path", sorted((ROOT / "samrepro").glob("*.py")), ids=lambda p: p.name)
def test_the_package_never_unpickles(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names} | {(n.module or "").split(".")[0] for n in ast.walk(tree)
                                     if isinstance(n, ast.ImportFrom)}
    assert not imported & {"pickle", "dill", "joblib", "cloudpickle"}
    for call in _calls(tree, "torch.load"):
        assert any(k.arg == "weights_only" and ast.unparse(k.value) == "True"
                   for k in call.keywords), ast.unparse(call)
    for call in _calls(tree, "AutoModelForCausalLM.from_pretrained"):
        keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
        assert "use_safetensors" in keywords or "gguf_file" in keywords, ast.unparse(call)


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_never_trust_remote_code_by_default(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "trust_remote_code=True" not in source.replace(" ", "")
    assert "trust_remote_code" not in source  # nothing but the False default of RunConfig


def test_remote_code_is_off_unless_asked_for():
    assert experiments.RunConfig(model="x").trust_remote_code is False
    args = build_parser().parse_args(["prune", "--model", "x", "--sparsity", "0.5"])
    assert args.trust_remote_code is False and args.allow_bin_weights is False


def test_a_stored_result_from_other_versions_warns():
    now = provenance.versions()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert provenance.warn_if_versions_differ(now, "same") == {}
    old = {**now, "torch": "1.0.0"}
    with pytest.warns(UserWarning, match=r"torch 1\.0\.0 \(now "):
        differences = provenance.warn_if_versions_differ(old, "a result")
    assert differences == {"torch": ("1.0.0", now["torch"])}


def test_cached_run_from_other_versions_warns(tmp_path, monkeypatch):
    """A notebook reading a cached run made with other versions is told so (the run itself
    is replaced by a stand-in that returns a result stamped with an old torch)."""
    monkeypatch.setenv("SAMREPRO_CACHE_DIR", str(tmp_path))
    config = experiments.RunConfig(model="tiny-opt", sparsity=0.0, calib="ptb", nsamples=1,
                                   seqlen=16, eval=("ptb",), eval_windows=1)
    monkeypatch.setattr(experiments, "prune_and_evaluate",
                        lambda *a, **k: {"versions": {**provenance.versions(), "torch": "1.0.0"}})
    with pytest.warns(UserWarning, match="the cached run"):
        experiments.run(config, progress=False)
