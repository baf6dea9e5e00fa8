import uuid
from pathlib import Path

import pytest

from qkdmeet.vpn.filekeys import FileKeySupplier, fill, pooled_bytes
from qkdmeet.vpn.memkeys import KeySupplyError, MemoryKeyPair


async def test_file_store_delivers_each_key_once(tmp_path: Path) -> None:
    assert fill(tmp_path, "a", "b", nbytes=4096, key_bytes=1024) == 4
    master, slave = FileKeySupplier(tmp_path, "a"), FileKeySupplier(tmp_path, "b")
    keys = await master.enc_keys("b", 3, 8192)
    assert len(keys) == 3 and pooled_bytes(tmp_path, "a", "b") == 1024
    got = await slave.dec_keys("a", [k.key_id for k in keys])
    assert [k.key for k in got] == [k.key for k in keys]
    with pytest.raises(KeySupplyError):
        await slave.dec_keys("a", [keys[0].key_id])
    await master.enc_keys("b", 5, 8192)  # the last one
    with pytest.raises(KeySupplyError):
        await master.enc_keys("b", 1, 8192)
    st = await master.status("b")
    assert st.stored_key_count == 0


def test_unsafe_sae_id(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        fill(tmp_path, "../x", "b", nbytes=1, key_bytes=1)


async def test_memory_pair_consistency_and_budget() -> None:
    pair = MemoryKeyPair("A", "B", budget_bytes=3000)
    a, b = pair.supplier("A"), pair.supplier("B")
    keys = await a.enc_keys("B", 5, 8 * 1000)
    assert len(keys) == 3
    with pytest.raises(KeySupplyError):
        await a.enc_keys("B", 1, 8000)
    assert [k.key for k in await b.dec_keys("A", [keys[1].key_id])] == [keys[1].key]
    with pytest.raises(KeySupplyError):
        await b.dec_keys("A", [keys[1].key_id])
    with pytest.raises(KeySupplyError):
        await b.dec_keys("A", [uuid.uuid4()])
    pair.refill("A", "B", 1000)
    assert len(await a.enc_keys("B", 1, 8000)) == 1
    # the other direction is a separate pool
    assert len(await b.enc_keys("A", 1, 8000)) == 1
