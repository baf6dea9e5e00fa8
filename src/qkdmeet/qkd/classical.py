"""The authenticated classical channel between the two ends of the link.

Frame (every classical message)::

    seq u64 | length u32 | payload (length bytes) | tag (32 bytes)

``tag`` is the Wegman-Carter tag (:class:`qkdmeet.crypto.WegmanCarterMac`) of
``seq | length | payload`` under the two ends' shared hash key and a fresh
32-byte mask. Masks are indexed by ``seq``: the n-th message of a direction
is masked with the n-th mask of that direction's pool, so a mask never
serves two messages, and a lost message costs its mask at both ends.

Open frames (``seq`` = :data:`OPEN_SEQ`, no tag) carry the messages inside a
block: they spend no mask. The protocol hashes each block's transcript
(every message sent and received, in order) into a
:class:`~qkdmeet.crypto.wegman_carter.MacStream` as it goes and closes it with
a *checkpoint*, a tagged frame whose tag covers ``transcript | payload | seq |
length`` (:meth:`AuthenticatedChannel.send` with ``stream``, checked by
:meth:`AuthenticatedChannel.check`): one mask per direction per block instead
of one per message, and nothing of the block is used before both ends have
checked both checkpoints (:mod:`qkdmeet.qkd.protocol`).

The receiver accepts only ``seq`` at or above the next expected one:

- ``seq`` below it: :class:`ReplayError` (a replayed or duplicated frame);
- a wrong tag: :class:`AuthenticationError` (the mask is spent);
- a malformed frame: :class:`AuthenticationError`.

Key (:class:`AuthKeys`): a pre-shared secret bootstraps the link: its first
32 bytes are the hash key, the rest is split in two halves of masks, the
first for transmitter -> receiver, the second for receiver -> transmitter.
After every completed block both ends refill each direction's pool from the
distilled key to :attr:`AuthKeys.target_masks` unused masks
(:meth:`AuthKeys.refill`), in the same way, so the refill is simply
subtracted from the key they deliver. ``spent_bits`` counts the key used on
authentication (masks and the hash key), ``refilled_bits`` the link key
kept back for it.

Transports carry frames: :func:`memory_pair` (asyncio queues, with an
optional tamper hook for tests) and :class:`StreamTransport` (asyncio
streams over TCP, multiplexing the classical channel with the networked
link's quantum-channel stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from qkdmeet.crypto.wegman_carter import (
    HASH_KEY_BYTES,
    MASK_BYTES,
    TAG_BYTES,
    MacStream,
    WegmanCarterMac,
)
from qkdmeet.errors import BlockError, QkdError

log = logging.getLogger(__name__)

#: Masks per direction in a default pre-shared secret: the reserve the link keeps
#: topped up (a completed block spends one per direction; an aborted one none).
DEFAULT_SECRET_MASKS = 4096
#: Bytes of that secret: the hash key, then each direction's masks.
DEFAULT_SECRET_BYTES = HASH_KEY_BYTES + 2 * DEFAULT_SECRET_MASKS * MASK_BYTES

_HEAD = struct.Struct("<QI")
#: ``seq`` of an open (untagged) frame.
OPEN_SEQ = (1 << 64) - 1
#: Largest classical payload accepted (a block's announcement of ~10^8 detections fits).
MAX_PAYLOAD = 1 << 30


class ClassicalChannelError(QkdError):
    """Base class of the classical channel's errors."""


class AuthenticationError(ClassicalChannelError, BlockError):
    """A frame whose tag does not verify, or which is malformed."""


class ReplayError(AuthenticationError):
    """A frame whose sequence number was already used (replayed or duplicated)."""


class AuthKeyExhausted(ClassicalChannelError):
    """No unused mask left: the link needs a new pre-shared secret."""


class ChannelClosed(ClassicalChannelError):
    """The transport was closed."""


# -- key -------------------------------------------------------------------------------


@dataclass
class _Pool:
    """Masks of one direction: mask ``seq`` is at ``(seq - base) * MASK_BYTES``."""

    data: bytearray
    base: int = 0

    @property
    def end(self) -> int:
        """One past the last seq with a mask."""
        return self.base + len(self.data) // MASK_BYTES

    def take(self, seq: int) -> bytes:
        """The mask for ``seq``; every mask below it is discarded."""
        if seq < self.base:
            raise AuthKeyExhausted(f"mask {seq} was already used")
        if seq >= self.end:
            raise AuthKeyExhausted(
                f"authentication key exhausted at message {seq} (masks up to {self.end})"
            )
        off = (seq - self.base) * MASK_BYTES
        mask = bytes(self.data[off : off + MASK_BYTES])
        del self.data[: off + MASK_BYTES]
        self.base = seq + 1
        return mask

    def unused(self, next_seq: int) -> int:
        """Masks from ``next_seq`` on (a deterministic function of the refills and ``next_seq``)."""
        return max(self.end - next_seq, 0)


@dataclass
class AuthKeys:
    """The hash key and both directions' mask pools of one end (see the module docstring)."""

    hash_key: bytes
    outgoing: _Pool
    incoming: _Pool
    target_masks: int
    spent_bits: int = HASH_KEY_BYTES * 8
    refilled_bits: int = 0
    _sent_masks: int = field(default=0, repr=False)

    @classmethod
    def from_secret(
        cls, secret: bytes, *, transmitter: bool, target_masks: int | None = None
    ) -> AuthKeys:
        """Split a pre-shared secret: hash key, then transmitter's masks, then receiver's."""
        per_direction = (len(secret) - HASH_KEY_BYTES) // (2 * MASK_BYTES)
        if per_direction < 8:
            raise ValueError(
                f"pre-shared secret of {len(secret)} bytes is too short: it needs "
                f"{HASH_KEY_BYTES} bytes of hash key and at least 8 masks of {MASK_BYTES} bytes "
                "per direction (use at least 64 KiB for real blocks)"
            )
        body = secret[HASH_KEY_BYTES:]
        half = per_direction * MASK_BYTES
        a_to_b, b_to_a = bytearray(body[:half]), bytearray(body[half : 2 * half])
        out, inc = (a_to_b, b_to_a) if transmitter else (b_to_a, a_to_b)
        target = per_direction if target_masks is None else target_masks
        return cls(bytes(secret[:HASH_KEY_BYTES]), _Pool(out), _Pool(inc), target)

    # -- persistence (a restarted end must never reuse a mask) ----------------------
    _STATE = struct.Struct("<4sQQQQQQ")

    def to_bytes(self) -> bytes:
        """The whole state, for :meth:`from_bytes` after a restart."""
        head = self._STATE.pack(
            b"QKA1", self.target_masks, self.spent_bits, self.refilled_bits,
            self.outgoing.base, self.incoming.base, len(self.outgoing.data),
        )  # fmt: skip
        return head + self.hash_key + bytes(self.outgoing.data) + bytes(self.incoming.data)

    @classmethod
    def from_bytes(cls, data: bytes, *, skip_outgoing: int = 0) -> AuthKeys:
        """Restore :meth:`to_bytes`; ``skip_outgoing`` masks are burnt (they may have been used
        after the state was saved: a gap the peer's receiver skips)."""
        size = cls._STATE.size
        if len(data) < size + HASH_KEY_BYTES:
            raise ValueError("authentication key state is truncated")
        magic, target, spent, refilled, out_base, in_base, out_len = cls._STATE.unpack_from(data)
        if magic != b"QKA1":
            raise ValueError("not an authentication key state file")
        body = data[size + HASH_KEY_BYTES :]
        if out_len > len(body) or out_len % MASK_BYTES or (len(body) - out_len) % MASK_BYTES:
            raise ValueError("authentication key state is corrupt")
        keys = cls(
            data[size : size + HASH_KEY_BYTES],
            _Pool(bytearray(body[:out_len]), out_base),
            _Pool(bytearray(body[out_len:]), in_base),
            target,
            spent,
            refilled,
        )
        n = min(skip_outgoing, len(keys.outgoing.data) // MASK_BYTES)
        if n:
            keys.outgoing.take(keys.outgoing.base + n - 1)
            keys.spent_bits += n * MASK_BYTES * 8
        return keys

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_bytes` atomically (a crash leaves the old or the new state)."""
        tmp = f"{os.fspath(path)}.tmp"
        with open(tmp, "wb") as f:
            f.write(self.to_bytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def refill_bytes(self, next_out: int, next_in: int) -> tuple[int, int]:
        """Bytes of key each direction needs (outgoing, incoming) to get back to the target."""
        need_out = max(self.target_masks - self.outgoing.unused(next_out), 0) * MASK_BYTES
        need_in = max(self.target_masks - self.incoming.unused(next_in), 0) * MASK_BYTES
        return need_out, need_in

    def refill(self, key: bytes, next_out: int, next_in: int, *, transmitter: bool) -> int:
        """Top both pools up from ``key`` (the transmitter's direction first); bytes taken.

        Both ends call this with the same key and sequence numbers, so both
        pools stay equal at the two ends.
        """
        need_out, need_in = self.refill_bytes(next_out, next_in)
        need_ab, need_ba = (need_out, need_in) if transmitter else (need_in, need_out)
        need_ab = min(need_ab, len(key) // MASK_BYTES * MASK_BYTES)
        need_ba = min(need_ba, (len(key) - need_ab) // MASK_BYTES * MASK_BYTES)
        ab, ba = key[:need_ab], key[need_ab : need_ab + need_ba]
        out, inc = (ab, ba) if transmitter else (ba, ab)
        self.outgoing.data += out
        self.incoming.data += inc
        taken = need_ab + need_ba
        self.refilled_bits += taken * 8
        return taken


# -- transports ------------------------------------------------------------------------


#: What frames are made of: sent as parts (no concatenation copy), read as views.
Buffer: TypeAlias = bytes | bytearray | memoryview


class FrameTransport(Protocol):
    """Carries whole classical frames, in order; a frame is sent as its parts."""

    async def send(self, *parts: Buffer) -> None: ...

    async def recv(self) -> bytes: ...

    async def close(self) -> None: ...


Tamper = Callable[[bytes], list[bytes]]


class MemoryTransport:
    """One end of an in-memory frame pipe (see :func:`memory_pair`)."""

    def __init__(
        self,
        inbox: asyncio.Queue[bytes | None],
        outbox: asyncio.Queue[bytes | None],
        tamper: Tamper | None = None,
    ) -> None:
        self._inbox = inbox
        self._outbox = outbox
        #: Man in the middle on this end's outgoing frames: returns the frames to deliver.
        self.tamper = tamper
        self._closed = False

    async def send(self, *parts: Buffer) -> None:
        if self._closed:
            raise ChannelClosed("transport closed")
        frame = b"".join(parts)
        for f in self.tamper(frame) if self.tamper else [frame]:
            self._outbox.put_nowait(f)

    async def recv(self) -> bytes:
        frame = await self._inbox.get()
        if frame is None:
            self._inbox.put_nowait(None)
            raise ChannelClosed("transport closed")
        return frame

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._outbox.put_nowait(None)
            self._inbox.put_nowait(None)


def memory_pair() -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected in-memory transports (transmitter's end, receiver's end)."""
    ab: asyncio.Queue[bytes | None] = asyncio.Queue()
    ba: asyncio.Queue[bytes | None] = asyncio.Queue()
    return MemoryTransport(ba, ab), MemoryTransport(ab, ba)


#: Stream kinds multiplexed on one TCP connection.
KIND_CLASSICAL = 0
KIND_QUANTUM = 1
_MUX = struct.Struct("<BI")
#: Frame parts at least this long are written as views of their own, not joined.
_WRITE_VIEW_BYTES = 1 << 16


class StreamTransport:
    """Frames over an asyncio stream, classical and quantum-channel frames multiplexed.

    ``recv()`` returns classical frames; quantum-channel frames go to
    ``quantum`` (a queue, ``None`` once the connection ends). A reader task
    (started by :meth:`start`, stopped by :meth:`close`) demultiplexes.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._classical: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.quantum: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.dropped = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._read_loop(), name="qkd-stream-reader")

    async def _read_loop(self) -> None:
        try:
            while True:
                head = await self._reader.readexactly(_MUX.size)
                kind, length = _MUX.unpack(head)
                if length > MAX_PAYLOAD + 64:
                    log.warning("dropping connection: frame of %d bytes", length)
                    break
                body = await self._reader.readexactly(length)
                if kind == KIND_CLASSICAL:
                    self._classical.put_nowait(body)
                elif kind == KIND_QUANTUM:
                    self.quantum.put_nowait(body)
                else:
                    self.dropped += 1
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self._classical.put_nowait(None)
            self.quantum.put_nowait(None)

    async def _write(self, kind: int, parts: tuple[Buffer, ...]) -> None:
        if self._writer.is_closing():
            raise ChannelClosed("connection closed")
        async with self._lock:
            try:
                small: list[Buffer] = [_MUX.pack(kind, sum(len(p) for p in parts))]
                for part in parts:
                    if len(part) < _WRITE_VIEW_BYTES:
                        small.append(part)  # small parts go out joined: one send, one segment
                        continue
                    self._writer.write(b"".join(small))
                    small = []
                    # a large part as a view: the transport slices what the socket did not
                    # take at once, and a slice of bytes would copy the rest of it first
                    self._writer.write(memoryview(part))
                if small:
                    self._writer.write(b"".join(small))
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                raise ChannelClosed(f"connection lost: {exc}") from exc

    async def send(self, *parts: Buffer) -> None:
        await self._write(KIND_CLASSICAL, parts)

    async def send_quantum(self, *parts: Buffer) -> None:
        await self._write(KIND_QUANTUM, parts)

    async def recv(self) -> bytes:
        frame = await self._classical.get()
        if frame is None:
            self._classical.put_nowait(None)
            raise ChannelClosed("connection closed")
        return frame

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


# -- the authenticated channel ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """A frame as read: open (``seq`` None) or tagged and not yet checked (see ``check``)."""

    payload: Buffer
    seq: int | None = None
    body: bytes = b""
    mask: bytes = b""
    tag: bytes = b""

    @property
    def tagged(self) -> bool:
        return self.seq is not None


class AuthenticatedChannel:
    """Sequence-numbered, Wegman-Carter-authenticated messages over a :class:`FrameTransport`.

    ``send``/``recv``: one tag per message. ``send_open``/``recv_frame`` and
    ``send(..., transcript=...)``/``check``: open frames closed by a checkpoint
    whose tag covers their transcript (the module docstring).
    """

    def __init__(self, transport: FrameTransport, keys: AuthKeys) -> None:
        self.transport = transport
        self.keys = keys
        self._mac = WegmanCarterMac(keys.hash_key)
        self.next_send = keys.outgoing.base
        self.next_recv = keys.incoming.base
        self.sent = 0
        self.received = 0
        self.sent_open = 0
        self.received_open = 0
        self.rejected = 0
        self.replayed = 0

    def transcript_mac(self) -> MacStream:
        """A fresh incremental hash for a transcript that a checkpoint will close."""
        return self._mac.stream()

    async def send(self, payload: bytes, stream: MacStream | None = None) -> int:
        """Send ``payload`` tagged (after ``stream``'s transcript); returns the seq (mask) used."""
        seq, _ = await self.send_tagged(payload, stream)
        return seq

    async def send_tagged(
        self, payload: bytes, stream: MacStream | None = None
    ) -> tuple[int, bytes]:
        """:meth:`send`, returning the seq (mask) used and the tag."""
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"classical message of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        seq = self.next_send
        mask = self.keys.outgoing.take(seq)
        self.next_send = seq + 1
        self.keys.spent_bits += MASK_BYTES * 8
        head = _HEAD.pack(seq, len(payload))
        if stream is not None:
            stream.update(payload)
            stream.update(head)
            tag = stream.tag(mask)
        else:
            tag = self._mac.tag(head + payload, mask)
        await self.transport.send(head, payload, tag)
        self.sent += 1
        return seq, tag

    async def send_open(self, payload: bytes) -> None:
        """Send ``payload`` untagged: it counts only inside a checkpointed transcript."""
        if len(payload) > MAX_PAYLOAD:
            raise ValueError(f"classical message of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
        await self.transport.send(_HEAD.pack(OPEN_SEQ, len(payload)), payload)
        self.sent_open += 1

    async def recv_frame(self) -> Received:
        """The next frame: open, or tagged with its mask taken (:meth:`check` verifies it)."""
        frame = await self.transport.recv()
        if len(frame) < _HEAD.size:
            self.rejected += 1
            raise AuthenticationError(f"malformed classical frame of {len(frame)} bytes")
        seq, length = _HEAD.unpack_from(frame)
        if seq == OPEN_SEQ:
            if length != len(frame) - _HEAD.size:
                self.rejected += 1
                raise AuthenticationError("open classical frame length does not match its header")
            self.received_open += 1
            return Received(memoryview(frame)[_HEAD.size :])  # a view: no copy of 10 MB
        if len(frame) < _HEAD.size + TAG_BYTES or length != len(frame) - _HEAD.size - TAG_BYTES:
            self.rejected += 1
            raise AuthenticationError("classical frame length does not match its header")
        if seq < self.next_recv:
            self.rejected += 1
            self.replayed += 1
            raise ReplayError(
                f"replayed classical message (seq {seq}, expected >= {self.next_recv})"
            )
        mask = self.keys.incoming.take(seq)
        self.keys.spent_bits += MASK_BYTES * 8 * (seq + 1 - self.next_recv)  # lost ones too
        self.next_recv = seq + 1
        end = len(frame) - TAG_BYTES
        return Received(frame[_HEAD.size : end], seq, frame[:end], mask, frame[end:])

    async def check(self, frame: Received, stream: MacStream | None = None) -> None:
        """Verify a tagged frame (after ``stream``'s transcript): AuthenticationError if forged."""
        if frame.seq is None:
            self.rejected += 1
            raise AuthenticationError("an open frame where a tagged one was expected")
        if stream is not None:
            stream.update(frame.payload)
            stream.update(frame.body[: _HEAD.size])
            ok = stream.verify(frame.mask, frame.tag)
        else:
            ok = self._mac.verify(frame.body, frame.mask, frame.tag)
        if not ok:
            self.rejected += 1
            raise AuthenticationError(f"classical message {frame.seq} failed authentication")
        self.received += 1

    async def recv(self) -> bytes:
        """The next authentic tagged message (else AuthenticationError or ReplayError)."""
        frame = await self.recv_frame()
        await self.check(frame)
        return frame.payload
