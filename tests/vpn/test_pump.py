"""The batched kernels on real sockets (loopback UDP stands in for the TUN: one
packet per read and write, as a TUN), against the per-packet kernels, and a
gateway pair that runs them (no root needed)."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import struct
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from qkdmeet.vpn import pump
from qkdmeet.vpn.constants import TYPE_DATA
from qkdmeet.vpn.fastpath import seal
from qkdmeet.vpn.gateway import Gateway, GatewayKeys
from qkdmeet.vpn.memkeys import MemoryKeyPair
from qkdmeet.vpn.replay import ReplayWindow
from qkdmeet.vpn.transport import UdpBind
from qkdmeet.vpn.wire import header

LIMIT = 1408


def ip_packet(n: int) -> bytes:
    return struct.pack("!BBH", 0x45, 0, n) + os.urandom(n - 4)


def udp_pair() -> tuple[socket.socket, socket.socket]:
    """Two connected, non-blocking loopback UDP sockets."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind(("127.0.0.1", 0))
    a.connect(b.getsockname())
    b.connect(a.getsockname())
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def drain(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(65535))
        except BlockingIOError:
            return got


@pytest.fixture
def sockets() -> Iterator[dict[str, socket.socket]]:
    tun, host = udp_pair()  # gateway side, "kernel" side of the device
    wan_a, wan_b = udp_pair()
    yield {"tun": tun, "host": host, "wan_a": wan_a, "wan_b": wan_b}
    for s in (tun, host, wan_a, wan_b):
        s.close()


def _key(nbytes: int = 4096) -> tuple[bytearray, np.ndarray, np.ndarray]:
    data = bytearray(os.urandom(nbytes))
    return data, np.frombuffer(data, np.uint8), np.frombuffer(bytes(data[:32]), np.uint8)


def _seal(s: dict[str, socket.socket], view: np.ndarray, r: np.ndarray, kid: bytes, off: int,
          seq: int, seq_end: int = 2**64 - 1, max_packets: int = 64,
          ledger: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    buf, st, seqs = pump.buffer(), pump.counters(), np.array([seq], np.uint64)
    pump.seal_run(s["tun"].fileno(), s["wan_a"].fileno(), buf, view, off, r,
                  np.frombuffer(kid, np.uint8), seqs, np.uint64(seq_end), LIMIT, max_packets,
                  np.zeros(0, np.int64) if ledger is None else ledger, st)
    return buf, st, seqs


def test_seal_run_sends_what_the_per_packet_kernel_seals(sockets: dict[str, socket.socket]
                                                         ) -> None:
    data, view, r = _key()
    ref = bytearray(data)
    ref_view = np.frombuffer(ref, np.uint8)
    kid = uuid.uuid4().bytes
    packets = [ip_packet(n) for n in (20, 100, 1200, 1408, 577)]
    for p in packets:
        sockets["host"].send(p)
    ledger = np.zeros(128, np.int64)
    _, st, seqs = _seal(sockets, view, r, kid, 32, 7, ledger=ledger)
    assert st[pump.STOP] == pump.STOP_EMPTY
    assert st[pump.PACKETS] == len(packets) and st[pump.PAYLOAD] == sum(map(len, packets))
    assert int(seqs[0]) == 7 + len(packets)
    sent = drain(sockets["wan_b"])
    off, want = 32, []
    for i, p in enumerate(packets):
        want.append(seal(header(TYPE_DATA, len(p), 7 + i, kid, off), p, ref_view, off, r))
        assert list(ledger[2 * i : 2 * i + 2]) == [off, 32 + len(p)]
        off += 32 + len(p)
    assert sent == want
    assert st[pump.OFFSET] == off
    assert data[32:off] == bytes(off - 32)  # every key byte used is zeroed
    assert data[off:] == ref[off:]


def test_seal_run_stops_at_the_key_end_with_the_packet_kept(sockets: dict[str, socket.socket]
                                                            ) -> None:
    data, view, r = _key(32 + 2 * (32 + 500) + 100)
    packets = [ip_packet(500), ip_packet(500), ip_packet(300)]
    for p in packets:
        sockets["host"].send(p)
    buf, st, seqs = _seal(sockets, view, r, uuid.uuid4().bytes, 32, 0)
    assert st[pump.STOP] == pump.STOP_KEY and st[pump.PACKETS] == 2
    assert bytes(buf[32 : 32 + st[pump.HELD]]) == packets[2]  # for the Python path
    assert st[pump.OFFSET] == 32 + 2 * 532 and int(seqs[0]) == 2
    assert data[32 + 2 * 532 :] != bytes(100)  # the tail is untouched: Python discards it
    assert len(drain(sockets["wan_b"])) == 2


def test_seal_run_stops_at_the_sequence_reservation_and_batch_limit(
        sockets: dict[str, socket.socket]) -> None:
    _, view, r = _key(1 << 16)
    for _ in range(5):
        sockets["host"].send(ip_packet(100))
    _, st, seqs = _seal(sockets, view, r, uuid.uuid4().bytes, 32, 10, seq_end=12)
    assert st[pump.STOP] == pump.STOP_SEQUENCE and st[pump.PACKETS] == 2 and int(seqs[0]) == 12
    _, st, _ = _seal(sockets, view, r, uuid.uuid4().bytes, 32 + 2 * 132, 12, max_packets=2)
    assert st[pump.STOP] == pump.STOP_BATCH and st[pump.PACKETS] == 2
    assert len(drain(sockets["tun"])) == 1  # the last packet was never read


def test_seal_run_drops_oversized_packets_without_key(sockets: dict[str, socket.socket]) -> None:
    data, view, r = _key()
    before = bytes(data)
    sockets["host"].send(os.urandom(LIMIT + 1))
    _, st, _ = _seal(sockets, view, r, uuid.uuid4().bytes, 32, 0)
    assert st[pump.BAD_SIZE] == 1 and st[pump.PACKETS] == 0 and st[pump.OFFSET] == 32
    assert bytes(data) == before and drain(sockets["wan_b"]) == []


def _open(s: dict[str, socket.socket], view: np.ndarray, r: np.ndarray, kid: bytes,
          seen: np.ndarray, window: ReplayWindow) -> tuple[np.ndarray, np.ndarray]:
    buf, st = pump.buffer(), pump.counters()
    pump.open_run(s["wan_b"].fileno(), s["tun"].fileno(), buf, view, r,
                  np.frombuffer(kid, np.uint8), seen, window.ring, window.state, True, 64, st)
    return buf, st


def test_open_run_delivers_and_hands_every_doubtful_datagram_to_python(
        sockets: dict[str, socket.socket]) -> None:
    tx, tx_view, r = _key()
    rx = bytearray(tx)
    rx_view = np.frombuffer(rx, np.uint8)
    kid = uuid.uuid4().bytes
    packets = [ip_packet(n) for n in (60, 1000, 1408)]
    datagrams, off = [], 32
    for i, p in enumerate(packets):
        datagrams.append(seal(header(TYPE_DATA, len(p), i, kid, off), p, tx_view, off, r))
        off += 32 + len(p)
    seen, window = np.zeros(4096 // 8, np.uint8), ReplayWindow()
    wan_a = sockets["wan_a"]
    for d in datagrams:
        wan_a.send(d)
    _, st = _open(sockets, rx_view, r, kid, seen, window)
    assert st[pump.STOP] == pump.STOP_EMPTY
    assert drain(sockets["host"]) == packets
    assert st[pump.ACCEPTED] == st[pump.PACKETS] == 3
    assert st[pump.KEY_USED] == off - 32 and rx[32:off] == bytes(off - 32)
    assert window.check(2) == "replayed" and window.highest == 2
    bad = bytearray(datagrams[1])
    bad[40] ^= 1
    other = bytearray(datagrams[0])
    other[12] ^= 1  # another key ID
    announce = bytearray(datagrams[0])
    announce[1] = 2
    for doubtful in (datagrams[0], bytes(bad), bytes(other), bytes(announce), datagrams[0][:50]):
        wan_a.send(doubtful)
        buf, st = _open(sockets, rx_view, r, kid, seen, window)
        assert st[pump.STOP] == pump.STOP_SLOW and st[pump.ACCEPTED] == 0
        assert bytes(buf[: st[pump.HELD]]) == doubtful
    assert drain(sockets["host"]) == []


def test_open_run_counts_a_bad_inner_packet_and_spends_its_key(
        sockets: dict[str, socket.socket]) -> None:
    tx, tx_view, r = _key()
    rx_view = np.frombuffer(bytearray(tx), np.uint8)
    kid = uuid.uuid4().bytes
    not_ip = b"\x00" * 100
    sockets["wan_a"].send(seal(header(TYPE_DATA, 100, 0, kid, 32), not_ip, tx_view, 32, r))
    _, st = _open(sockets, rx_view, r, kid, np.zeros(512, np.uint8), ReplayWindow())
    assert st[pump.BAD_INNER] == 1 and st[pump.ACCEPTED] == 1 and st[pump.PACKETS] == 0
    assert st[pump.KEY_USED] == 132 and drain(sockets["host"]) == []


class SocketTun:
    """A packet device on a loopback UDP socket: ``host`` plays the kernel's side."""

    def __init__(self) -> None:
        self.dev, self.host = udp_pair()
        self.write_errors = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def fileno(self) -> int:
        return self.dev.fileno()

    def watch(self, on_readable: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.dev.fileno(), on_readable)

    def read_one(self) -> bytes | None:
        try:
            return self.dev.recv(65535)
        except BlockingIOError:
            return None

    def open(self, deliver: Callable[[list[bytes]], None]) -> None:
        raise AssertionError("the batched path watches the device")

    def write(self, packet: bytes) -> None:
        self.dev.send(packet)

    def close(self) -> None:
        if self._loop is not None and self.dev.fileno() >= 0:
            self._loop.remove_reader(self.dev.fileno())
        self.dev.close()
        self.host.close()


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def _until(cond: Callable[[], bool], limit: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


async def test_a_gateway_pair_on_the_batched_path() -> None:
    """Thousands of packets over many small keys both ways: intact and in order, no key
    range used twice (ledger), every key byte accounted on both sides."""
    keys = MemoryKeyPair("A", "B")
    pa, pb = _free_ports(2)
    tuns = {"A": SocketTun(), "B": SocketTun()}
    binds = {"A": UdpBind(("127.0.0.1", pa), ("127.0.0.1", pb)),
             "B": UdpBind(("127.0.0.1", pb), ("127.0.0.1", pa))}
    ledger: list[tuple[uuid.UUID, int, int]] = []
    gws = {
        me: Gateway(tun=tuns[me], bind=binds[me],
                    keys=GatewayKeys(keys.supplier(me), me, peer, 8 * 16384, 64 * 16384),
                    name=me, ledger=(lambda *e: ledger.append(e)) if me == "A" else None)
        for me, peer in (("A", "B"), ("B", "A"))
    }
    assert all(g.batched for g in gws.values())
    slow = {"out": 0, "in": 0}  # packets the Python path handled

    def counted(kind: str, f: Callable[..., None]) -> Callable[..., None]:
        def call(arg: object) -> None:
            slow[kind] += len(arg) if isinstance(arg, list) else 1
            f(arg)
        return call

    for g in gws.values():
        g._on_tun = counted("out", g._on_tun)  # type: ignore[method-assign]
        g._inbound = counted("in", g._inbound)  # type: ignore[method-assign]
        await g.start(first_key_timeout=2.0)
    try:
        await _until(lambda: all(g.sender.buffered for g in gws.values()))
        for src, dst in (("A", "B"), ("B", "A")):
            sent: list[bytes] = []
            for burst in range(40):  # ~2 MB: over 100 keys of 16 kB
                batch = [ip_packet(40 + (97 * (burst * 50 + i)) % 1368) for i in range(50)]
                for p in batch:
                    tuns[src].host.send(p)
                sent += batch
                want, rx = len(sent), gws[dst].metrics.inbound
                await _until(lambda: rx.packets >= want)  # noqa: B023 (awaited here)
            assert drain(tuns[dst].host) == sent
            assert not gws[src].metrics.outbound.drops and not gws[dst].metrics.inbound.drops
        used: dict[uuid.UUID, list[tuple[int, int]]] = {}
        for kid, off, n in ledger:
            used.setdefault(kid, []).append((off, off + n))
        assert len(used) > 50
        # the Python path took one packet per key switch, and the announcements
        data_keys = sum(1 for r in used.values() if len(r) > 1)
        assert slow["out"] <= 2 * data_keys + 2, slow
        assert slow["in"] <= 4 * data_keys + gws["A"].metrics.outbound.announces + 4, slow
        assert gws["B"].metrics.inbound.packets - slow["in"] > 1500
        for ranges in used.values():
            ranges.sort()
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(ranges))
        for g in gws.values():
            for d in (g.metrics.outbound, g.metrics.inbound):
                assert d.key_arrived_bytes == d.key_bytes + d.key_buffered_bytes
    finally:
        for g in gws.values():
            await g.stop()


def test_the_warm_up_compiles_what_the_gateway_calls() -> None:
    """In a fresh process: after warm_up(), a gateway pair's traffic adds no kernel
    signature (a signature numba has not seen is a compile, seconds without a
    cache, on the first packet; read-only and writable arrays are two types)."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import asyncio\n"
        "from qkdmeet.vpn import fastpath, pump\n"
        "from tests.vpn import test_pump\n"
        "kernels = [pump.seal_run, pump.open_run, pump.inner_ok, fastpath._seal,"
        " fastpath._verify, fastpath._open]\n"
        "pump.warm_up()\n"
        "before = [len(k.signatures) for k in kernels]\n"
        "asyncio.run(test_pump.test_a_gateway_pair_on_the_batched_path())\n"
        "print(before, [len(k.signatures) for k in kernels])\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         timeout=300, check=True).stdout.split("\n")[-2]
    before, after = out.split("] [")
    assert before == "[1, 1, 1, 1, 1, 1" and after == "1, 1, 1, 1, 1, 1]", out
