"""Bounded resources of the conference server: a join/leave soak whose memory comes back,
connection limits per source, a bounded send queue per WebSocket."""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from typing import Any

import aiohttp
import pytest

from qkdmeet.conference import server as server_mod
from qkdmeet.conference.server import ConferenceServer, Session

from .conftest import room_urls

pytestmark = pytest.mark.timeout(120)


def _secret(server: ConferenceServer) -> str:
    return room_urls(server, "ward")["invite_url"].split("#invite=")[1]


async def _join_leave(http: aiohttp.ClientSession, server: ConferenceServer, i: int) -> None:
    async with http.ws_connect(server.url + "/ws") as ws:
        await ws.send_str(json.dumps({"type": "join", "room": "ward", "name": f"u{i}",
                                      "secret": _secret(server)}))
        assert json.loads((await ws.receive(timeout=10)).data)["type"] == "joined"
        await ws.send_str(json.dumps({"type": "chat", "text": "hello"}))
        await ws.receive(timeout=10)
        if i % 3 == 0:  # some leave politely, the others just vanish
            await ws.send_str(json.dumps({"type": "leave"}))


async def _rounds(http: aiohttp.ClientSession, server: ConferenceServer, n: int,
                  base: int) -> None:
    for k in range(0, n, 10):
        await asyncio.gather(*(_join_leave(http, server, base + k + j) for j in range(10)))


async def test_join_leave_soak_returns_memory(server: ConferenceServer) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as http:
        await _rounds(http, server, 60, 0)  # warm-up: imports, caches, TLS sessions
        gc.collect()
        tracemalloc.start()
        try:
            await _rounds(http, server, 60, 100)
            await asyncio.sleep(0.2)
            gc.collect()
            baseline = tracemalloc.get_traced_memory()[0]
            await _rounds(http, server, 600, 1000)  # the load: 600 joins and leaves
            await asyncio.sleep(0.2)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    state = server.rooms["ward"]
    assert not state.sessions and not state.room.participants
    assert not server._sessions and not server._tokens and not server._per_source
    # what the 600 joins left behind is within 10 % of the level before the load
    assert after <= baseline * 1.1 + 256 * 1024, (baseline, after)


async def test_connections_per_source_are_bounded(
    server: ConferenceServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_mod, "MAX_CONNECTIONS_PER_SOURCE", 3)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as http:
        sockets = [await http.ws_connect(server.url + "/ws") for _ in range(3)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(server.url + "/ws")
        assert info.value.status == 429
        for ws in sockets:
            await ws.close()
        async with asyncio.timeout(10):
            while server._per_source:  # noqa: ASYNC110 - the handlers finish
                await asyncio.sleep(0.01)
        ws = await http.ws_connect(server.url + "/ws")  # freed again
        await ws.close()
    assert server.counters["refused_connections"] == 1


class _StuckSocket:
    """A WebSocket whose client never reads: every send blocks."""

    closed = False

    def __init__(self) -> None:
        self.close_calls = 0

    async def send_str(self, text: str) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        self.close_calls += 1


async def test_a_slow_consumer_has_a_bounded_queue_and_is_cut_off() -> None:
    ws = _StuckSocket()
    session = Session(ws)  # type: ignore[arg-type]
    tasks = [asyncio.ensure_future(session.send(f"m{i}")) for i in range(500)]
    await asyncio.sleep(0.05)
    assert session.closed and ws.close_calls == 1
    assert session._waiting <= server_mod.MAX_PENDING_SENDS
    for t in tasks:
        t.cancel()
    results: list[Any] = await asyncio.gather(*tasks, return_exceptions=True)
    assert len(results) == 500 and session._waiting == 0
