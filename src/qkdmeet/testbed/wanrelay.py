"""Userspace WAN between the two gateways: a UDP relay with impairments.

Kernel netem is not available here, so the WAN is a relay process in its own
namespace: datagrams arriving on the side facing gateway A are sent on from
the side facing gateway B and the other way round. On the way each datagram
may be lost, corrupted (one byte flipped), duplicated, delayed (fixed delay
plus uniform jitter) or reordered (held back behind later datagrams).
Impairments change at run time through a control socket (a Unix socket,
reachable from outside the namespace): one JSON object per line,
``{"set": {...}}``, ``{"get": null}`` or ``{"stats": null}``; the answer is
one JSON line. An optional capture keeps every datagram seen on the WAN.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import struct
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

Address = tuple[str, int]


@dataclass(slots=True)
class Impairment:
    """Probabilities in [0, 1], times in milliseconds."""

    loss: float = 0.0
    corrupt: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0

    def update(self, values: dict[str, Any]) -> None:
        names = {f.name for f in fields(self)}
        for k, v in values.items():
            if k not in names:
                raise ValueError(f"unknown impairment {k!r}")
            if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{k} must be a non-negative number")
            if k in ("loss", "corrupt", "duplicate", "reorder") and v > 1:
                raise ValueError(f"{k} is a probability")
        for k, v in values.items():
            setattr(self, k, float(v))


@dataclass(slots=True)
class RelayStats:
    received: int = 0
    forwarded: int = 0
    lost: int = 0
    corrupted: int = 0
    duplicated: int = 0
    reordered: int = 0
    send_errors: int = 0


#: Datagrams read per readiness callback: asyncio's own datagram transport reads
#: one per event-loop iteration, which made the relay the tunnel's bottleneck.
READ_BATCH = 64
#: Socket buffers of the relay (bytes), as the gateways' binds.
SOCKET_BUFFER_BYTES = 4 << 20


class _Side:
    """One non-blocking UDP socket of the relay, read in batches from the event loop."""

    def __init__(self, relay: WanRelay, name: str, listen: Address) -> None:
        self.relay = relay
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER_BYTES)
        self.sock.setblocking(False)
        self.sock.bind(listen)
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        recv = self.sock.recv
        on_datagram = self.relay.on_datagram
        for _ in range(READ_BATCH):
            try:
                data = recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ICMP port unreachable from a gateway that is down
            on_datagram(self.name, data)

    @property
    def closed(self) -> bool:
        return self.sock.fileno() < 0

    def sendto(self, data: bytes, peer: Address) -> bool:
        try:
            self.sock.sendto(data, peer)
        except OSError:
            return False  # buffer full or peer unreachable: lost on the WAN
        return True

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            if self._loop is not None:
                self._loop.remove_reader(self.sock.fileno())
            self.sock.close()


class WanRelay:
    """Relays ``a_listen`` <-> ``b_listen``; A side datagrams go to ``b_peer``."""

    def __init__(
        self,
        a_listen: Address,
        a_peer: Address,
        b_listen: Address,
        b_peer: Address,
        *,
        impairment: Impairment | None = None,
        seed: int | None = None,
        capture: Path | None = None,
    ) -> None:
        self.a_listen, self.a_peer, self.b_listen, self.b_peer = a_listen, a_peer, b_listen, b_peer
        self.impairment = impairment or Impairment()
        self.stats = RelayStats()
        self._rng = random.Random(seed)
        self._sides: dict[str, _Side] = {}
        self._capture = capture.open("ab") if capture else None
        self._control: asyncio.AbstractServer | None = None
        self._timers: set[asyncio.TimerHandle] = set()

    async def start(self) -> None:
        for name, listen in (("a", self.a_listen), ("b", self.b_listen)):
            side = _Side(self, name, listen)
            side.open()
            self._sides[name] = side

    def local(self, side: str) -> Address:
        host, port = self._sides[side].sock.getsockname()[:2]
        return str(host), int(port)

    def on_datagram(self, side: str, data: bytes) -> None:
        """One datagram arrived on ``side``: impair it and send it on the other side."""
        imp, rng, st = self.impairment, self._rng, self.stats
        st.received += 1
        if self._capture is not None:
            self._capture.write(struct.pack("!cI", side.encode(), len(data)) + data)
        if imp.loss and rng.random() < imp.loss:
            st.lost += 1
            return
        if imp.corrupt and data and rng.random() < imp.corrupt:
            b = bytearray(data)
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            data = bytes(b)
            st.corrupted += 1
        copies = 1
        if imp.duplicate and rng.random() < imp.duplicate:
            copies = 2
            st.duplicated += 1
        out = "b" if side == "a" else "a"
        for _ in range(copies):
            delay = imp.delay_ms + (rng.uniform(0, imp.jitter_ms) if imp.jitter_ms else 0.0)
            if imp.reorder and rng.random() < imp.reorder:
                delay += max(1.0, 2 * imp.jitter_ms)
                st.reordered += 1
            if delay > 0:
                self._later(delay / 1000, out, data)
            else:
                self._send(out, data)

    def _later(self, seconds: float, side: str, data: bytes) -> None:
        box: list[asyncio.TimerHandle] = []

        def fire() -> None:
            self._timers.discard(box[0])
            self._send(side, data)

        box.append(asyncio.get_running_loop().call_later(seconds, fire))
        self._timers.add(box[0])

    def _send(self, side: str, data: bytes) -> None:
        s = self._sides[side]
        if s.closed:
            return
        if s.sendto(data, self.a_peer if side == "a" else self.b_peer):
            self.stats.forwarded += 1
        else:
            self.stats.send_errors += 1

    # --- control ------------------------------------------------------------------
    async def serve_control(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._control = await asyncio.start_unix_server(self._handle, path=str(path))
        os.chmod(path, 0o600)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write((json.dumps(self.control(line)) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def control(self, line: bytes) -> dict[str, Any]:
        """Answer one control request (also usable in-process)."""
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError("request must be a JSON object")
            if "set" in req:
                if not isinstance(req["set"], dict):
                    raise ValueError("set takes an object")
                self.impairment.update(req["set"])
            if "stats" in req:
                return {"ok": True, "stats": asdict(self.stats)}
            return {"ok": True, "impairment": asdict(self.impairment)}
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}

    async def stop(self) -> None:
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        for side in self._sides.values():
            side.close()
        if self._control is not None:
            self._control.close()
            await self._control.wait_closed()
        if self._capture is not None:
            self._capture.close()
            self._capture = None


def read_capture(path: Path) -> list[tuple[str, bytes]]:
    """The datagrams of a capture file, in order, with the side they arrived on
    (a last record still being written is left out)."""
    raw = path.read_bytes()
    out: list[tuple[str, bytes]] = []
    i = 0
    while i + 5 <= len(raw):
        side, n = struct.unpack_from("!cI", raw, i)
        if i + 5 + n > len(raw):
            break  # a record the relay is still writing
        out.append((side.decode(), raw[i + 5 : i + 5 + n]))
        i += 5 + n
    return out


async def control_request(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    """Send one request to a running relay's control socket."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write((json.dumps(request) + "\n").encode())
        await writer.drain()
        answer: dict[str, Any] = json.loads(await reader.readline())
        return answer
    finally:
        writer.close()
