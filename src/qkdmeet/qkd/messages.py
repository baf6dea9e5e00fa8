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
EC_DONE                 Bob   bits Bob corrected u64 (charged to lambda_EC)
VERIFY                  Alice key length u64, tag bits u32, verification seed,
                              tag, privacy-amplification seed
VERDICT                 Bob   ok u8 (tagged over VERIFY's tag)
ABORT                   both  reason (UTF-8)
======================  ====  =================================================
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from qkdmeet.errors import BlockError
from qkdmeet.qkd.classical import Buffer
from qkdmeet.qkd.kernels.bits import PackedBits

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


class ProtocolError(BlockError, ValueError):
    """A message that is malformed or not the one the protocol expects now."""


@dataclass(frozen=True, slots=True)
class Message:
    kind: int
    block_id: int
    body: memoryview

    @property
    def name(self) -> str:
        return NAMES.get(self.kind, f"kind {self.kind}")


def encode(kind: int, block_id: int, *parts: Buffer) -> bytes:
    """The message as one bytes object: the parts are copied once, here."""
    return b"".join((_HEAD.pack(kind, block_id), *parts))


def decode(payload: Buffer) -> Message:
    """The message's kind, block and body; the body is a view of ``payload`` (no copy)."""
    if len(payload) < _HEAD.size:
        raise ProtocolError("short protocol message")
    kind, block_id = _HEAD.unpack_from(payload)
    if kind not in NAMES:
        raise ProtocolError(f"unknown protocol message kind {kind}")
    return Message(kind, block_id, memoryview(payload)[_HEAD.size :])


class Reader:
    """Reads the fields of a message body in order; :class:`ProtocolError` on a short body.

    Fields are views of the body, not copies (an announcement's indices are ~14 MB).
    """

    def __init__(self, body: Buffer) -> None:
        self._b = memoryview(body)
        self._off = 0

    def take(self, n: int) -> memoryview:
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

    def blob(self) -> memoryview:
        return self.take(self.u32())

    def bits(self) -> npt.NDArray[np.uint8]:
        n = self.u32()
        raw = np.frombuffer(self.take((n + 7) // 8), dtype=np.uint8)
        return np.ascontiguousarray(np.unpackbits(raw)[:n])

    def packed(self) -> PackedBits:
        """A :func:`bits` field kept packed (a long seed; padding bits cleared)."""
        n = self.u32()
        return PackedBits.from_bytes(self.take((n + 7) // 8), n)

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


def bits(a: npt.NDArray[np.uint8] | PackedBits) -> bytes:
    if isinstance(a, PackedBits):
        return _U32.pack(a.nbits) + a.data
    return _U32.pack(int(a.size)) + np.packbits(a).tobytes()


_INDEX_CODE_LIMITS = (0xFF, 0xFFFF, 0xFFFF_FFFF)
_INT64_MAX = 2**63 - 1


#: Index coding 4: one byte per delta 1..255; a zero byte escapes a delta that does not
#: fit (or a first delta of 0), which follows as u64. Pulse gaps are geometric with a mean
#: of ~16 pulses at 2 dB, so almost every delta fits a byte: half of the u16 coding that
#: the rare long gap forces (a 10^7-bit block's announcement ~14 MB instead of ~28 MB).
CODE_ESCAPED = 4
_ESCAPE_BYTES = 9


@numba.njit(cache=True, nogil=True)
def _delta_range(
    index: npt.NDArray[np.int64], first: int
) -> tuple[int, int, int]:  # pragma: no cover
    """Smallest and largest difference ``index[i] - index[i - 1]`` (``index[-1] = first``),
    and the bytes of the escaped coding (:data:`CODE_ESCAPED`), in one pass."""
    lo = np.int64(0)
    hi = np.int64(0)
    size = 0
    if index.size:
        lo = index[0] - first
        hi = lo
        size = 1 if 1 <= lo <= 255 else _ESCAPE_BYTES
    for i in range(1, index.size):
        d = index[i] - index[i - 1]
        lo = min(lo, d)
        hi = max(hi, d)
        size += 1 if 1 <= d <= 255 else _ESCAPE_BYTES
    return int(lo), int(hi), size


@numba.njit(cache=True, nogil=True)
def _delta_fill(
    index: npt.NDArray[np.int64], first: int, out: npt.NDArray[np.unsignedinteger]
) -> None:  # pragma: no cover
    """``out[i] = index[i] - index[i - 1]`` (``index[-1] = first``), in ``out``'s type."""
    prev = np.int64(first)
    for i in range(index.size):
        v = index[i]
        out[i] = v - prev
        prev = v


def encode_indices(index: npt.NDArray[np.int64], first: int) -> Buffer:
    """Strictly increasing pulse indices from ``first`` on, delta-coded in the smallest type.

    Wire format: ``n u32 | code u8 | n deltas`` (code 0, 1, 2, 3: u8, u16, u32, u64).
    Two numba passes (largest delta, then the deltas in place behind the
    header) instead of numpy's diff, max, cast and concatenation. Measured
    2026-12-04 (one core of the shared 2-core machine, thread CPU time,
    6.16e6 indices of the toshiba preset at 2 dB, u16 coding, median of 9
    runs): 7.1-7.3 ms, was 32-33 ms, when run on its own; 15.6 ms, was 44 ms,
    interleaved with other large allocations, where the fresh pages of the
    12 MB result (a bytes object, whatever computes it) cost about 8 ms.
    Indices that do not increase are coded as before (deltas wrap in the
    coded type).
    """
    idx = np.ascontiguousarray(index, dtype=np.int64)
    if idx.ndim != 1 or not 0 <= first <= _INT64_MAX:
        return _encode_indices_numpy(idx, first)
    lo, hi, escaped = _delta_range(idx, first)
    if lo < 0:  # not increasing: keep the plain numpy coding (deltas wrap in the coded type)
        return _encode_indices_numpy(idx, first)
    code = next((i for i, top in enumerate(_INDEX_CODE_LIMITS) if hi <= top), 3)
    if code >= 1 and escaped < idx.size << code:
        return _encode_escaped(idx, first, escaped)
    # 3 spare bytes, then the 5-byte header: the deltas start 8-byte aligned
    buf = np.empty(8 + idx.size * (1 << code), dtype=np.uint8)
    buf[3:8] = np.frombuffer(u32(int(idx.size)) + u8(code), dtype=np.uint8)
    _delta_fill(idx, first, buf[8:].view(_DTYPES[code]))
    return memoryview(buf)[3:]




def _escaped_size(index: npt.NDArray[np.int64], first: int) -> int:
    """Bytes of the escaped coding of ``index`` (:func:`_delta_range` computes it)."""
    return _delta_range(index, first)[2]


@numba.njit(cache=True, nogil=True)
def _escaped_fill(
    index: npt.NDArray[np.int64], first: int, out: npt.NDArray[np.uint8]
) -> None:  # pragma: no cover
    j = 0
    prev = np.int64(first)
    for i in range(index.size):
        d = index[i] - prev
        prev = index[i]
        if 1 <= d <= 255:
            out[j] = d
            j += 1
        else:
            out[j] = 0
            for k in range(8):
                out[j + 1 + k] = (d >> (8 * k)) & 0xFF
            j += _ESCAPE_BYTES


@numba.njit(cache=True, nogil=True)
def _escaped_decode(
    raw: npt.NDArray[np.uint8], first: int, end: int, n: int, out: npt.NDArray[np.int64]
) -> bool:  # pragma: no cover
    """Decode coding 4 of ``n`` indices into ``out`` (none stored if ``out`` is empty: the
    check alone); False unless it uses exactly ``raw``, stays in ``[first, end)`` and
    strictly increases.

    A byte delta is 1..255, so the index increases and (``n`` < 2^32) cannot
    overflow: only escaped deltas are checked one by one, the range once at
    the end.
    """
    j = 0
    nb = raw.size
    store = out.size == n
    prev = np.int64(first)
    for i in range(n):
        if j >= nb:
            return False
        b = raw[j]
        if b != 0:
            prev += np.int64(b)
            j += 1
        else:
            if j + _ESCAPE_BYTES > nb:
                return False
            u = np.uint64(0)
            for k in range(8):
                u |= np.uint64(raw[j + 1 + k]) << np.uint64(8 * k)
            if u > np.uint64(end - 1 - prev) or (i > 0 and u == 0):
                return False
            prev += np.int64(u)
            j += _ESCAPE_BYTES
        if store:
            out[i] = prev
    return j == nb and (n == 0 or prev < end)


def _encode_escaped(idx: npt.NDArray[np.int64], first: int, size: int) -> memoryview:
    buf = np.empty(9 + size, dtype=np.uint8)
    buf[:9] = np.frombuffer(u32(int(idx.size)) + u8(CODE_ESCAPED) + u32(size), dtype=np.uint8)
    _escaped_fill(idx, first, buf[9:])
    return memoryview(buf)


def _encode_indices_numpy(index: npt.NDArray[np.int64], first: int) -> Buffer:
    deltas = np.diff(index, prepend=np.int64(first))
    top = int(deltas.max()) if deltas.size else 0
    code = next(i for i, d in enumerate(_DTYPES) if top <= np.iinfo(np.dtype(d)).max)
    return u32(int(index.size)) + u8(code) + deltas.astype(_DTYPES[code]).tobytes()


@numba.njit(cache=True, nogil=True)
def _delta_decode(
    deltas: npt.NDArray[np.integer], first: int, end: int, out: npt.NDArray[np.int64]
) -> bool:  # pragma: no cover
    """Running sum of ``deltas`` from ``first`` into ``out`` (nothing stored if ``out`` is
    empty: the check alone); False unless it stays in ``[first, end)`` and strictly
    increases (``0 <= first < end`` given).

    u8, u16 and u32 deltas cannot overflow (n < 2^32), so one pass sums and
    tracks the smallest delta, and the last index is checked at the end; u64
    deltas arrive as int64 (2^63 or more is negative and refused) and are
    checked one by one.
    """
    n = deltas.size
    store = out.size == n
    prev = np.int64(first)
    if deltas.itemsize < 8:
        if n == 0:
            return True
        prev += np.int64(deltas[0])
        if store:
            out[0] = prev
        smallest = np.int64(1)
        for i in range(1, n):
            d = np.int64(deltas[i])
            prev += d
            if store:
                out[i] = prev
            smallest = min(smallest, d)
        return bool(smallest >= 1 and prev < end)
    for i in range(n):
        d = np.int64(deltas[i])
        if d < np.int64(i > 0) or d > end - 1 - prev:  # d >= 1 after the first; prev + d < end
            return False
        prev += d
        if store:
            out[i] = prev
    return True


def decode_indices(r: Reader, first: int, end: int) -> npt.NDArray[np.int64]:
    """Read :func:`encode_indices`; :class:`ProtocolError` unless ``first <= index < end``
    and strictly increasing.

    One numba pass sums and checks (:func:`_delta_decode`), reading the
    deltas where they lie in the message. Measured 2026-12-04 (as for
    :func:`encode_indices`): 10.5-11.6 ms for 6.16e6 indices, was 39 ms;
    about 7 ms of it is the fresh pages of the 49 MB result. u64 deltas of
    2^63 or more, which the previous version let wrap into a decreasing
    index, are refused.
    """
    return _read_indices(r, first, end, decode=True).indices()


class CodedIndices:
    """Strictly increasing pulse indices kept as their wire coding (:func:`encode_indices`
    from ``first``), checked, decoded only when asked (``np.asarray``, :meth:`indices`).

    The receiver's fibre frame codes its detections' indices exactly as Bob's
    announcement does, so Bob passes the coding on (:func:`index_coding`)
    instead of decoding ~12 million indices into 96 MB and coding them again.
    """

    __slots__ = ("_array", "coding", "end", "first", "size")

    def __init__(
        self, coding: memoryview, first: int, end: int, size: int,
        array: npt.NDArray[np.int64] | None = None,
    ) -> None:  # fmt: skip
        self.coding = coding
        self.first = first
        self.end = end
        self.size = size
        self._array = array

    def __len__(self) -> int:
        return self.size

    def indices(self) -> npt.NDArray[np.int64]:
        if self._array is None:
            self._array = _read_indices(Reader(self.coding), self.first, self.end, True)._array
        assert self._array is not None
        return self._array

    def __array__(self, dtype: npt.DTypeLike = None, copy: bool | None = None) -> npt.NDArray[Any]:
        a = self.indices()
        return a if dtype is None else a.astype(dtype, copy=False)


def read_indices(r: Reader, first: int, end: int) -> CodedIndices:
    """Check :func:`encode_indices` as :func:`decode_indices` does, without decoding."""
    return _read_indices(r, first, end, decode=False)


def _read_indices(r: Reader, first: int, end: int, decode: bool) -> CodedIndices:
    start = r._off
    n = r.u32()
    code = r.u8()
    index = np.empty(n if decode else 0, dtype=np.int64)
    end = min(end, _INT64_MAX)
    if code == CODE_ESCAPED:
        size = r.u32()
        raw = np.frombuffer(r.take(size), dtype=np.uint8)
        if n > size or not (0 <= first < end and _escaped_decode(raw, first, end, n, index)):
            raise ProtocolError("announced pulse indices outside the block or not increasing")
        return CodedIndices(r._b[start : r._off], first, end, n, index if decode else None)
    if code >= len(_DTYPES):
        raise ProtocolError(f"unknown index coding {code}")
    dt = np.dtype(_DTYPES[code] if code < 3 else "<i8")  # u64 read signed: >= 2^63 is refused
    size = n * dt.itemsize
    if size > len(r._b) - r._off:
        r.take(size)  # raises: message body too short
    if n:
        # the deltas in place in the message (Reader.take would copy them first)
        deltas = np.frombuffer(r._b, dtype=dt, count=n, offset=r._off)
        r._off += size
        if not (0 <= first < end and _delta_decode(deltas, first, end, index)):
            raise ProtocolError("announced pulse indices outside the block or not increasing")
    return CodedIndices(r._b[start : r._off], first, end, n, index if decode else None)


def index_coding(index: npt.NDArray[np.int64] | CodedIndices, first: int) -> Buffer:
    """The announcement's coding of ``index`` from ``first``: coded indices from the same
    ``first`` pass on as they are, arrays are coded (:func:`encode_indices`)."""
    if isinstance(index, CodedIndices) and index.first == first:
        return index.coding
    return encode_indices(np.asarray(index, dtype=np.int64), first)
