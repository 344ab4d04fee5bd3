"""benchmarks/gpu_check.sh: its dry run (every step on the CPU, tiny sizes) passes with the
network cut off, writes each step's result, and a step that hangs is cut off by its timeout
while the finished steps stay in the JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"

# Loaded by every Python process started with it on PYTHONPATH (the check's steps, torchrun,
# papermill's kernel): a connection to anything but this machine is refused and logged.
NO_NETWORK = '''
import os, socket

_LOG = os.environ["NETWORK_ATTEMPTS_LOG"]
_LOCAL = ("127.", "::1", "localhost", "0.0.0.0")


def _refuse(address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not host.startswith(_LOCAL) and "/" not in host \
            and host != socket.gethostname():
        with open(_LOG, "a") as f:
            f.write(f"{os.getpid()} {address!r}\\n")
        raise OSError(f"network disabled by the test: {address!r}")


_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse(address)
    return _connect(self, address)


def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse(address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    _refuse((host,))
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
'''


def offline_env(tmp_path, data_dir) -> dict:
    guard = tmp_path / "no-network"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NO_NETWORK)
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens
    return {**os.environ, "PYTHON": sys.executable, "SAMREPRO_DATA_DIR": str(data_dir),
            "PYTHONPATH": str(guard), "NETWORK_ATTEMPTS_LOG": str(tmp_path / "attempts.log"),
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HTTP_PROXY": dead,
            "HTTPS_PROXY": dead, "ALL_PROXY": dead, "http_proxy": dead, "https_proxy": dead,
            "NO_PROXY": "", "no_proxy": ""}


def test_the_guard_refuses_and_logs_a_connection(tmp_path, data_dir):
    env = offline_env(tmp_path, data_dir)
    code = ("import socket\ntry:\n    socket.create_connection(('huggingface.co', 443), 2)\n"
            "except OSError as e:\n    print('refused', e)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)
    assert "refused" in done.stdout and "network disabled" in done.stdout
    assert "huggingface.co" in (tmp_path / "attempts.log").read_text()


def test_dry_run_passes_offline_and_writes_each_step(tmp_path, data_dir):
    out = tmp_path / "out"
    env = offline_env(tmp_path, data_dir)
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", str(out)], env=env,
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "gpu_check.json").read_text())
    steps = report["steps"]
    assert list(steps) == ["environment", "plan", "prune", "hutchinson", "memory", "torchrun",
                           "table1"]
    for name, entry in steps.items():
        assert (out / "steps" / f"{name}.json").exists() and (out / f"{name}.log").exists()
        # table1 needs the embedded model's weights and papermill, both here in the test env
        assert entry["status"] == "pass", (name, entry, (out / f"{name}.log").read_text()[-3000:])
    assert report["summary"] == {"pass": 7, "fail": 0, "skipped": 0}
    assert done.stdout.splitlines()[-1].startswith("7 passed, 0 failed, 0 skipped")
    # nothing tried to reach past this machine
    attempts = tmp_path / "attempts.log"
    assert not attempts.exists(), attempts.read_text()
    # figures an independent fact checks: the plans' parameter counts are the published ones
    # (the step asserts it within 1%); a 70B model fits one H100 only with its weights streamed
    # from host RAM (the plan's verdict counts the host's layers)
    figures = steps["plan"]["figures"]
    assert figures["parameters_millions"]["llama-2-70b"] in range(68_300, 69_700)
    assert figures["llama-2-70b on 1xH100-80GB"]["verdict"] == "fits on 1 GPU"
    prune = steps["prune"]["figures"]
    assert set(prune) == {"smoke-opt", "smoke-llama", "opt-ptb-standin"}
    for row in prune.values():  # on the dry run the "device" is the CPU: identical numbers
        assert row["fp32_mask_disagreement"] == 0 and row["fp32_ppl_relative"] == 0


def test_a_step_past_its_timeout_fails_and_the_finished_ones_stay(tmp_path, data_dir,
                                                                   monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    monkeypatch.setenv("SAMREPRO_DATA_DIR", str(data_dir))
    monkeypatch.setitem(gpu_check.TIMEOUTS, "prune", 0.5)  # far too short for any model load
    code = gpu_check.main([str(tmp_path), "--dry-run", "--steps", "environment,prune"])
    assert code == 1
    steps = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    assert steps["environment"]["status"] == "pass"
    assert steps["environment"]["figures"]["corpora"]  # the data folder's corpora are listed
    assert steps["prune"] == {**steps["prune"], "status": "fail",
                              "reason": "timed out after 0.5 s"}
