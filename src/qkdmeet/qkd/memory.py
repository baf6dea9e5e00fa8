"""Keep freed memory for reuse: a block's arrays are large and made anew every block.

A 10^7-bit block makes ~200 MB of fresh arrays at each end (the sampler's events,
the fibre's frames, the announcement, Cascade's permutations), each well above
glibc's mmap threshold (128 kB, 32 MB at most): every one was mapped fresh and
unmapped when freed, so its every page was faulted in and zeroed again by the
kernel for the next block (numpy asks for transparent huge pages on large arrays,
so each fault zeroes 2 MB). On this 2-core VM that was the largest single cost of
the link: ``clear_page_erms`` took 47 % of a simulate run's CPU samples
(``perf record``), and 60-100 k page faults per block.

:func:`keep_freed_memory` makes malloc serve every block from its one main heap
(no mmap for large blocks; one arena, as a worker thread's arena is a set of 64 MB
maps deleted when they empty) and never give freed memory back to the kernel (no
trim), so the next block's arrays reuse the last one's pages. Measured: arrays of a
block's sizes made and freed 30 times in one process, 40,200 page faults ->
1,455-1,966 and 1.0-1.55 s -> 0.73-0.75 s of CPU; the in-process link in steady
state, 6,200 -> 4,300 page faults per block with the heap alone, ~1,000 with one
arena. The cost: the process keeps its peak heap (about the pipeline's blocks in
flight) for its lifetime, which a QKD node holds anyway; the threads share one
arena's lock (a handful of threads, each allocating a few large arrays per block).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

# mallopt(3) parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
#: The largest trim threshold mallopt takes (an int): freed memory is never trimmed.
_NEVER_TRIM = (1 << 31) - 1

_kept = False


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (once per process).

    False where the C library is not glibc (musl, macOS) or refuses: nothing
    changes then, the link only runs slower.
    """
    global _kept
    if _kept:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _kept = (bool(mallopt(_M_ARENA_MAX, 1)) and bool(mallopt(_M_MMAP_MAX, 0))
             and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)))  # fmt: skip
    if not _kept:
        log.info("malloc keeps its defaults: a block's arrays are mapped fresh each block")
    return _kept
