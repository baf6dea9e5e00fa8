"""Fuzzing the batched data path's WAN input (the default: numba kernels reading the
socket in batches): random, truncated, bit-flipped, replayed and forged datagrams in
bursts, mixed into one batch with genuine ones, from the peer's own address.

Invariants: the reader survives every burst; every fuzzed datagram ends as exactly one
counted drop; none reaches the TUN device or spends inbound key; the genuine datagrams
of the same bursts are delivered; the tunnel carries packets afterwards.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import numpy as np
import pytest

from qkdmeet.vpn.constants import HEADER_BYTES, TYPE_ANNOUNCE, TYPE_DATA, TYPE_REKEY
from qkdmeet.vpn.gateway import Gateway, GatewayKeys
from qkdmeet.vpn.memkeys import MemoryKeyPair
from qkdmeet.vpn.transport import UdpBind
from qkdmeet.vpn.wire import VERSION_AT, header, key_id_of

from .test_pump import SocketTun, _free_ports, _until, drain, ip_packet

pytestmark = pytest.mark.timeout(120)


class Relay:
    """The WAN between the gateways: forwards both ways, records A's datagrams, and lets
    the test inject datagrams to B from the address B takes for its peer's."""

    def __init__(self, port: int, a: tuple[str, int], b: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):  # loopback drops what overflows
            self.sock.setsockopt(socket.SOL_SOCKET, opt, 8 << 20)
        self.sock.bind(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.a, self.b = a, b
        self.from_a: list[bytes] = []
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._forward)

    def _forward(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            if addr == self.a:
                self.from_a.append(data)
                self.sock.sendto(data, self.b)
            else:
                self.sock.sendto(data, self.a)

    def inject(self, datagram: bytes) -> None:
        self.sock.sendto(datagram, self.b)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


def _mutants(genuine: list[bytes], key_ids: list[bytes], rng: np.random.Generator,
             n: int) -> list[bytes]:
    out: list[bytes] = []
    while len(out) < n:
        kind = int(rng.integers(6))
        g = genuine[int(rng.integers(len(genuine)))]
        if kind == 0:  # random bytes of any length
            out.append(os.urandom(int(rng.integers(0, 1500))))
        elif kind == 1:  # replayed
            out.append(g)
        elif kind == 2:  # truncated
            out.append(g[: int(rng.integers(0, len(g)))])
        elif kind == 3:  # one bit flipped, header, body or tag
            b = bytearray(g)
            b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
            out.append(bytes(b))
        else:  # well-formed headers, any field: a known key, any type, offset, length
            ptype = int(rng.choice([TYPE_DATA, TYPE_ANNOUNCE, TYPE_REKEY, 7]))
            kid = key_ids[int(rng.integers(len(key_ids)))] if kind == 4 else os.urandom(16)
            length = int(rng.integers(0, 1500))
            head = bytearray(header(ptype, length, int(rng.integers(0, 2**63)), kid,
                                    int(rng.integers(0, 2**32))))
            if rng.random() < 0.2:
                head[VERSION_AT] ^= 0xFF
            out.append(bytes(head) + os.urandom(int(rng.integers(0, length + 40))))
    return out


async def test_fuzzed_bursts_on_the_batched_path_are_counted_drops() -> None:
    keys = MemoryKeyPair("A", "B")
    pa, pb, pr = _free_ports(3)
    addr = {"A": ("127.0.0.1", pa), "B": ("127.0.0.1", pb)}
    relay = Relay(pr, addr["A"], addr["B"])
    tuns = {"A": SocketTun(), "B": SocketTun()}
    gws = {
        me: Gateway(tun=tuns[me], bind=UdpBind(addr[me], ("127.0.0.1", pr)),
                    keys=GatewayKeys(keys.supplier(me), me, peer, 8 * 16384, 64 * 16384),
                    name=me)
        for me, peer in (("A", "B"), ("B", "A"))
    }
    assert all(g.batched for g in gws.values())
    for g in gws.values():
        await g.start(first_key_timeout=2.0)
    rx = gws["B"].metrics.inbound
    try:
        await _until(lambda: all(g.sender.buffered for g in gws.values()))
        sent = [ip_packet(40 + (131 * i) % 1300) for i in range(200)]
        for p in sent:
            tuns["A"].host.send(p)
        await _until(lambda: rx.packets >= len(sent))
        assert drain(tuns["B"].host) == sent
        genuine = [d for d in relay.from_a if len(d) >= HEADER_BYTES]
        key_ids = sorted({key_id_of(d) for d in genuine})
        assert genuine and key_ids

        rng = np.random.default_rng(2026)
        before = (rx.packets, rx.key_pad_bytes, rx.key_mask_bytes, sum(rx.drops.values()),
                  rx.announces)
        fed = 0
        delivered: list[bytes] = []
        for burst in range(60):
            # a burst: fuzz mixed with genuine traffic, read by the kernel in one batch
            fresh = [ip_packet(60 + burst * 7 + i) for i in range(5)]
            for p in fresh:
                tuns["A"].host.send(p)
            delivered += fresh
            for d in _mutants(genuine, key_ids, rng, 40):
                relay.inject(d)
                fed += 1
            await asyncio.sleep(0.01)  # within the socket's buffer: none lost on loopback
        want = before[0] + len(delivered)
        await _until(lambda: rx.packets >= want and not gws["B"]._pending
                     and sum(rx.drops.values()) - before[3] >= fed, limit=30)
        assert rx.packets == want, dict(rx.drops)  # no fuzzed datagram was accepted
        assert drain(tuns["B"].host) == delivered  # only the genuine ones reached the TUN
        assert sum(rx.drops.values()) - before[3] == fed, dict(rx.drops)
        # the inbound key spent is the genuine packets' pads and masks (and the masks of
        # the genuine announcements of keys A fetched meanwhile), not the fuzz's
        pad = sum(len(p) for p in delivered)
        assert rx.key_pad_bytes - before[1] == pad
        genuine_in = len(delivered) + rx.announces - before[4]
        assert rx.key_mask_bytes - before[2] == 32 * genuine_in, dict(rx.drops)
        tuns["A"].host.send(ip_packet(1200))  # the tunnel still works
        await _until(lambda: rx.packets == want + 1)
        assert uuid.UUID(bytes=key_ids[0])
    finally:
        for g in gws.values():
            await g.stop()
        relay.close()
