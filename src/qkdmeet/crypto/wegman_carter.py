"""Wegman-Carter message authentication with QKD key.

The tag of a message ``m`` is ``h_r1(m) + s1 || h_r2(m) + s2`` where ``h_r`` is
the Poly1305 polynomial hash with (clamped) evaluation point ``r`` and
``+`` is addition mod 2^128 (exactly what ``Poly1305(r || s)`` computes).
Poly1305's hash is epsilon-almost-Delta-universal with
``epsilon = 8 * ceil(L / 16) / 2^106`` for messages of ``L`` bytes
(Bernstein, "The Poly1305-AES message-authentication code", 2005). With the
masks ``s1, s2`` fresh uniform key for every message, the tag reveals nothing
about ``r1, r2``; the hash keys may therefore be kept for many messages and
every forgery attempt succeeds with probability at most ``epsilon^2`` (the two
evaluation points are independent). For a 1,500-byte packet that is 2^-193;
for a 100 MB classical-channel message 2^-159.

Long messages built up piece by piece (a QKD block's transcript) are hashed
incrementally (:meth:`WegmanCarterMac.stream`): ``Poly1305(r || 0)`` gives
``h_r(m) mod 2^128`` and the mask is added at the end
(:meth:`MacStream.tag`), which is the same tag as hashing the whole message
at once with ``Poly1305(r || s)``; the mask need not be known until then.

Key cost: :data:`MASK_BYTES` of fresh key per message, plus
:data:`HASH_KEY_BYTES` whenever the hash keys are renewed. The caller supplies
both and accounts for them; this module never draws randomness of its own.
"""

from __future__ import annotations

import hmac
import math

from cryptography.hazmat.primitives.poly1305 import Poly1305

#: Bytes of the two Poly1305 evaluation points (r1 || r2).
HASH_KEY_BYTES = 32
#: Bytes of fresh key that mask one tag (s1 || s2).
MASK_BYTES = 32
#: Bytes of one tag.
TAG_BYTES = 32


def forgery_bound_log2(message_bytes: int) -> float:
    """log2 of the probability that one forgery attempt on a message of this size succeeds."""
    blocks = max(1, math.ceil(message_bytes / 16))
    return 2 * (math.log2(8 * blocks) - 106)


_ZERO16 = bytes(16)
_MOD128 = 1 << 128


def _add_mask(hashed: bytes, mask: bytes) -> bytes:
    """``hashed + mask`` mod 2^128, both 16 bytes little-endian (Poly1305's final step)."""
    total = int.from_bytes(hashed, "little") + int.from_bytes(mask, "little")
    return (total % _MOD128).to_bytes(16, "little")


class MacStream:
    """An incremental Wegman-Carter tag: ``update`` pieces, then ``tag`` with a fresh mask.

    The tag equals :meth:`WegmanCarterMac.tag` of the concatenated pieces.
    One use only: :meth:`tag` finalises.
    """

    __slots__ = ("_p1", "_p2", "bytes_hashed")

    def __init__(self, r1: bytes, r2: bytes) -> None:
        self._p1 = Poly1305(r1 + _ZERO16)
        self._p2 = Poly1305(r2 + _ZERO16)
        self.bytes_hashed = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._p1.update(data)
        self._p2.update(data)
        self.bytes_hashed += len(data)

    def tag(self, mask: bytes) -> bytes:
        if len(mask) != MASK_BYTES:
            raise ValueError(f"mask must be {MASK_BYTES} bytes, got {len(mask)}")
        return _add_mask(self._p1.finalize(), mask[:16]) + _add_mask(self._p2.finalize(), mask[16:])

    def verify(self, mask: bytes, tag: bytes) -> bool:
        """Whether ``tag`` is this stream's tag under ``mask`` (constant time)."""
        if len(tag) != TAG_BYTES:
            return False
        return hmac.compare_digest(self.tag(mask), tag)


class WegmanCarterMac:
    """Tags and verifies messages under fixed hash keys and per-message masks."""

    __slots__ = ("_r1", "_r2")

    def __init__(self, hash_key: bytes) -> None:
        if len(hash_key) != HASH_KEY_BYTES:
            raise ValueError(f"hash key must be {HASH_KEY_BYTES} bytes, got {len(hash_key)}")
        self._r1 = bytes(hash_key[:16])
        self._r2 = bytes(hash_key[16:])

    def tag(self, message: bytes | bytearray | memoryview, mask: bytes) -> bytes:
        """The tag of ``message`` under a fresh ``mask`` of :data:`MASK_BYTES` bytes."""
        if len(mask) != MASK_BYTES:
            raise ValueError(f"mask must be {MASK_BYTES} bytes, got {len(mask)}")
        t1 = Poly1305.generate_tag(self._r1 + bytes(mask[:16]), message)
        t2 = Poly1305.generate_tag(self._r2 + bytes(mask[16:]), message)
        return t1 + t2

    def stream(self) -> MacStream:
        """An incremental tag under these hash keys (see :class:`MacStream`)."""
        return MacStream(self._r1, self._r2)

    def verify(self, message: bytes | bytearray | memoryview, mask: bytes, tag: bytes) -> bool:
        """Whether ``tag`` is the tag of ``message`` under ``mask`` (constant time)."""
        if len(tag) != TAG_BYTES:
            return False
        return hmac.compare_digest(self.tag(message, mask), tag)
