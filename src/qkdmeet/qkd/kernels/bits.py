"""Bit arrays and the binary entropy.

Every kernel of the post-processing takes bits as a one-dimensional ``uint8``
array holding 0 or 1 per bit (easy to index, permute and compare). Where bits
travel over the classical channel or go into word-level kernels they are
packed:

- :func:`pack_bits` / :func:`unpack_bits`: bytes, first bit in the most
  significant bit of the first byte (network order, ``numpy.packbits``
  default). This is the layout of key bytes handed to the key sink.
- :class:`PackedBits`: a long public seed kept in :func:`pack_bits`'s layout
  from the generator to the kernels (verification and privacy-amplification
  seeds are 10^7-3 10^7 bits a block: unpacked they were packed and unpacked
  four times between Alice's generator and the two ends' kernels).
- :func:`pack_words`: ``uint64`` words, bit ``i`` of the array in bit
  ``i % 64`` of word ``i // 64`` (little-endian bit order), zero padded. The
  layout of the word-level kernels (verification, Cascade parities) and of
  the parity bits in Cascade replies (:func:`pack_bits_le`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from qkdmeet.errors import QkdError

BitArray = npt.NDArray[np.uint8]
WordArray = npt.NDArray[np.uint64]


class BitsError(QkdError, ValueError):
    """An array that should hold bits does not."""


def as_bits(bits: npt.ArrayLike, name: str = "bits") -> BitArray:
    """Return ``bits`` as a contiguous 1-D ``uint8`` array of 0/1, or raise :class:`BitsError`.

    Accepts any integer or boolean array-like; refuses other shapes and values so
    that a caller passing bytes or a packed array finds out at once.
    """
    arr = np.asarray(bits)
    if arr.ndim != 1:
        raise BitsError(f"{name} must be a 1-D array of 0/1 values, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return np.ascontiguousarray(arr, dtype=np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise BitsError(f"{name} must hold integers 0/1, got dtype {arr.dtype}")
    out = np.ascontiguousarray(arr, dtype=np.uint8)
    negative = np.issubdtype(arr.dtype, np.signedinteger) and arr.size and arr.min() < 0
    if out.size and (out.max() > 1 or negative):
        raise BitsError(f"{name} must hold only 0 and 1 (unpacked bits); use unpack_bits() first")
    return out


#: Each byte with its bits in reverse order (MSB-first packing <-> LSB-first).
_REVERSED = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class PackedBits:
    """``nbits`` bits packed as :func:`pack_bits` packs them (padding bits zero)."""

    nbits: int
    data: bytes

    def __post_init__(self) -> None:
        if self.nbits < 0 or len(self.data) != (self.nbits + 7) // 8:
            raise BitsError(f"{len(self.data)} bytes cannot hold exactly {self.nbits} packed bits")
        if self.nbits % 8 and self.data[-1] & (0xFF >> (self.nbits % 8)):
            raise BitsError("the padding bits of a packed bit string must be zero")

    @classmethod
    def from_bytes(cls, data: bytes | memoryview, nbits: int) -> PackedBits:
        """The first ``nbits`` bits of ``data`` (MSB first); the padding is cleared."""
        raw = bytearray(data[: (nbits + 7) // 8])
        if len(raw) * 8 < nbits:
            raise BitsError(f"cannot take {nbits} bits from {len(data)} bytes")
        if nbits % 8:
            raw[-1] &= (0xFF00 >> (nbits % 8)) & 0xFF
        return cls(nbits, bytes(raw))

    @property
    def size(self) -> int:
        return self.nbits

    def bits(self) -> BitArray:
        return unpack_bits(self.data, self.nbits)

    def little(self) -> npt.NDArray[np.uint8]:
        """The same bits packed LSB first (``np.packbits(..., bitorder="little")``)."""
        return _REVERSED[np.frombuffer(self.data, dtype=np.uint8)]

    def words(self, extra_words: int = 0) -> WordArray:
        """:func:`pack_words` of the bits."""
        nwords = (self.nbits + 63) // 64 + extra_words
        buf = np.zeros(nwords * 8, dtype=np.uint8)
        buf[: len(self.data)] = self.little()
        return buf.view("<u8").astype(np.uint64, copy=False)


def pack_bits(bits: npt.ArrayLike) -> bytes:
    """Pack bits into bytes, most significant bit first; the last byte is zero padded."""
    return np.packbits(as_bits(bits)).tobytes()


def unpack_bits(data: bytes, nbits: int | None = None) -> BitArray:
    """Unpack bytes written by :func:`pack_bits`; ``nbits`` drops the padding."""
    out = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if nbits is not None:
        if nbits < 0 or nbits > out.size:
            raise BitsError(f"cannot take {nbits} bits from {len(data)} bytes")
        out = out[:nbits]
    return np.ascontiguousarray(out)


def pack_bits_le(bits: npt.ArrayLike) -> bytes:
    """Pack bits into bytes, least significant bit first (the layout of :func:`pack_words`)."""
    return np.packbits(as_bits(bits), bitorder="little").tobytes()


def unpack_bits_le(data: bytes, nbits: int) -> BitArray:
    """Unpack ``nbits`` bits written by :func:`pack_bits_le`."""
    if nbits < 0 or (nbits + 7) // 8 > len(data):
        raise BitsError(f"cannot take {nbits} bits from {len(data)} bytes")
    raw = np.frombuffer(data, dtype=np.uint8, count=(nbits + 7) // 8)
    return np.ascontiguousarray(np.unpackbits(raw, bitorder="little")[:nbits])


def pack_words(bits: npt.ArrayLike, extra_words: int = 0) -> WordArray:
    """Pack bits into little-endian ``uint64`` words (bit i in word i // 64, bit i % 64).

    ``extra_words`` zero words are appended (kernels that read one word past a
    window use them).
    """
    b = as_bits(bits)
    nwords = (b.size + 63) // 64 + extra_words
    buf = np.zeros(nwords * 8, dtype=np.uint8)
    packed = np.packbits(b, bitorder="little")
    buf[: packed.size] = packed
    return buf.view("<u8").astype(np.uint64, copy=False)


def unpack_words(words: WordArray, nbits: int) -> BitArray:
    """Inverse of :func:`pack_words`: the first ``nbits`` bits."""
    raw = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    if nbits > raw.size * 8:
        raise BitsError(f"cannot take {nbits} bits from {words.size} words")
    return np.ascontiguousarray(np.unpackbits(raw, bitorder="little")[:nbits])


def binary_entropy(p: float) -> float:
    """h(p) = -p log2 p - (1-p) log2(1-p), with h(0) = h(1) = 0; p is clipped to [0, 1]."""
    p = min(max(float(p), 0.0), 1.0)
    if p in (0.0, 1.0):
        return 0.0
    return float(-p * np.log2(p) - (1.0 - p) * np.log2(1.0 - p))


def binary_entropy_array(p: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Element-wise :func:`binary_entropy` of an array."""
    q = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    out = np.zeros_like(q)
    inner = (q > 0.0) & (q < 1.0)
    qi = q[inner]
    out[inner] = -qi * np.log2(qi) - (1.0 - qi) * np.log2(1.0 - qi)
    return out
