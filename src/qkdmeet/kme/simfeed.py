"""Simulated link feed: identical random blocks to both KMEs' sinks at a set rate.

Not the product path: it stands in for :mod:`qkdmeet.qkd` (which delivers
real distilled blocks through the same :class:`~qkdmeet.qkd.sink.KeySink`
interface) in tests, the benchmark, ``qkdmeet kme pair`` and a ``[link]``
table of ``qkdmeet kme serve`` (the demo's ``--link model``).
"""

from __future__ import annotations

import asyncio
import hashlib
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


def seeded_block(seed: bytes, block_id: int, block_bytes: int) -> bytes:
    """Block ``block_id`` of a seeded simulated link: SHAKE-256(seed || block_id)."""
    return hashlib.shake_256(seed + block_id.to_bytes(8, "big")).digest(block_bytes)


class SeededLink:
    """A simulated link for two separate ``kme serve`` processes.

    Both sites share ``seed`` and ``epoch`` in their configs, so each derives
    the same block ``k`` (available from ``epoch + k * block_bits / rate``)
    without talking to the other; a KME that was down catches up on restart.
    Not secret in any sense (the key follows from the config file): it only
    stands in for :mod:`qkdmeet.qkd` where that link is not running.
    """

    def __init__(
        self,
        sink: KeySink,
        seed: bytes,
        *,
        bits_per_second: float,
        block_bytes: int,
        epoch: float,
        first: int,
        link_id: str = "link-ab",
    ) -> None:
        if bits_per_second <= 0 or block_bytes <= 0:
            raise ValueError("rate and block size must be positive")
        self.sink = sink
        self.seed = seed
        self.interval = block_bytes * 8 / bits_per_second
        self.block_bytes = block_bytes
        self.epoch = epoch
        self.next_id = first
        self.link_id = link_id

    async def run(self) -> None:
        """Put each block when it is due, until cancelled."""
        while True:
            due = self.epoch + self.next_id * self.interval
            now = time.time()
            if due > now:
                await asyncio.sleep(min(due - now, 1.0))
                continue
            data = seeded_block(self.seed, self.next_id, self.block_bytes)
            await self.sink.put(KeyBlock(self.link_id, self.next_id, data, created_at=due))
            self.next_id += 1
            if self.next_id % 64 == 0:
                await asyncio.sleep(0)
