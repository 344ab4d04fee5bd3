"""The run cache knows the code (issue 16): a change to the code that computes the numbers
gives another key; comments and docstrings do not."""

import shutil
from pathlib import Path

import samrepro
from samrepro.io import cache
from samrepro.io.provenance import NUMERIC_MODULES, code_hash


def _copy_package(tmp_path: Path) -> Path:
    folder = tmp_path / "samrepro"
    folder.mkdir()
    for name in NUMERIC_MODULES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(samrepro.__file__).parent / f"{name}.py", folder / f"{name}.py")
    return folder


def test_code_hash_follows_the_code_not_its_comments(tmp_path):
    folder = _copy_package(tmp_path)
    before = code_hash(folder)
    solver = folder / "method" / "solver.py"
    text = solver.read_text()
    solver.write_text(text.replace('"""The one-shot column solver', '"""The column solver', 1)
                      + "\n# a comment\n")
    code_hash.cache_clear()
    assert code_hash(folder) == before  # a docstring and a comment changed
    solver.write_text(text.replace("W1[j:i1].addr_(U1[j, j:i1], Err1[j], alpha=-1.0)",
                                   "W1[j:i1].addr_(U1[j, j:i1], Err1[j], alpha=-0.5)"))
    code_hash.cache_clear()
    assert code_hash(folder) != before  # the OBS update changed
    code_hash.cache_clear()


def test_runs_of_another_code_version_are_recomputed_and_equal_ones_served(monkeypatch, tmp_path):
    monkeypatch.setenv("SAMREPRO_CACHE_DIR", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return {"ppl": float(len(calls))}

    monkeypatch.setattr(cache, "code_hash", lambda: "aaaa")
    assert cache.cached("runs", {"model": "m"}, compute) == {"ppl": 1.0}
    assert cache.cached("runs", {"model": "m"}, compute) == {"ppl": 1.0}  # served
    monkeypatch.setattr(cache, "code_hash", lambda: "bbbb")
    assert cache.cached("runs", {"model": "m"}, compute) == {"ppl": 2.0}  # recomputed
    assert len(calls) == 2 and len(list((tmp_path / "runs").glob("*.json"))) == 2


def test_a_computed_value_gives_its_freed_memory_back_and_a_served_one_does_nothing(monkeypatch, tmp_path):
    """cached() calls heap.release_freed_memory after compute(), once, before the next run;
    a value read from the cache allocated nothing to give back."""
    monkeypatch.setenv("SAMREPRO_CACHE_DIR", str(tmp_path))
    events = []
    monkeypatch.setattr(cache, "release_freed_memory", lambda: events.append("release"))

    def compute():
        events.append("compute")
        return {"ppl": 1.0}

    cache.cached("runs", {"model": "m"}, compute)
    cache.cached("runs", {"model": "m"}, compute)  # served
    assert events == ["compute", "release"]
