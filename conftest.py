"""Test environment for tests/ and the nbval notebooks: offline, caches outside the repo and
the home folder, local data. At the root so that it applies to `pytest notebooks/x.ipynb` too."""

import os
import tempfile
from pathlib import Path

# Before transformers/datasets are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# The embedded checkpoint (made once, ~20 s) is kept across sessions; cached runs and
# sensitivities are not, so that every session computes what it checks.
_kept = Path(os.environ.get("SAMREPRO_CACHE_DIR") or Path(tempfile.gettempdir()) / "samrepro-test-cache")
_session = Path(tempfile.mkdtemp(prefix="samrepro-tests-"))
os.environ["SAMREPRO_CACHE_DIR"] = str(_kept)
from samrepro.io.models import embedded_checkpoint  # noqa: E402

(_session / "smollm2-135m").symlink_to(embedded_checkpoint())
os.environ["SAMREPRO_CACHE_DIR"] = str(_session)
os.environ.setdefault("HF_HOME", str(_kept / "hf"))
os.environ.setdefault("MPLCONFIGDIR", str(_kept / "matplotlib"))
# nbval runs every notebook at the smoke preset, writing its results outside the checkout
os.environ["SAMREPRO_PRESET"] = "smoke"
os.environ["SAMREPRO_RESULTS_DIR"] = str(_session / "results")
_shared = Path(__file__).resolve().parent.parent / "shared" / "data"
if "SAMREPRO_DATA_DIR" not in os.environ and _shared.is_dir():
    os.environ["SAMREPRO_DATA_DIR"] = str(_shared)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The local data folder (SAMREPRO_DATA_DIR, or ../shared/data beside the checkout)."""
    folder = os.environ.get("SAMREPRO_DATA_DIR")
    if not folder or not Path(folder).is_dir():
        pytest.skip("no local data folder: set SAMREPRO_DATA_DIR (e.g. to ../shared/data)")
    return Path(folder)


@pytest.fixture(scope="session")
def embedded_tokenizer():
    from samrepro.io.models import embedded_checkpoint, load_tokenizer

    return load_tokenizer(str(embedded_checkpoint()))


# Tests write only to temporary folders: a file the session adds to (or changes in) the
# checkout fails the run, naming it (`git status` stays clean after `make test`).
_ROOT = Path(__file__).resolve().parent


def _tree_changes() -> set[str] | None:
    import subprocess

    try:
        done = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                              cwd=_ROOT, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return set(done.stdout.splitlines()) if done.returncode == 0 else None


def pytest_sessionstart(session):
    session.config._tree_before = _tree_changes()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_tree_before", None)
    after = _tree_changes() if before is not None else None
    if after is not None and after - before:
        print(f"\nthe tests wrote into the checkout (they must use temporary folders): "
              f"{sorted(after - before)[:10]}")
        session.exitstatus = 1
