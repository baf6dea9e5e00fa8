"""The UDP bind between gateways (as wireguard-go's ``conn.Bind``) and a fake.

:class:`UdpBind` is a non-blocking UDP socket *connected* to the peer (the
kernel itself filters datagrams from other sources), read in batches from the
event loop (no asyncio transport objects on the hot path). On the gateway's
batched path (:mod:`.pump`) a kernel sends and receives on its descriptor
directly; :meth:`UdpBind.watch` and :meth:`UdpBind.recv_one` serve it.

An earlier version batched through the kernel's UDP segmentation offload
(GSO/GRO, as wireguard-go does on Linux) because Python has no
``sendmmsg``/``recvmmsg``: measured 3-14 % slower than one ``send`` per
datagram on the testbed, and half the batched path's rate (176 against 342
Mb/s, ``qkdmeet bench vpn``, 2026-12-04), it was removed.

:class:`FakeBindPair` links two binds in memory, with a ``tap`` that can
drop, alter, duplicate or reorder datagrams for tests.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from qkdmeet.vpn.constants import READ_BATCH

Address = tuple[str, int]
DeliverDatagrams = Callable[[list[tuple[bytes, Address]]], None]

class DatagramBind(Protocol):
    """Where the gateway's outer packets come from and go to."""

    def open(self, deliver: DeliverDatagrams) -> None: ...

    def send(self, datagram: bytes) -> None: ...

    def send_many(self, datagrams: list[bytes]) -> None: ...

    def accepts(self, addr: Address) -> bool: ...

    def close(self) -> None: ...


@runtime_checkable
class RawDatagramBind(Protocol):
    """A bind that is one connected socket (only the peer's datagrams arrive): the
    gateway's batched path (:mod:`.pump`) sends and receives on it from a kernel."""

    send_errors: int

    def fileno(self) -> int: ...

    def watch(self, on_readable: Callable[[], None]) -> None:
        """Call ``on_readable`` from the event loop whenever datagrams wait (instead of open)."""

    def recv_one(self) -> bytes | None:
        """One datagram from the peer, or ``None`` when none waits."""


def parse_address(text: str) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def format_address(address: Address) -> str:
    """``HOST:PORT`` (an IPv6 host in brackets): what :func:`parse_address` reads."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class UdpBind:
    """One UDP socket bound to ``listen``, talking to ``peer``."""

    def __init__(self, listen: Address, peer: Address, *, buffer_bytes: int = 4 << 20) -> None:
        self.peer = peer
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, buffer_bytes)
        self._sock.bind(listen)
        # connected: send() skips address handling per datagram, and the kernel
        # itself filters datagrams from other sources
        self._sock.connect(peer)
        self._sock.setblocking(False)
        self._deliver: DeliverDatagrams | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.send_errors = 0
        self._peer_ip = socket.gethostbyname(peer[0])
        self._send = self._sock.send

    @property
    def local(self) -> Address:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def accepts(self, addr: Address) -> bool:
        return addr[0] == self._peer_ip and addr[1] == self.peer[1]

    def fileno(self) -> int:
        return self._sock.fileno()

    def open(self, deliver: DeliverDatagrams) -> None:
        self._deliver = deliver
        self.watch(self._on_readable)

    def watch(self, on_readable: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), on_readable)

    def recv_one(self) -> bytes | None:
        try:
            return self._sock.recv(65535)
        except OSError:  # BlockingIOError: nothing waits; or an ICMP error reported
            return None

    def _on_readable(self) -> None:
        batch: list[tuple[bytes, Address]] = []
        recv = self._sock.recvfrom
        for _ in range(READ_BATCH):
            try:
                batch.append(recv(65535))
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # e.g. ICMP port unreachable reported on the socket
        if batch and self._deliver is not None:
            self._deliver(batch)

    def send(self, datagram: bytes) -> None:
        try:
            self._send(datagram)
        except OSError:
            self.send_errors += 1  # buffer full or no route: the datagram is lost

    def send_many(self, datagrams: list[bytes]) -> None:
        """Send ``datagrams`` in order."""
        for d in datagrams:
            self.send(d)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()


Tap = Callable[[bytes], list[bytes]]


class FakeBind:
    """One end of a :class:`FakeBindPair`."""

    def __init__(self, addr: Address) -> None:
        self.addr = addr
        self.other: FakeBind | None = None
        self.tap: Tap | None = None  # applied to datagrams this end sends
        self.sent: list[bytes] = []
        self._deliver: DeliverDatagrams | None = None

    def open(self, deliver: DeliverDatagrams) -> None:
        self._deliver = deliver

    def accepts(self, addr: Address) -> bool:
        return self.other is not None and addr == self.other.addr

    def send_many(self, datagrams: list[bytes]) -> None:
        for d in datagrams:
            self.send(d)

    def send(self, datagram: bytes) -> None:
        self.sent.append(datagram)
        out = self.tap(datagram) if self.tap is not None else [datagram]
        if self.other is not None and out:
            self.other.receive(out, self.addr)

    def receive(self, datagrams: list[bytes], source: Address) -> None:
        if self._deliver is not None:
            self._deliver([(d, source) for d in datagrams])

    def close(self) -> None:
        self._deliver = None


class FakeBindPair:
    """Two in-memory binds delivering to each other synchronously."""

    def __init__(self) -> None:
        self.a = FakeBind(("192.0.2.1", 51900))
        self.b = FakeBind(("192.0.2.2", 51900))
        self.a.other, self.b.other = self.b, self.a
