"""OpenKey: zeroed on close, and its reused buffers never shared by two keys."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from qkdmeet.kme.types import Key
from qkdmeet.vpn.keystream import OpenKey, SenderState


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
