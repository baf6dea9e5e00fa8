"""Simulated link feed: identical random blocks to both KMEs' sinks at a set rate.

Not the product path: it stands in for :mod:`qkdmeet.qkd` (which delivers
real distilled blocks through the same :class:`~qkdmeet.qkd.sink.KeySink`
interface) in tests, the benchmark and ``qkdmeet kme pair``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence

from qkdmeet.qkd.sink import KeyBlock, KeySink


async def feed_blocks(
    sinks: Sequence[KeySink],
    count: int,
    block_bytes: int,
    *,
    link_id: str = "link-ab",
    first: int = 0,
) -> int:
    """Put ``count`` identical random blocks into every sink; returns the next block_id."""
    for i in range(first, first + count):
        block = KeyBlock(link_id, i, os.urandom(block_bytes), created_at=time.time())
        for sink in sinks:
            await sink.put(block)
    return first + count


async def feed_forever(
    sinks: Sequence[KeySink], bits_per_second: float, block_bytes: int = 4096, first: int = 0
) -> None:
    """Feed blocks at ``bits_per_second`` until cancelled."""
    interval = block_bytes * 8 / bits_per_second
    next_id = first
    while True:
        next_id = await feed_blocks(sinks, 1, block_bytes, first=next_id)
        await asyncio.sleep(interval)
