"""A JSON cache of expensive results, keyed by everything that determines them.

Each entry is one file named by the hash of its key, holding the key itself: an entry whose
stored key differs (a hash collision, a foreign file) or that does not parse is recomputed,
never trusted. Entries are written atomically (files.write_json), so an interrupted run
leaves either a whole entry or none.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import Callable

from samrepro.heap import release_freed_memory
from samrepro.io.files import cache_dir, write_json
from samrepro.io.provenance import code_hash

FORMAT = 2  # bump when the meaning of cached values changes


def digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def cached(kind: str, key: dict, compute: Callable[[], dict]) -> dict:
    """compute() once per key; later calls with an equal key read the stored value.

    The key always includes provenance.code_hash(): a change to the code that computes the
    numbers (the solver, say) recomputes instead of serving a value the old code made."""
    key = json.loads(json.dumps({**key, "format": FORMAT, "code": code_hash()}))  # as stored: tuples become lists
    path = cache_dir() / kind / f"{digest(key)}.json"
    if path.exists():
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            entry = None
        if isinstance(entry, dict) and entry.get("key") == key and "value" in entry:
            return entry["value"]
        warnings.warn(f"ignoring a damaged or foreign cache entry {path}; recomputing",
                      stacklevel=2)
    value = compute()
    release_freed_memory()  # a run's or an estimate's scratch memory: else notebooks grow run by run
    write_json(path, {"key": key, "value": value})
    return value
