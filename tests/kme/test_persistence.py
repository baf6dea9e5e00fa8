"""Both KMEs restart: held keys and stock survive, nothing is handed out twice."""

from __future__ import annotations

from pathlib import Path

from qkdmeet.kme.pair import KmePair, write_pair

from .conftest import sae_client


async def test_restart_keeps_keys_and_cursor(tmp_path: Path) -> None:
    files = write_pair(tmp_path)
    p = KmePair(files)
    await p.start()
    await p.fill(4, 4096)
    async with sae_client(p, "a") as m:
        first = await m.enc_keys("SAE-B", 20, 256)
    await p.stop()

    p = KmePair(files)
    await p.start()
    try:
        assert p.next_block == 4
        await p.fill(1, 4096)
        async with sae_client(p, "a") as m, sae_client(p, "b") as s:
            st = await m.status("SAE-B")
            assert st.stored_key_count == (5 * 4096 - 20 * 32) * 8 // 256
            second = await m.enc_keys("SAE-B", 20, 256)
            assert not {k.key for k in first} & {k.key for k in second}
            assert await s.dec_keys("SAE-A", [k.key_id for k in first]) == first
            assert await s.dec_keys("SAE-A", [k.key_id for k in second]) == second
    finally:
        await p.stop()
