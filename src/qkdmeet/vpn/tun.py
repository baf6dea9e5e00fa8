"""Packet devices: the Linux TUN (one IP packet per read/write) and a fake.

:class:`PacketDevice` is the small interface the gateway needs (as
wireguard-go's ``tun.Device``): ``open(deliver)`` starts delivering batches
of inbound packets to ``deliver`` from the event loop, ``write`` sends one
packet to the kernel, ``close`` stops. :class:`FakeTun` is backed by lists
and a callback, for tests without root.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import struct
import subprocess
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from qkdmeet.vpn.constants import READ_BATCH, TUN_MTU

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000

Deliver = Callable[[list[bytes]], None]


class PacketDevice(Protocol):
    """Where the gateway's inner IP packets come from and go to."""

    def open(self, deliver: Deliver) -> None: ...

    def write(self, packet: bytes) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class RawPacketDevice(Protocol):
    """A packet device that is one file descriptor, one packet per read/write: the
    gateway's batched path (:mod:`.pump`) reads and writes it from a kernel."""

    write_errors: int

    def fileno(self) -> int: ...

    def watch(self, on_readable: Callable[[], None]) -> None:
        """Call ``on_readable`` from the event loop whenever packets wait (instead of open)."""

    def read_one(self) -> bytes | None:
        """One packet, or ``None`` when none waits."""


class TunDevice:
    """A Linux TUN interface (IFF_TUN | IFF_NO_PI), non-blocking, read in batches.

    Creating it needs CAP_NET_ADMIN. The interface disappears when closed
    (not persistent), and with it the routes through it.
    """

    def __init__(self, name: str, *, mtu: int = TUN_MTU) -> None:
        if not 0 < len(name) < 16:
            raise ValueError(f"interface name {name!r} must be 1-15 characters")
        self.mtu = mtu
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            ifr = struct.pack("16sH", name.encode(), _IFF_TUN | _IFF_NO_PI)
            res = fcntl.ioctl(fd, _TUNSETIFF, ifr)
        except OSError:
            os.close(fd)
            raise
        self.name = res[:16].rstrip(b"\0").decode()
        self._fd = fd
        self._deliver: Deliver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.write_errors = 0
        _ip("link", "set", "dev", self.name, "mtu", str(mtu), "up")

    def add_route(self, cidr: str) -> None:
        _ip("route", "replace", cidr, "dev", self.name)

    def add_address(self, cidr: str) -> None:
        _ip("addr", "replace", cidr, "dev", self.name)

    def fileno(self) -> int:
        return self._fd

    def open(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self.watch(self._on_readable)

    def watch(self, on_readable: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, on_readable)

    def read_one(self) -> bytes | None:
        try:
            return os.read(self._fd, 65535)
        except OSError:  # BlockingIOError: nothing waits
            return None

    def _on_readable(self) -> None:
        batch: list[bytes] = []
        read = os.read
        fd = self._fd
        for _ in range(READ_BATCH):
            try:
                batch.append(read(fd, 65535))
            except BlockingIOError:
                break
            except OSError:
                break
        if batch and self._deliver is not None:
            self._deliver(batch)

    def write(self, packet: bytes) -> None:
        try:
            os.write(self._fd, packet)
        except OSError:
            self.write_errors += 1  # queue full or packet refused: counted, dropped

    def close(self) -> None:
        if self._fd < 0:
            return
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {proc.stderr.strip()}")


class FakeTun:
    """A channel-backed TUN for tests: ``inject`` plays the kernel's side."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self._deliver: Deliver | None = None
        self.on_write: Callable[[bytes], None] | None = None

    def open(self, deliver: Deliver) -> None:
        self._deliver = deliver

    def inject(self, *packets: bytes) -> None:
        """Packets the kernel routed into the tunnel (delivered synchronously)."""
        if self._deliver is None:
            raise RuntimeError("device not open")
        self._deliver(list(packets))

    def write(self, packet: bytes) -> None:
        self.written.append(packet)
        if self.on_write is not None:
            self.on_write(packet)

    def close(self) -> None:
        self._deliver = None
