"""KMEs fed by the simulated QKD link: the ``[qkd]`` table, identical stores, ``/admin/qkd``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from qkdmeet.kme import config as kconfig
from qkdmeet.kme import tls
from qkdmeet.kme.pair import KmePair, write_pair
from qkdmeet.kme.sink import StoreSink
from qkdmeet.qkd.nodes import make_node


def test_qkd_table_is_parsed_and_checked(tmp_path: Path) -> None:
    files = write_pair(tmp_path, qkd={"loss_db": 2.0, "block_bits": 100_000, "seed": 5})
    a, b = (kconfig.load(files.configs[s]) for s in "ab")
    assert a.qkd is not None and b.qkd is not None
    assert (a.qkd.role, b.qkd.role) == ("transmitter", "receiver")
    assert a.qkd.address == b.qkd.address and a.qkd.psk == b.qkd.psk
    assert len(a.qkd.psk) > 100_000 and a.qkd.block_bits == 100_000 and a.qkd.loss_db == 2.0
    base = {"role": "receiver", "connect": "127.0.0.1:1", "psk": "00" * 600}
    for bad, msg in (
        ({**base, "role": "alice"}, "role"),
        ({**base, "psk": "zz"}, "hex"),
        ({**base, "block_bits": 5}, "block_bits"),
        ({**base, "loss_db": 1.0, "distance_km": 5.0}, "not both"),
        ({k: v for k, v in base.items() if k != "connect"}, "connect"),
    ):
        with pytest.raises(kconfig.ConfigError, match=msg):
            kconfig._qkd(bad, tmp_path)


async def test_two_kmes_fed_by_the_qkd_link_store_the_same_key(tmp_path: Path) -> None:
    files = write_pair(tmp_path, qkd={"loss_db": 2.0, "block_bits": 100_000, "seed": 5})
    pair = KmePair(files)
    await pair.start()
    nodes = []
    try:
        for site in ("a", "b"):
            server = pair.servers[site]
            q = server.config.qkd
            assert q is not None
            node = make_node(
                q.role, q.address, StoreSink(server.store), q.psk, loss_db=q.loss_db,
                block_bits=q.block_bits, seed=q.seed, first_block=server.store.next_block,
            )  # fmt: skip
            await node.start()
            server.qkd = node
            nodes.append(node)
        sa, sb = pair.servers["a"].store, pair.servers["b"].store
        async with asyncio.timeout(90):
            while True:
                if sa.next_block >= 2 and sb.next_block == sa.next_block:
                    break
                await asyncio.sleep(0.05)
        for node in nodes:
            await node.stop()
        assert sa.stream_end == sb.stream_end > 0
        assert sa._read(0, sa.stream_end) == sb._read(0, sb.stream_end)

        # the admin route: this KME's own certificate only
        ctx = tls.client_context(
            tmp_path / "kme-a.pem", tmp_path / "kme-a.key", tmp_path / "ca.pem"
        )
        sae = tls.client_context(
            tmp_path / "sae-a.pem", tmp_path / "sae-a.key", tmp_path / "ca.pem"
        )
        ctx_b = tls.client_context(
            tmp_path / "kme-b.pem", tmp_path / "kme-b.key", tmp_path / "ca.pem"
        )
        url_a = f"https://127.0.0.1:{files.ports['a']}/admin/qkd"
        url_b = f"https://127.0.0.1:{files.ports['b']}/admin/qkd"
        async with aiohttp.ClientSession() as http:
            async with http.get(url_a, ssl=ctx) as r:
                st = await r.json()
                assert r.status == 200 and st["role"] == "transmitter" and st["blocks"] >= 2
            async with http.post(url_a, json={"eve": "pns", "cut": True}, ssl=ctx) as r:
                st = await r.json()
                assert r.status == 200 and st["eve"] == "pns" and st["cut"] is True
            # a refused change: a stable reason, never the input echoed (issue 18)
            from qkdmeet.kme.admin_routes import CUT_REFUSED, EVE_REFUSED

            for body, reason in (({"eve": "bogus-" + "9" * 30}, EVE_REFUSED),
                                 ({"eve": "intercept-resend:x9"}, EVE_REFUSED),
                                 ({"eve": ["pns"]}, EVE_REFUSED),
                                 ({"eve": "none", "cut": "yes"}, CUT_REFUSED)):
                async with http.post(url_a, json=body, ssl=ctx) as r:
                    text = await r.text()
                    assert r.status == 400 and reason in text and "999" not in text, text
            async with http.get(url_a, ssl=ctx) as r:  # nothing changed by the refusals
                st = await r.json()
                assert st["eve"] == "pns" and st["cut"] is True
            async with http.get(url_a, ssl=sae) as r:
                assert r.status == 401
            async with http.post(url_b, json={"cut": True}, ssl=ctx_b) as r:
                assert r.status == 409
            async with http.get(url_b, ssl=ctx_b) as r:
                assert (await r.json())["role"] == "receiver"
    finally:
        for node in nodes:
            await node.stop()
        await pair.stop()
