"""benchmarks/gpu_check.sh needs a GPU and the hub; here its dry run (DRY=1: the tiny model,
the CPU, the local data folder, no table1) runs every other step, so that the script a person
with a GPU runs has at least run end to end once."""

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def test_gpu_check_dry_run_passes_every_step(tmp_path, data_dir):
    from samrepro.models import embedded_checkpoint

    cache = tmp_path / "out" / "cache"
    cache.mkdir(parents=True)
    (cache / "smollm2-135m").symlink_to(embedded_checkpoint())  # the tiny model's tokenizer
    env = {**os.environ, "DRY": "1", "OUT": str(tmp_path / "out"),
           "PYTHON": str(Path(os.sys.executable)), "SAMREPRO_DATA_DIR": str(data_dir)}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "4 passed, 0 failed"
    assert [line.split()[:2] for line in lines if line.startswith(("PASS", "FAIL"))] == [
        ["PASS", "gpu"], ["PASS", "plan"], ["PASS", "hub-data"], ["PASS", "precision"]]
    assert "fits on the CPU" in done.stdout  # the plan is printed
    assert "float32, same probes: Spearman" in (tmp_path / "out" / "precision.log").read_text()
