"""Messages of the block protocol on the authenticated classical channel.

Every payload starts with ``kind u8 | block_id u64``; the rest depends on the
kind (all integers little-endian, bit arrays packed most significant bit
first, byte strings prefixed with their u32 length):

======================  ====  =================================================
kind                    from  body
======================  ====  =================================================
HELLO                   both  version u8, link id, next block u64, fingerprint
ANNOUNCE                Bob   first pulse u64, end pulse u64, n u32, index
                              coding u8, delta-coded pulse indices, bases
SIFT_REPLY              Alice n u32, codes (basis | intensity << 2 per
                              detection, basis 3 = no record), Alice's Z bits
ESTIMATE                Bob   abort u8, Bob's Z bits, Cascade INIT request
EC_REQUEST / EC_REPLY   both  Cascade request / reply bytes
EC_DONE                 Bob   (empty)
VERIFY                  Alice key length u64, tag bits u32, verification seed,
                              tag, privacy-amplification seed
VERDICT                 Bob   ok u8, Bob's next seq received u64, next sent u64
ABORT                   both  reason (UTF-8)
======================  ====  =================================================
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PROTOCOL_VERSION = 1

HELLO = 1
ANNOUNCE = 2
SIFT_REPLY = 3
ESTIMATE = 4
EC_REQUEST = 5
EC_REPLY = 6
EC_DONE = 7
VERIFY = 8
VERDICT = 9
ABORT = 10

NAMES = {
    HELLO: "HELLO",
    ANNOUNCE: "ANNOUNCE",
    SIFT_REPLY: "SIFT_REPLY",
    ESTIMATE: "ESTIMATE",
    EC_REQUEST: "EC_REQUEST",
    EC_REPLY: "EC_REPLY",
    EC_DONE: "EC_DONE",
    VERIFY: "VERIFY",
    VERDICT: "VERDICT",
    ABORT: "ABORT",
}

_HEAD = struct.Struct("<BQ")
_U32 = struct.Struct("<I")
_DTYPES = ("<u1", "<u2", "<u4", "<u8")


class ProtocolError(ValueError):
    """A message that is malformed or not the one the protocol expects now."""


@dataclass(frozen=True, slots=True)
class Message:
    kind: int
    block_id: int
    body: bytes

    @property
    def name(self) -> str:
        return NAMES.get(self.kind, f"kind {self.kind}")


def encode(kind: int, block_id: int, *parts: bytes) -> bytes:
    return _HEAD.pack(kind, block_id) + b"".join(parts)


def decode(payload: bytes) -> Message:
    if len(payload) < _HEAD.size:
        raise ProtocolError("short protocol message")
    kind, block_id = _HEAD.unpack_from(payload)
    if kind not in NAMES:
        raise ProtocolError(f"unknown protocol message kind {kind}")
    return Message(kind, block_id, payload[_HEAD.size :])


class Reader:
    """Reads the fields of a message body in order; :class:`ProtocolError` on a short body."""

    def __init__(self, body: bytes) -> None:
        self._b = body
        self._off = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self._off + n > len(self._b):
            raise ProtocolError("message body too short")
        out = self._b[self._off : self._off + n]
        self._off += n
        return out

    def unpack(self, fmt: struct.Struct) -> tuple[int, ...]:
        return tuple(fmt.unpack(self.take(fmt.size)))

    def u8(self) -> int:
        return self.take(1)[0]

    def u32(self) -> int:
        return int(_U32.unpack(self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self.take(8))[0])

    def blob(self) -> bytes:
        return self.take(self.u32())

    def bits(self) -> npt.NDArray[np.uint8]:
        n = self.u32()
        raw = np.frombuffer(self.take((n + 7) // 8), dtype=np.uint8)
        return np.ascontiguousarray(np.unpackbits(raw)[:n])

    def end(self) -> None:
        if self._off != len(self._b):
            raise ProtocolError(f"{len(self._b) - self._off} unexpected bytes after the message")


def u8(v: int) -> bytes:
    return bytes((v,))


def u32(v: int) -> bytes:
    return _U32.pack(v)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v)


def blob(b: bytes) -> bytes:
    return _U32.pack(len(b)) + b


def bits(a: npt.NDArray[np.uint8]) -> bytes:
    return _U32.pack(int(a.size)) + np.packbits(a).tobytes()


def encode_indices(index: npt.NDArray[np.int64], first: int) -> bytes:
    """Strictly increasing pulse indices from ``first`` on, delta-coded in the smallest type."""
    deltas = np.diff(index, prepend=np.int64(first))
    top = int(deltas.max()) if deltas.size else 0
    code = next(i for i, d in enumerate(_DTYPES) if top <= np.iinfo(np.dtype(d)).max)
    return u32(int(index.size)) + u8(code) + deltas.astype(_DTYPES[code]).tobytes()


def decode_indices(r: Reader, first: int, end: int) -> npt.NDArray[np.int64]:
    n = r.u32()
    code = r.u8()
    if code >= len(_DTYPES):
        raise ProtocolError(f"unknown index coding {code}")
    dt = np.dtype(_DTYPES[code])
    deltas = np.frombuffer(r.take(n * dt.itemsize), dtype=dt).astype(np.int64)
    index = np.cumsum(deltas) + first
    if n and (index[0] < first or index[-1] >= end or (n > 1 and np.any(deltas[1:] == 0))):
        raise ProtocolError("announced pulse indices outside the block or not increasing")
    return np.ascontiguousarray(index)
