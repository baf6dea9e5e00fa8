"""The UDP bind between gateways (as wireguard-go's ``conn.Bind``) and a fake.

:class:`UdpBind` is a non-blocking UDP socket read in batches from the event
loop (no asyncio transport objects on the hot path); it sends to one peer.
Python has no ``sendmmsg``/``recvmmsg``; with ``offload`` the bind batches
through the kernel's UDP segmentation offload instead, as wireguard-go does on Linux: a
run of equal-sized datagrams (the last may be shorter) leaves in one
``sendmsg`` with a ``UDP_SEGMENT`` control message, and with ``UDP_GRO`` on
the socket the kernel hands such a run up as one buffer plus its segment
size. On the wire they are ordinary datagrams: a receiver or middlebox
without GRO (the WAN relay, a capture) sees them one by one. Where the path
refuses GSO (no checksum offload: ``EIO``) the bind falls back to one
``send`` per datagram for good.

Measured on the two-site testbed (``qkdmeet bench vpn``: gateways with and
without offload taking turns, 3 runs each, four times): 76 / 89, 92 / 107,
103 / 107 and 106 / 112 Mb/s, GSO/GRO 3-14 % *slower* here. The load reaches gateway A
a packet at a time (a GSO run carried 2.0 datagrams on average at its
maximum), so little is batched, while ``recvmsg`` with ancillary data and the
split of the GRO buffer cost more in Python than ``recvfrom``. So offload is
off by default (the gateways' ``udp_offload``); the bench keeps measuring both.

:class:`FakeBindPair` links two binds in memory, with a ``tap`` that can
drop, alter, duplicate or reorder datagrams for tests.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from qkdmeet.udpgso import GRO_CMSG_SPACE, UDP_GRO, gso_runs, segment_cmsg, split_gro
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


class UdpBind:
    """One UDP socket bound to ``listen``, talking to ``peer``."""

    def __init__(
        self, listen: Address, peer: Address, *, buffer_bytes: int = 4 << 20, offload: bool = False
    ) -> None:
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
        self.gso = offload
        self.gro = False
        if offload:
            try:
                self._sock.setsockopt(socket.SOL_UDP, UDP_GRO, 1)
                self.gro = True
            except OSError:
                pass  # an older kernel: datagrams arrive one by one
        #: GSO sends and the datagrams they carried (a batching figure).
        self.gso_sends = 0
        self.gso_datagrams = 0
        self.gro_buffers = 0
        self.recv_truncated = 0

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
        if self.gro:
            self._read_gro()
            return
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

    def _read_gro(self) -> None:
        batch: list[tuple[bytes, Address]] = []
        recvmsg = self._sock.recvmsg
        for _ in range(READ_BATCH):
            try:
                data, ancillary, flags, addr = recvmsg(65535, GRO_CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            if flags & socket.MSG_TRUNC:
                self.recv_truncated += 1  # cannot happen with a 64 KiB buffer; counted
                continue
            segment = 0
            for level, kind, value in ancillary:
                if level == socket.SOL_UDP and kind == UDP_GRO and len(value) >= 4:
                    segment = struct.unpack("=i", value[:4])[0]
            if segment and len(data) > segment:
                self.gro_buffers += 1
                batch.extend((d, addr) for d in split_gro(data, segment))
            else:
                batch.append((data, addr))
        if batch and self._deliver is not None:
            self._deliver(batch)

    def send(self, datagram: bytes) -> None:
        try:
            self._send(datagram)
        except OSError:
            self.send_errors += 1  # buffer full or no route: the datagram is lost

    def send_many(self, datagrams: list[bytes]) -> None:
        """Send ``datagrams`` in order, runs of them per system call where GSO allows."""
        if not self.gso or len(datagrams) < 2:
            for d in datagrams:
                self.send(d)
            return
        sendmsg = self._sock.sendmsg
        for start, end in gso_runs(datagrams):
            if end - start == 1:
                self.send(datagrams[start])
                continue
            run = datagrams[start:end]
            try:
                sendmsg([b"".join(run)], segment_cmsg(len(run[0])))
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EINVAL, errno.ENOPROTOOPT):
                    self.gso = False  # the path cannot segment: one send per datagram
                    for d in run:
                        self.send(d)
                else:
                    self.send_errors += len(run)  # buffer full: the datagrams are lost
                continue
            self.gso_sends += 1
            self.gso_datagrams += len(run)

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
