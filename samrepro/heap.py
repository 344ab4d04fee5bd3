"""Give the memory the C library holds after frees back to the system, between runs
(io/cache.cached calls it after each computed run or estimate).

A notebook prunes and evaluates a dozen models one after another in one process. glibc keeps
freed buffers below its mmap threshold on its heap for reuse, and that threshold rises to the
size of every mapped buffer freed (up to 32 MiB), so after a run most of torch's activations
and Hessians live on the heap; the next run's buffers, of other sizes, do not fit the holes,
and the resident set grows run by run although each run needs the same. On SmolLM2 at the
embedded preset a notebook's peak rose from 1.2–1.5 GiB after its first run to 2.4 GiB after a
few dozen; `malloc_trim` after each run keeps it at the first run's, in ~15 ms a run
(results/embedded/TIMINGS.md). (Fixing the
threshold low instead maps and faults in every buffer anew: runs ~70% slower.) Numbers do not
change, only where freed bytes wait.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys


def release_freed_memory() -> bool:
    """glibc's malloc_trim(0): free pages anywhere in the heaps go back to the system. True
    when done; False where the C library has no malloc_trim (macOS, musl), a no-op there."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True
