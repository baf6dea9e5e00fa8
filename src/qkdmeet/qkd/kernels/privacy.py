"""Privacy amplification by Toeplitz hashing, and the choice of hash family.

The family: for an input of ``n`` bits and an output of ``l`` bits, a seed of
``n + l - 1`` uniform (public) bits defines the ``l x n`` Toeplitz matrix

    T[i, j] = seed[i - j + n - 1]        (0 <= i < l, 0 <= j < n)

and the hash is ``y = T x`` over GF(2). Toeplitz matrices with a uniform seed
form a 2-universal family, so the leftover hash lemma applies (Lim et al. 2014
use exactly this step with ``l`` from their eq. 1).

``y_i = sum_j seed[i - j + n - 1] x_j`` is entry ``i + n - 1`` of the linear
convolution ``seed * x``; a cyclic convolution of length ``M >= n + l - 1``
gives those entries without wrap-around. It is computed with one real FFT
per operand and one inverse (float64), rounded to integers and reduced mod 2.

Exactness. The integer result is at most ``n``; the FFT's absolute error is
bounded by about ``c * eps * log2(M) * ||seed||_2 * ||x||_2 <= c * eps *
log2(M) * (n + l)`` (eps = 2^-53, c a small constant), i.e. below 1e-5 for
``n + l`` up to 2^28. The kernel does not rely on the bound alone: it measures
the largest distance of any output from an integer and, if it exceeds
:data:`ROUNDING_TOLERANCE`, splits the input in two halves (``T x = T_1 x_1 +
T_2 x_2``) and recurses, so lost precision cannot pass unnoticed.

Throughput (one core of the shared 2-core machine, ``bench.py``) is set by
the FFT, 3 transforms of ``M`` points at 10-17 ns per point: about 12 Mb/s of
output at n = 10^6, 5-6 Mb/s at 10^7 and 4 Mb/s at 10^8 (l = n / 2), short of
the 10 Mb/s goal beyond 10^6 bits because a carry-less product puts one bit
per FFT point. :func:`amplify` therefore also offers the strongly universal
multiply-add-shift family (:mod:`.modular_hash`), an integer product that puts
a byte per point: 5-7 times faster, same security statement.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.fft

from qkdmeet.errors import BlockError
from qkdmeet.qkd.kernels.bits import BitArray, PackedBits, as_bits

#: The 2-universal families offered for privacy amplification (see :func:`amplify`).
FAMILIES = ("toeplitz", "multiply-add-shift")
#: Largest accepted distance of an FFT output from the nearest integer.
ROUNDING_TOLERANCE = 0.25
#: Below this input size the split fallback switches to the direct product.
_DIRECT_BELOW = 64


class PrivacyAmplificationError(BlockError, ValueError):
    """Wrong input or seed length for the requested output length."""


def _check(bits: npt.ArrayLike, seed: npt.ArrayLike, out_len: int) -> tuple[BitArray, BitArray]:
    x = as_bits(bits, "bits")
    s = as_bits(seed, "seed")
    if out_len < 0:
        raise PrivacyAmplificationError(f"output length must be >= 0, got {out_len}")
    if out_len > x.size:
        raise PrivacyAmplificationError(
            f"output length {out_len} exceeds the input length {x.size}: hashing cannot add entropy"
        )
    if x.size and out_len and s.size != x.size + out_len - 1:
        raise PrivacyAmplificationError(
            f"a Toeplitz seed for {x.size} -> {out_len} bits has {x.size + out_len - 1} bits, "
            f"got {s.size}"
        )
    return x, s


def toeplitz_seed_bits(n: int, out_len: int) -> int:
    """Seed length (bits) of the Toeplitz hash from ``n`` to ``out_len`` bits."""
    return n + out_len - 1 if n and out_len else 0


def _direct(x: BitArray, s: BitArray, out_len: int) -> BitArray:
    """y_i = sum_j s[i - j + n - 1] x_j mod 2 by explicit windows (small sizes)."""
    n = x.size
    xr = x[::-1].astype(np.int64)
    y = np.empty(out_len, dtype=np.uint8)
    for i in range(out_len):
        y[i] = int(np.dot(s[i : i + n].astype(np.int64), xr)) & 1
    return y


def _fft_counts(x: BitArray, s: BitArray, out_len: int) -> BitArray:
    n = x.size
    if n <= _DIRECT_BELOW:
        return _direct(x, s, out_len)
    m = scipy.fft.next_fast_len(n + out_len - 1, real=True)
    spec = scipy.fft.rfft(s.astype(np.float64), m)
    spec *= scipy.fft.rfft(x.astype(np.float64), m)
    conv = scipy.fft.irfft(spec, m, overwrite_x=True)
    del spec
    window = conv[n - 1 : n - 1 + out_len]
    rounded = np.rint(window)
    worst = float(np.max(np.abs(window - rounded))) if out_len else 0.0
    if worst > ROUNDING_TOLERANCE:
        # Precision exhausted (never seen at supported sizes): split the columns.
        half = n // 2
        # T[:, :half] has seed window s[n - half : n - half + half + out_len - 1].
        left = _fft_counts(x[:half], s[n - half : n + out_len - 1], out_len)
        right = _fft_counts(x[half:], s[: n - half + out_len - 1], out_len)
        return left ^ right
    out: BitArray = (rounded.astype(np.int64) & 1).astype(np.uint8)
    return out


def toeplitz_hash(bits: npt.ArrayLike, seed: npt.ArrayLike, out_len: int) -> BitArray:
    """Hash ``n`` bits to ``out_len`` bits with the Toeplitz matrix of ``seed`` (FFT, exact).

    ``seed`` holds ``n + out_len - 1`` bits (see the module docstring for the
    matrix layout); every argument is a 0/1 ``uint8`` array.
    """
    x, s = _check(bits, seed, out_len)
    if out_len == 0:
        return np.zeros(0, dtype=np.uint8)
    return _fft_counts(x, s, out_len)


def toeplitz_hash_naive(bits: npt.ArrayLike, seed: npt.ArrayLike, out_len: int) -> BitArray:
    """Reference: build ``T`` explicitly and multiply over GF(2) (small sizes only)."""
    x, s = _check(bits, seed, out_len)
    n = x.size
    if out_len == 0:
        return np.zeros(0, dtype=np.uint8)
    i = np.arange(out_len)[:, None]
    j = np.arange(n)[None, :]
    matrix = s[i - j + n - 1].astype(np.int64)
    out: BitArray = ((matrix @ x.astype(np.int64)) & 1).astype(np.uint8)
    return out


def amplification_seed_bits(family: str, n: int, out_len: int) -> int:
    """Public seed length (bits) of ``family`` for ``n`` -> ``out_len`` bits."""
    if family == "toeplitz":
        return toeplitz_seed_bits(n, out_len)
    if family == "multiply-add-shift":
        from qkdmeet.qkd.kernels.modular_hash import multiply_add_shift_seed_bits

        return multiply_add_shift_seed_bits(n, out_len)
    raise PrivacyAmplificationError(f"unknown hash family {family!r}; choose one of {FAMILIES}")


def amplify(
    bits: npt.ArrayLike, seed: npt.ArrayLike | PackedBits, out_len: int, family: str = "toeplitz"
) -> BitArray:
    """Privacy amplification of ``bits`` to ``out_len`` bits with a 2-universal ``family``.

    ``"toeplitz"`` (:func:`toeplitz_hash`) or ``"multiply-add-shift"``
    (:func:`qkdmeet.qkd.kernels.modular_hash.multiply_add_shift_hash`, strongly
    universal, about 5 times faster at 10^7 bits). Both ends must use the same
    family and seed; the seed length is :func:`amplification_seed_bits`.
    """
    if family == "toeplitz":
        return toeplitz_hash(bits, seed.bits() if isinstance(seed, PackedBits) else seed, out_len)
    if family == "multiply-add-shift":
        from qkdmeet.qkd.kernels.modular_hash import multiply_add_shift_hash

        return multiply_add_shift_hash(bits, seed, out_len)
    raise PrivacyAmplificationError(f"unknown hash family {family!r}; choose one of {FAMILIES}")
