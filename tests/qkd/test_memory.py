"""keep_freed_memory: a block's freed arrays are reused, not faulted in afresh."""

from __future__ import annotations

import resource

import numpy as np

from qkdmeet.qkd.memory import keep_freed_memory

_BLOCK_ARRAY = 48 << 20  # above glibc's largest mmap threshold (32 MB)


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def test_an_array_made_again_after_free_reuses_the_pages_of_the_last() -> None:
    assert keep_freed_memory()
    np.ones(_BLOCK_ARRAY, np.uint8)  # the heap grows once
    before = _faults()
    for _ in range(5):
        a = np.empty(_BLOCK_ARRAY, np.uint8)
        a.fill(1)  # every page written, as a block's arrays are
        del a
    # mapped afresh each time, that is >= 5 x 24 faults of 2 MB pages (12,288 of 4 kB)
    assert _faults() - before < 24
