"""The UDP bind: datagrams intact and in order over loopback."""

from __future__ import annotations

import asyncio
import os
import socket

from qkdmeet.vpn.transport import Address, UdpBind


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _exchange(datagrams: list[bytes]) -> tuple[list[bytes], UdpBind, UdpBind]:
    pa, pb = _free_port(), _free_port()
    a = UdpBind(("127.0.0.1", pa), ("127.0.0.1", pb))
    b = UdpBind(("127.0.0.1", pb), ("127.0.0.1", pa))
    got: list[bytes] = []
    sources: set[Address] = set()

    def deliver(batch: list[tuple[bytes, Address]]) -> None:
        for d, src in batch:
            got.append(d)
            sources.add(src)

    a.open(lambda batch: None)
    b.open(deliver)
    try:
        a.send_many(datagrams)
        for _ in range(200):
            if len(got) >= len(datagrams):
                break
            await asyncio.sleep(0.01)
    finally:
        a.close()
        b.close()
    assert sources == {("127.0.0.1", pa)}
    assert all(b.accepts(s) for s in sources)
    return got, a, b


async def test_datagrams_cross_intact_and_in_order() -> None:
    sizes = [1432] * 30 + [700] + [1432] * 5 + [64, 64, 1500] + [1200] * 70
    datagrams = [os.urandom(s) for s in sizes]
    got, a, _ = await _exchange(datagrams)
    assert got == datagrams
    assert a.send_errors == 0
