"""`make lab`: JupyterLab starts from the project's environment, offline, on the notebooks.

The test starts it headless on a free loopback port with the same launcher `make lab` runs
(samrepro.commands.lab), checks that it answers, lists the notebooks and offers the project's Python as
their kernel, and stops it."""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from samrepro.commands import lab

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read().decode("utf-8")


def test_make_lab_runs_the_offline_launcher_on_the_notebooks():
    dry = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "-m samrepro.commands.lab --notebook-dir notebooks" in dry.stdout
    cmd = lab.command(["--no-browser"])
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]  # this environment's Python
    assert "--LabApp.news_url=None" in cmd and "--LabApp.extension_manager=readonly" in cmd


@pytest.mark.skipif(not Path(sys.executable).exists(), reason="no interpreter path")
def test_jupyterlab_starts_headless_lists_the_notebooks_and_stops(tmp_path):
    pytest.importorskip("jupyterlab")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "IPYTHONDIR": str(tmp_path / "ipython"),
           "JUPYTER_PLATFORM_DIRS": "1", "BROWSER": "true"}
    log = tmp_path / "lab.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "samrepro.commands.lab", "--notebook-dir", str(ROOT / "notebooks"),
             "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={token}"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"JupyterLab exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            try:
                status, body = _get(f"{base}/api/contents?token={token}")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, f"no answer in 120 s:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
        assert status == 200
        listed = {item["name"] for item in json.loads(body)["content"]}
        assert set(NOTEBOOKS) <= listed, listed

        status, page = _get(f"{base}/lab?token={token}")
        assert status == 200 and "JupyterLab" in page

        status, body = _get(f"{base}/api/kernelspecs?token={token}")
        specs = json.loads(body)
        assert status == 200 and "python3" in specs["kernelspecs"]  # the notebooks' kernel

        # the news toast is not shown: news and update checks default to never (lab.SETTINGS)
        status, body = _get(f"{base}/lab/api/settings/@jupyterlab/apputils-extension:"
                            f"notification?token={token}")
        schema = json.loads(body)["schema"]["properties"]
        assert status == 200 and schema["fetchNews"]["default"] == "false", schema
        assert schema["checkForUpdates"]["default"] is False

        with pytest.raises(urllib.error.HTTPError):  # and nobody else's: a token is needed
            _get(f"{base}/api/contents")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode is not None
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        _get(f"{base}/api/contents?token={token}", timeout=5)
