"""Masters racing at both sites for the shared pool: no key twice, slaves get the same keys."""

from __future__ import annotations

import asyncio

from qkdmeet.kme.pair import KmePair
from qkdmeet.kme.types import Key

from .conftest import sae_client


async def test_masters_race_at_both_sites(pair: KmePair) -> None:
    got: dict[str, list[Key]] = {"a": [], "b": []}

    async def master(site: str, slave: str) -> None:
        async with sae_client(pair, site) as c:
            for _ in range(15):
                got[site].extend(await c.enc_keys(slave, 16, 256))

    await asyncio.gather(
        *(master("a", "SAE-B") for _ in range(3)), *(master("b", "SAE-A") for _ in range(3))
    )
    everything = got["a"] + got["b"]
    assert len(everything) == 2 * 3 * 15 * 16
    assert len({k.key_id for k in everything}) == len(everything)
    assert len({k.key for k in everything}) == len(everything)
    # the pool is shared dynamically: both directions drew from one stream
    async with sae_client(pair, "b") as sb, sae_client(pair, "a") as sa:
        for i in range(0, len(got["a"]), 64):
            chunk = got["a"][i : i + 64]
            assert await sb.dec_keys("SAE-A", [k.key_id for k in chunk]) == chunk
        for i in range(0, len(got["b"]), 64):
            chunk = got["b"][i : i + 64]
            assert await sa.dec_keys("SAE-B", [k.key_id for k in chunk]) == chunk


async def test_uneven_rates_share_the_pool(pair: KmePair) -> None:
    """One direction may take far more than half of the pool."""
    async with sae_client(pair, "b") as c:
        keys = []
        for _ in range(14):
            keys += await c.enc_keys("SAE-A", 64, 1024)
    assert sum(k.size_bits for k in keys) > 0.7 * 8 * 16384 * 8
    async with sae_client(pair, "a") as a:
        assert (await a.enc_keys("SAE-B", 1, 256))[0].key_id not in {k.key_id for k in keys}
