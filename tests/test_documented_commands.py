"""Every papermill and make command that README.md and docs/*.md show runs as written: each is
extracted, split as the shell splits it (shlex), and then

- papermill: its parameters are parsed by papermill's own command line (nothing executed) and
  handed to the notebook's settings, which check them as a run would (the plan of a paper-
  scale run is not computed: it reads the hub); one of them runs for real at the smoke preset;
- make: `make -n` prints the recipe without running it (and without setting up a .venv).

`samrepro` and `torchrun` commands are parsed against argparse by tests/test_documented_cli.py.
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands(word: str) -> list[tuple[str, str]]:
    """(document, command) for each command starting with `word`: lines of fenced blocks
    (with their `\\` continuations) and inline code spans."""
    found = []
    for path in DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
        for block in blocks:
            for line in block.replace("\\\n", " ").splitlines():
                if line.strip().startswith(word + " "):
                    found.append((path.name, line.strip()))
        outside = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
        for span in re.findall(r"`([^`\n]+)`", outside):
            if span.startswith(word + " "):
                found.append((path.name, span))
    return sorted(set(found))


PAPERMILL = _commands("papermill")
MAKE = _commands("make")


def test_the_documents_show_commands_of_both_kinds():
    assert len(PAPERMILL) >= 3 and len(MAKE) >= 5, (PAPERMILL, MAKE)


def _papermill_parameters(words: list[str]) -> tuple[str, dict]:
    """The notebook and the parameters papermill would inject, from its own command line."""
    from papermill import cli

    captured = {}

    def execute_notebook(input_path, output_path, parameters=None, **kwargs):
        captured.update(notebook=input_path, parameters=parameters)

    original = cli.execute_notebook
    cli.execute_notebook = execute_notebook
    try:
        cli.papermill.main(words[1:], prog_name="papermill", standalone_mode=False)
    finally:
        cli.execute_notebook = original
    return Path(captured["notebook"]).stem, captured["parameters"]


@pytest.mark.parametrize("document, command", PAPERMILL, ids=[c for _, c in PAPERMILL])
def test_documented_papermill_commands_parse_and_their_settings_check(document, command,
                                                                      monkeypatch):
    from samrepro.machine import plan
    from samrepro.study import settings

    from test_bad_input import _namespace

    words = shlex.split(command, comments=True)
    name, parameters = _papermill_parameters(words)
    assert (ROOT / "notebooks" / f"{name}.ipynb").exists(), command
    monkeypatch.setattr(plan, "show", lambda s, lm_eval: None)  # a paper-scale plan reads the hub
    s = settings.notebook(name, _namespace(name, **parameters), show=False)
    for key, value in parameters.items():  # what was given is what the run uses
        if key in ("models", "sparsities"):
            assert s[key] == (value if isinstance(value, list) else [value]) or \
                isinstance(value, str), (key, value, s[key])
        elif key != "preset":
            assert s[key] == value, (key, value, s[key])
    if "models" in parameters:
        assert all(not m.startswith("[") for m in s["models"]), s["models"]


@pytest.mark.parametrize("params", [
    """-p models '["smoke-llama"]'""",  # the README's form, at the smoke preset
    "-y 'models: [smoke-llama]'",
], ids=["p-json-list", "y-yaml-list"])
def test_the_readme_form_runs_table1_to_the_end_at_the_smoke_preset(tmp_path, params):
    import json
    import os

    out = tmp_path / "out.ipynb"
    env = {**os.environ, "SAMREPRO_RESULTS_DIR": str(tmp_path / "results")}
    words = shlex.split(f"papermill --cwd notebooks notebooks/table1.ipynb {out} "
                        f"-p preset smoke {params}")
    done = subprocess.run([sys.executable, "-m", *words], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads((tmp_path / "results" / "smoke" / "table1.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"smoke-llama"}
    cells = json.loads(out.read_text())["cells"]
    assert "regression check skipped" in json.dumps(cells[-1]["outputs"])


@pytest.mark.parametrize("document, command", MAKE, ids=[c for _, c in MAKE])
def test_documented_make_commands_dry_run(document, command):
    words = shlex.split(re.sub(r"<([^>]+)>", "cu121", command), comments=True)  # <cuda tag>
    venv = Path(sys.executable).parent.parent  # -n: nothing runs, nothing is set up
    done = subprocess.run(["make", "-n", f"VENV={venv}", *words[1:]], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() or "Nothing to be done" in done.stderr, command
