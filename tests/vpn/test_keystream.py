"""OpenKey: zeroed on close, its buffers never shared by two keys; a stopping stream
counts the keys of its KME requests under way."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

from qkdmeet.kme.types import Key, KeyStatus
from qkdmeet.vpn.keystream import OpenKey, ReceiverKeyStream, SenderKeyStream, SenderState
from qkdmeet.vpn.memkeys import MemoryKeyPair, MemoryKeySupplier
from qkdmeet.vpn.metrics import DirectionMetrics


def test_a_closed_key_holds_no_key_bytes_and_its_buffers_serve_the_next_key() -> None:
    first_bytes, second_bytes = os.urandom(65536), os.urandom(65536)
    first = OpenKey(Key(uuid.uuid4(), first_bytes))
    buf = first.data
    first.mark_seen(100)
    first.close()
    assert buf == bytearray(65536)  # zeroed before it left the key
    assert first.closed and len(first.data) == 0 and first.view.size == 0 and first.seen.size == 0
    first.close()  # idempotent
    second = OpenKey(Key(uuid.uuid4(), second_bytes))
    assert bytes(second.data) == second_bytes
    assert not second.offset_seen(100)  # the bitmap came back zeroed
    assert bytes(second.view[:32]) == second_bytes[:32] and bytes(second.r) == second_bytes[:32]
    live = OpenKey(Key(uuid.uuid4(), first_bytes))
    assert live.data is not second.data  # a buffer in use is never handed out again
    second.close()
    live.close()


def test_the_used_key_journal_refuses_an_id_seen_before_also_within_one_delivery(
        tmp_path: Path) -> None:
    a, b = uuid.uuid4().bytes, uuid.uuid4().bytes
    state = SenderState(tmp_path)
    assert state.mark_used([a, b, a]) == [True, True, False]
    assert state.mark_used([b]) == [False]
    state.close()
    again = SenderState(tmp_path)  # a restart reads the journal
    assert again.used == {a, b}
    assert again.mark_used([a, uuid.uuid4().bytes]) == [False, True]
    again.close()


class _AnswerInFlight:
    """A KME that has counted its keys delivered while the answer is still on its way."""

    def __init__(self, inner: MemoryKeySupplier) -> None:
        self.inner = inner
        self.answered = asyncio.Event()  # the KME has counted the keys delivered
        self.delay = 0.3  # the answer's time on the wire

    async def status(self, slave_sae_id: str) -> KeyStatus:
        return await self.inner.status(slave_sae_id)

    async def enc_keys(self, slave_sae_id: str, number: int, size_bits: int) -> list[Key]:
        keys = await self.inner.enc_keys(slave_sae_id, number, size_bits)
        self.answered.set()
        await asyncio.sleep(self.delay)
        return keys

    async def dec_keys(self, master_sae_id: str, key_ids: Sequence[uuid.UUID]) -> list[Key]:
        keys = await self.inner.dec_keys(master_sae_id, key_ids)
        self.answered.set()
        await asyncio.sleep(self.delay)
        return keys


async def test_a_stopping_master_counts_the_keys_of_its_request_under_way() -> None:
    pair = MemoryKeyPair("a", "b")
    kme = _AnswerInFlight(pair.supplier("a"))
    metrics = DirectionMetrics()
    stream = SenderKeyStream(kme, "b", metrics, key_size_bits=8 * 4096, prefetch_bytes=4096)
    stream.start()
    await asyncio.wait_for(kme.answered.wait(), 5)
    await stream.stop()  # the KME counted the key delivered: the gateway must count it too
    delivered = pair.direction("a", "b").delivered
    assert delivered == 4096
    assert metrics.key_arrived_bytes == delivered == metrics.key_bytes
    assert metrics.key_buffered_bytes == 0


async def test_a_stopping_slave_counts_the_keys_of_its_fetches_under_way() -> None:
    pair = MemoryKeyPair("a", "b")
    (key,) = await pair.supplier("a").enc_keys("b", 1, 8 * 4096)
    kme = _AnswerInFlight(pair.supplier("b"))
    metrics = DirectionMetrics()
    stream = ReceiverKeyStream(kme, "a", metrics, lambda raw, ok: None)
    stream.want([key.key_id.bytes])
    await asyncio.wait_for(kme.answered.wait(), 5)
    await stream.stop()
    assert metrics.key_arrived_bytes == 4096 == metrics.key_bytes
    assert metrics.key_buffered_bytes == 0
