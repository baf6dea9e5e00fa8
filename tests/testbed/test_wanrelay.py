"""The WAN relay on loopback (no root): forwarding, impairments, control."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

from qkdmeet.testbed.wanrelay import Impairment, WanRelay, control_request, read_capture


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


async def _recv_all(sock: socket.socket, wait: float = 0.3) -> list[bytes]:
    await asyncio.sleep(wait)
    out = []
    while True:
        try:
            out.append(sock.recv(65535))
        except BlockingIOError:
            return out


async def _relay(tmp_path: Path, **imp: float) -> tuple[WanRelay, socket.socket, socket.socket]:
    a, b = _udp(), _udp()
    relay = WanRelay(("127.0.0.1", 0), a.getsockname(), ("127.0.0.1", 0), b.getsockname(),
                     impairment=Impairment(**imp), seed=7, capture=tmp_path / "cap")
    await relay.start()
    return relay, a, b


async def test_forwards_both_ways_and_captures(tmp_path: Path) -> None:
    relay, a, b = await _relay(tmp_path)
    try:
        for i in range(5):
            a.sendto(b"to-b %d" % i, relay.local("a"))
        b.sendto(b"to-a", relay.local("b"))
        assert await _recv_all(b) == [b"to-b %d" % i for i in range(5)]
        assert await _recv_all(a, 0.05) == [b"to-a"]
    finally:
        await relay.stop()
    cap = read_capture(tmp_path / "cap")
    assert sorted(s for s, _ in cap) == ["a"] * 5 + ["b"]
    assert sorted(d for _, d in cap if d.startswith(b"to-b")) == [b"to-b %d" % i for i in range(5)]


async def test_impairments(tmp_path: Path) -> None:
    relay, a, b = await _relay(tmp_path, loss=0.5)
    try:
        for i in range(200):
            a.sendto(b"%d" % i, relay.local("a"))
        got = await _recv_all(b)
        assert 50 < len(got) < 150 and relay.stats.lost == 200 - len(got)
        relay.impairment.update({"loss": 0, "duplicate": 1.0})
        a.sendto(b"dup", relay.local("a"))
        assert await _recv_all(b) == [b"dup", b"dup"]
        relay.impairment.update({"duplicate": 0, "corrupt": 1.0})
        a.sendto(b"\x00" * 32, relay.local("a"))
        (got1,) = await _recv_all(b)
        assert got1 != b"\x00" * 32 and bin(int.from_bytes(got1, "big")).count("1") == 1
        relay.impairment.update({"corrupt": 0, "reorder": 0.3, "delay_ms": 1, "jitter_ms": 1})
        for i in range(100):
            a.sendto(i.to_bytes(2, "big"), relay.local("a"))
        got = [int.from_bytes(x, "big") for x in await _recv_all(b, 0.5)]
        assert sorted(got) == list(range(100)) and got != list(range(100))
    finally:
        await relay.stop()


async def test_control_socket(tmp_path: Path) -> None:
    relay, _, _ = await _relay(tmp_path)
    sock = tmp_path / "ctl.sock"
    await relay.serve_control(sock)
    try:
        ans = await control_request(sock, {"set": {"loss": 0.25, "delay_ms": 5}})
        assert ans["ok"] and ans["impairment"]["loss"] == 0.25
        assert relay.impairment.delay_ms == 5
        bad = await control_request(sock, {"set": {"loss": 2}})
        assert not bad["ok"] and "probability" in bad["error"]
        bad = await control_request(sock, {"set": {"bandwidth": 1}})
        assert not bad["ok"]
        assert relay.control(b"not json")["ok"] is False
        assert relay.control(json.dumps({"stats": None}).encode())["stats"]["received"] == 0
    finally:
        await relay.stop()
