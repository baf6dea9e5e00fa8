"""Key store: ranges, spending, erasure, persistence across reopen."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from qkdmeet.kme.store import KeyStore, Reservation, StoreError


def res(start: int, n: int, size: int = 32) -> Reservation:
    return Reservation(start, size, tuple(uuid.uuid4() for _ in range(n)), "M", "S")


def test_blocks_ranges_and_double_spend(tmp_path: Path) -> None:
    st = KeyStore(tmp_path / "k.db")
    blocks = [os.urandom(100), os.urandom(100)]
    assert st.add_block(0, blocks[0]) and st.add_block(1, blocks[1])
    assert not st.add_block(1, blocks[1])  # replayed block ignored
    r = res(90, 1, 20)  # spans the block boundary
    keys = st.take_for_master(r)
    assert keys[0].key == blocks[0][90:] + blocks[1][:10]
    with pytest.raises(StoreError, match="already spent"):
        st.hold_for_slave(res(95, 1, 10))
    with pytest.raises(StoreError, match="not in stock"):
        st.take_for_master(res(190, 1, 20))
    st.close()


def test_slave_keys_survive_reopen_and_are_erased_once(tmp_path: Path) -> None:
    st = KeyStore(tmp_path / "k.db")
    st.add_block(0, os.urandom(256))
    r = res(st.allocate(128), 4)
    st.hold_for_slave(r)
    st.close()
    st = KeyStore(tmp_path / "k.db")
    assert st.cursor == 128 and st.stock_bytes() == 128
    with pytest.raises(KeyError):  # one unknown ID: nothing erased
        st.deliver_to_slave("M", "S", [r.key_ids[0], uuid.uuid4()])
    with pytest.raises(KeyError):  # wrong pair
        st.deliver_to_slave("X", "S", [r.key_ids[0]])
    keys = st.deliver_to_slave("M", "S", list(r.key_ids))
    assert [k.key_id for k in keys] == list(r.key_ids)
    assert st.held_count("M", "S") == 0
    with pytest.raises(KeyError):
        st.deliver_to_slave("M", "S", [r.key_ids[0]])
    st.close()


def test_spent_blocks_are_deleted(tmp_path: Path) -> None:
    st = KeyStore(tmp_path / "k.db")
    st.add_block(0, os.urandom(64))
    st.add_block(1, os.urandom(64))
    st.take_for_master(res(64, 2))  # second block first: first still stored
    assert st._db.execute("SELECT count(*) FROM blocks").fetchone()[0] == 2
    st.take_for_master(res(0, 2))
    assert st._db.execute("SELECT count(*) FROM blocks").fetchone()[0] == 0
    with pytest.raises(StoreError):
        st.allocate(1)
    st.close()


async def test_grouped_holds_fail_alone(tmp_path: Path) -> None:
    import asyncio

    from qkdmeet.kme.peer import Coordinator

    st = KeyStore(tmp_path / "k.db")
    st.add_block(0, os.urandom(256))
    st.take_for_master(res(0, 1))  # [0, 32) already spent
    coord = Coordinator(st, None, "https://unused", authority=False)  # type: ignore[arg-type]
    good, bad, good2 = res(32, 2), res(16, 1), res(96, 2)
    out = await asyncio.gather(
        coord.on_hold(good), coord.on_hold(bad), coord.on_hold(good2), return_exceptions=True
    )
    assert out[0] is None and out[2] is None and isinstance(out[1], StoreError)
    assert st.held_count("M", "S") == 4
    st.close()


def test_the_store_reconnects_between_transactions_after_many_blobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18's KME soak: CPython's sqlite3 keeps a weak reference per blob a connection
    ever opened (~89 B per spend, forever); the store now reconnects every
    BLOBS_PER_CONNECTION blobs, between transactions, and loses nothing doing so."""
    from qkdmeet.kme import store as store_mod

    monkeypatch.setattr(store_mod, "BLOBS_PER_CONNECTION", 3)
    st = KeyStore(tmp_path / "k.db")
    block = os.urandom(640)
    st.add_block(0, block)
    first = st._db
    held = res(st.allocate(64), 2)
    st.hold_for_slave(held)
    for i in range(1, 10):  # one blob each (one block): a reconnect every third
        (key,) = st.take_for_master(res(st.allocate(32), 1))
        assert key.key == block[32 * (i + 1) : 32 * (i + 2)]
    assert st._db is not first and st._blobs < 3
    assert st.cursor == 352 and st.stock_bytes() == 640 - 352
    assert [k.key for k in st.deliver_to_slave("M", "S", list(held.key_ids))] == [
        block[:32], block[32:64]]
    with pytest.raises(StoreError, match="already spent"):
        st.take_for_master(res(64, 1))
    st.close()


def test_allocate_and_hold_is_one_transaction(tmp_path: Path) -> None:
    """The authority's answer to ``reserve``: the cursor advances only with the keys held."""
    st = KeyStore(tmp_path / "k.db")
    st.add_block(0, os.urandom(96))
    ids = tuple(uuid.uuid4() for _ in range(2))
    res = st.allocate_and_hold(32, ids, "M", "S")
    assert (res.start, res.stop, st.cursor, st.held_count("M", "S")) == (0, 64, 64, 2)
    with pytest.raises(StoreError, match="not enough key"):
        st.allocate_and_hold(32, tuple(uuid.uuid4() for _ in range(2)), "M", "S")
    assert st.cursor == 64 and st.held_count("M", "S") == 2  # nothing of the refused one
    assert [k.key_id for k in st.deliver_to_slave("M", "S", list(ids))] == list(ids)
    st.close()
