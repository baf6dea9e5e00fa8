"""The per-packet one-time pad and Wegman-Carter tag of DATA packets, in one kernel call.

The wire format and key layout are those of :mod:`qkdmeet.vpn.wire`: a
packet at ``offset`` of a key uses ``key[offset:offset+32]`` as the tag mask
(s1 || s2) and ``key[offset+32:offset+32+n]`` as the pad; the tag is
``Poly1305(r1 || s1, header || body) || Poly1305(r2 || s2, header || body)``
with the key's hash key ``r1 || r2`` (its first 32 bytes). This is exactly
what :class:`qkdmeet.crypto.wegman_carter.WegmanCarterMac` and
:func:`qkdmeet.vpn.otp.xor` compute (the tests compare them byte for byte);
doing it in one numba call instead of two Poly1305 set-ups in OpenSSL (8.6
µs for a 1,432-byte message) and a big-integer XOR (4.8 µs) took the whole
encrypt path of ``qkdmeet bench vpn`` from 16.5 to 12.3 µs per 1,400-byte
packet (680 -> 913 Mb/s on one core).

The header arrives packed (:func:`qkdmeet.vpn.wire.header`): these kernels
never read or write its fields. :func:`tag_into` and :func:`tag_ok` are the
tag construction itself, inlined into the batched kernels of
:mod:`qkdmeet.vpn.pump` too, so it is written once.

Every kernel zeroes the key bytes it consumed before it returns, so no copy
of a used pad or mask outlives the packet.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from qkdmeet.crypto.poly1305 import poly1305_into
from qkdmeet.vpn.constants import HEADER_BYTES, KEY_MASK_BYTES, OVERHEAD_BYTES, TAG_LEN

Bytes = npt.NDArray[np.uint8]

#: Bytes of one Poly1305 output, and of each half of the hash key pair and the mask.
_HALF = TAG_LEN // 2


@numba.njit(cache=True, nogil=True, inline="always")
def tag_into(msg: Bytes, end: int, r: Bytes, key: Bytes, off: int, out: Bytes, at: int) -> None:
    """Write the tag of ``msg[:end]`` (header || body) at ``out[at:at+32]``: two Poly1305
    hashes with the key's hash key pair ``r`` and the mask ``key[off:off+32]``."""
    poly1305_into(msg, 0, end, r, 0, key, off, out, at)
    poly1305_into(msg, 0, end, r, _HALF, key, off + _HALF, out, at + _HALF)


@numba.njit(cache=True, nogil=True, inline="always")
def tag_ok(msg: Bytes, end: int, r: Bytes, key: Bytes, off: int, scratch: Bytes) -> bool:
    """Whether ``msg[end:end+32]`` is the tag of ``msg[:end]`` (constant time: no early
    exit); ``scratch`` holds 32 bytes. Uses no key."""
    tag_into(msg, end, r, key, off, scratch, 0)
    diff = 0
    for i in range(TAG_LEN):
        diff |= scratch[i] ^ msg[end + i]
    return diff == 0


@numba.njit(cache=True, nogil=True)
def _seal(out: Bytes, packet: Bytes, key: Bytes, off: int, r: Bytes) -> None:
    n = packet.size
    pad0 = off + KEY_MASK_BYTES
    for i in range(n):
        out[HEADER_BYTES + i] = packet[i] ^ key[pad0 + i]
    tag_into(out, HEADER_BYTES + n, r, key, off, out, HEADER_BYTES + n)
    for i in range(off, pad0 + n):
        key[i] = 0


@numba.njit(cache=True, nogil=True)
def _verify(datagram: Bytes, n: int, key: Bytes, off: int, r: Bytes) -> bool:
    return tag_ok(datagram, HEADER_BYTES + n, r, key, off, np.empty(TAG_LEN, np.uint8))


@numba.njit(cache=True, nogil=True)
def _open(out: Bytes, datagram: Bytes, n: int, key: Bytes, off: int) -> None:
    pad0 = off + KEY_MASK_BYTES
    for i in range(n):
        out[i] = datagram[HEADER_BYTES + i] ^ key[pad0 + i]
    for i in range(off, pad0 + n):
        key[i] = 0


def seal(header: bytes, packet: bytes | bytearray | memoryview, key: Bytes, off: int,
         r: Bytes) -> bytes:
    """The outgoing datagram ``header || packet XOR pad || tag``; zeroes the key bytes used.

    ``key`` is the key's bytes as a writable uint8 array, ``r`` its hash key
    (32 bytes), ``off`` this packet's offset; the caller has checked that
    ``off + 32 + len(packet) <= len(key)``.
    """
    n = len(packet)
    out = bytearray(OVERHEAD_BYTES + n)
    out[:HEADER_BYTES] = header
    _seal(np.frombuffer(out, np.uint8), np.frombuffer(packet, np.uint8), key, off, r)
    return bytes(out)


def verify(datagram: bytes, n: int, key: Bytes, off: int, r: Bytes) -> bool:
    """Whether the tag of a DATA datagram (body of ``n`` bytes) is right; uses no key."""
    return bool(_verify(np.frombuffer(datagram, np.uint8), n, key, off, r))


def open_body(datagram: bytes, n: int, key: Bytes, off: int) -> bytes:
    """The inner packet of a verified DATA datagram; zeroes the key bytes it used."""
    out = bytearray(n)
    _open(np.frombuffer(out, np.uint8), np.frombuffer(datagram, np.uint8), n, key, off)
    return bytes(out)


def warm_up() -> None:
    """Load (or compile) the three kernels now, for the argument types the gateway
    passes (the hash key and inner packets are read-only arrays: another type is
    another compile): their first call otherwise costs 8 ms of a gateway's first
    key switch on the batched path (measured), or seconds without a cache."""
    key, r = np.zeros(128, np.uint8), np.frombuffer(bytes(32), np.uint8)
    datagram = seal(bytes(HEADER_BYTES), bytes(16), key, 32, r)
    verify(datagram, 16, key, 32, r)
    open_body(datagram, 16, key, 32)
