"""The UDP bind: datagrams intact and in order over loopback, with and without GSO/GRO."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from qkdmeet.vpn.transport import Address, UdpBind


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _exchange(offload: bool, datagrams: list[bytes]) -> tuple[list[bytes], UdpBind, UdpBind]:
    pa, pb = _free_port(), _free_port()
    a = UdpBind(("127.0.0.1", pa), ("127.0.0.1", pb), offload=offload)
    b = UdpBind(("127.0.0.1", pb), ("127.0.0.1", pa), offload=offload)
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


@pytest.mark.parametrize("offload", [True, False])
async def test_datagrams_cross_intact_and_in_order(offload: bool) -> None:
    sizes = [1432] * 30 + [700] + [1432] * 5 + [64, 64, 1500] + [1200] * 70
    datagrams = [os.urandom(s) for s in sizes]
    got, a, b = await _exchange(offload, datagrams)
    assert got == datagrams
    assert a.send_errors == 0
    if offload and a.gso:
        assert a.gso_sends < len(datagrams) // 4  # batched: far fewer system calls
        assert a.gso_datagrams > len(datagrams) // 2
        if b.gro:
            assert b.gro_buffers > 0  # runs arrived as one buffer and were split
    if not offload:
        assert a.gso_sends == 0 and b.gro_buffers == 0
