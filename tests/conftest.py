"""Test environment: offline, caches outside the repo and the home folder, local data."""

import os
import tempfile
from pathlib import Path

# Before transformers/datasets are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
_cache = Path(tempfile.gettempdir()) / "samrepro-test-cache"
os.environ.setdefault("SAMREPRO_CACHE_DIR", str(_cache))
os.environ.setdefault("HF_HOME", str(_cache / "hf"))
os.environ.setdefault("MPLCONFIGDIR", str(_cache / "matplotlib"))
_shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
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
    from samrepro.models import embedded_checkpoint, load_tokenizer

    return load_tokenizer(str(embedded_checkpoint()))
