"""Error verification: a short 2-universal hash of the corrected key.

After error correction Alice announces a random seed and her tag; Bob
computes his tag of his corrected key with the same seed; the block is kept
only if the tags agree. With a 2-universal family of ``t``-bit outputs, two
different keys collide with probability at most ``2^-t``, so
``t = ceil(log2(1 / eps_cor))`` bits make the protocol ``eps_cor``-correct
(Lim et al. 2014). The ``t`` tag bits are public and the key length formula
charges them (its ``log2(2 / eps_cor)`` term).

The family is Toeplitz again, in the row form that suits word-level
computation: tag bit ``i`` is the GF(2) inner product of the key with the
seed window ``seed[i : i + n]``,

    tag_i = XOR_j seed[i + j] & key[j],   0 <= i < t,

a Toeplitz matrix applied to the bit-reversed key, hence 2-universal
(``Pr[tag(x) = tag(x')] = 2^-t`` for ``x != x'`` over a uniform seed of
``n + t - 1`` bits). Each tag bit costs ``n / 64`` word operations, so the
whole tag of 50 bits runs at about 3 Gb/s (10^7-bit keys, one core).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import numpy.typing as npt

from qkdmeet.errors import BlockError
from qkdmeet.qkd.kernels.bits import (
    BitArray,
    PackedBits,
    WordArray,
    as_bits,
    pack_bits,
    pack_words,
)


class VerificationError(BlockError, ValueError):
    """Wrong seed length or tag length."""


def verification_tag_bits(eps_cor: float) -> int:
    """ceil(log2(1/eps_cor)): tag length that makes the verification eps_cor-correct."""
    if not 0.0 < eps_cor < 1.0:
        raise VerificationError(f"eps_cor must be in (0, 1), got {eps_cor}")
    return math.ceil(math.log2(1.0 / eps_cor))


def verification_seed_bits(n: int, tag_bits: int) -> int:
    """Seed length (bits) for an ``n``-bit key and a ``tag_bits``-bit tag."""
    return n + tag_bits - 1


@numba.njit(cache=True, nogil=True)
def _parity64(w: np.uint64) -> np.uint64:  # pragma: no cover
    w ^= w >> np.uint64(32)
    w ^= w >> np.uint64(16)
    w ^= w >> np.uint64(8)
    w ^= w >> np.uint64(4)
    w ^= w >> np.uint64(2)
    w ^= w >> np.uint64(1)
    return w & np.uint64(1)


@numba.njit(cache=True, nogil=True)
def _window_tags(key: WordArray, seed: WordArray, tag_bits: int) -> BitArray:  # pragma: no cover
    """tag_i = parity(key & seed[i : i + n]); ``seed`` has at least one spare word."""
    out = np.zeros(tag_bits, dtype=np.uint8)
    nk = key.size
    for i in range(tag_bits):
        base = i >> 6
        shift = np.uint64(i & 63)
        acc = np.uint64(0)
        if shift == 0:
            for k in range(nk):
                acc ^= key[k] & seed[base + k]
        else:
            back = np.uint64(64) - shift
            for k in range(nk):
                window = (seed[base + k] >> shift) | (seed[base + k + 1] << back)
                acc ^= key[k] & window
        out[i] = np.uint8(_parity64(acc))
    return out


def verification_tag_array(
    bits: npt.ArrayLike, seed: npt.ArrayLike | PackedBits, tag_bits: int
) -> BitArray:
    """The tag as ``tag_bits`` 0/1 values (see :func:`verification_tag`)."""
    x = as_bits(bits, "bits")
    s = seed if isinstance(seed, PackedBits) else as_bits(seed, "seed")
    if tag_bits <= 0:
        raise VerificationError(f"tag_bits must be positive, got {tag_bits}")
    if x.size == 0:
        raise VerificationError("cannot verify an empty key")
    need = verification_seed_bits(x.size, tag_bits)
    if s.size != need:
        raise VerificationError(
            f"verification of {x.size} bits with a {tag_bits}-bit tag needs a {need}-bit seed, "
            f"got {s.size}"
        )
    key_words = pack_words(x)
    seed_words = s.words(2) if isinstance(s, PackedBits) else pack_words(s, extra_words=2)
    return _window_tags(key_words, seed_words, tag_bits)


def verification_tag(
    bits: npt.ArrayLike, seed: npt.ArrayLike | PackedBits, tag_bits: int
) -> bytes:
    """Tag of ``bits`` (0/1 array) under the public ``seed`` (``n + tag_bits - 1`` bits).

    Returned packed, most significant bit first, ``ceil(tag_bits / 8)`` bytes.
    """
    return pack_bits(verification_tag_array(bits, seed, tag_bits))


def verification_tag_naive(bits: npt.ArrayLike, seed: npt.ArrayLike, tag_bits: int) -> bytes:
    """Reference: the same inner products with plain numpy (small sizes)."""
    x = as_bits(bits, "bits").astype(np.int64)
    s = as_bits(seed, "seed").astype(np.int64)
    if s.size != verification_seed_bits(x.size, tag_bits):
        raise VerificationError("seed length does not match")
    tag = np.array([int(np.dot(s[i : i + x.size], x)) & 1 for i in range(tag_bits)], np.uint8)
    return pack_bits(tag)
