"""EtsiClient retries and typed errors; KeyPrefetcher keeps key buffered and stops cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from qkdmeet.kme import pki
from qkdmeet.kme.client import EtsiClient, KeyPrefetcher, KmeError, KmeUnavailable
from qkdmeet.kme.pair import KmePair, free_port
from qkdmeet.kme.tls import server_context

from .conftest import sae_client


async def test_prefetcher_buffers_and_stops(pair: KmePair) -> None:
    async with sae_client(pair, "a") as m, sae_client(pair, "b") as s:
        pf = KeyPrefetcher(m, "SAE-B", target_bits=64 * 256, size_bits=256, batch=32)
        pf.start()
        keys = await asyncio.wait_for(pf.take(40), 10)
        await asyncio.sleep(0.1)
        assert pf.buffered_bits >= 64 * 256
        await pf.stop()
        assert await s.dec_keys("SAE-A", [k.key_id for k in keys]) == keys


async def test_retries_on_503_then_succeeds(tmp_path: Path) -> None:
    pki.init(tmp_path)
    calls = 0

    async def enc(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            return web.json_response({"message": "busy"}, status=503)
        key_id = "5f5c7b8e-2a2c-4f38-9d1e-0a4d5f1b3c2d"
        return web.json_response({"keys": [{"key_ID": key_id, "key": "AAECAw=="}]})

    app = web.Application()
    app.router.add_post("/api/v1/keys/{sae}/enc_keys", enc)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    ctx = server_context(tmp_path / "kme-a.pem", tmp_path / "kme-a.key", tmp_path / "ca.pem")
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    files = {
        "cert_file": tmp_path / "sae-a.pem",
        "key_file": tmp_path / "sae-a.key",
        "ca_file": tmp_path / "ca.pem",
    }
    try:
        async with EtsiClient(f"https://127.0.0.1:{port}", retries=3, **files) as c:
            keys = await c.enc_keys("SAE-B", 1, 32)
        assert calls == 3 and keys[0].key == b"\x00\x01\x02\x03"
        calls = -10
        async with EtsiClient(f"https://127.0.0.1:{port}", retries=1, **files) as c:
            with pytest.raises(KmeUnavailable):
                await c.enc_keys("SAE-B", 1, 32)
        assert calls == -8
    finally:
        await runner.cleanup()
    async with EtsiClient(f"https://127.0.0.1:{port}", retries=1, **files) as c:
        with pytest.raises(KmeUnavailable):  # connection refused, after a retry
            await c.status("SAE-B")


async def test_client_outside_context_manager(tmp_path: Path) -> None:
    pki.init(tmp_path)
    c = EtsiClient(
        "https://127.0.0.1:1",
        cert_file=tmp_path / "sae-a.pem",
        key_file=tmp_path / "sae-a.key",
        ca_file=tmp_path / "ca.pem",
    )
    with pytest.raises(KmeError, match="async with"):
        await c.status("SAE-B")
