"""The UDP bind: GSO runs, GRO splitting, and datagrams intact over loopback."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from qkdmeet.vpn.transport import (
    GSO_MAX_BYTES,
    GSO_MAX_SEGMENTS,
    Address,
    UdpBind,
    gso_runs,
    split_gro,
)


def _sizes(*sizes: int) -> list[bytes]:
    return [bytes([i % 256]) * s for i, s in enumerate(sizes)]


def test_runs_of_equal_sizes_end_at_a_shorter_or_longer_datagram() -> None:
    d = _sizes(100, 100, 100, 40, 100, 120, 120, 7)
    assert gso_runs(d) == [(0, 4), (4, 5), (5, 8)]


def test_runs_respect_the_kernel_limits() -> None:
    assert all(e - s <= GSO_MAX_SEGMENTS for s, e in gso_runs(_sizes(*[10] * 200)))
    big = gso_runs(_sizes(*[1400] * 100))
    assert all(sum(1400 for _ in range(s, e)) <= GSO_MAX_BYTES for s, e in big)
    assert big[0] == (0, GSO_MAX_BYTES // 1400)
    assert gso_runs([]) == []


def test_runs_cover_every_datagram_once_in_order() -> None:
    sizes = [int.from_bytes(os.urandom(1), "big") % 3 * 500 + 1 for _ in range(300)]
    runs = gso_runs(_sizes(*sizes))
    assert [i for s, e in runs for i in range(s, e)] == list(range(300))


def test_split_gro() -> None:
    data = b"a" * 10 + b"b" * 10 + b"c" * 3
    assert split_gro(data, 10) == [b"a" * 10, b"b" * 10, b"c" * 3]
    assert split_gro(b"xyz", 0) == [b"xyz"]
    assert split_gro(b"xyz", 3) == [b"xyz"]


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
