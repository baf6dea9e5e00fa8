"""Alice's sifting answer on the wire: a basis and an intensity per detection, two per byte.

Each announced detection gets a 4-bit code ``basis | intensity << 2``: basis
0 (X), 1 (Z) or 3 (no record: :data:`~qkdmeet.qkd.kernels.sifting.UNKNOWN_BASIS`),
intensity 0-2. Code ``i`` sits in the low nibble of byte ``i // 2`` when ``i``
is even, the high one when odd. Half the size of a byte per code: the answer
for a 10^7-bit block is ~7 MB instead of ~14 MB, and both ends copy it a few
times (framing, the socket, the transcript hash).
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from qkdmeet.errors import BlockError
from qkdmeet.qkd.kernels.sifting import UNKNOWN_BASIS

CodeArray = npt.NDArray[np.uint8]

_WIRE_UNKNOWN = 3


class CodeError(BlockError, ValueError):
    """A sifting answer that does not decode (wrong length, a code out of range)."""


@numba.njit(cache=True, nogil=True)
def _pack(basis: CodeArray, intensity: CodeArray, unknown: int) -> CodeArray:  # pragma: no cover
    n = basis.size
    out = np.zeros((n + 1) // 2, dtype=np.uint8)
    for i in range(n):
        b = basis[i]
        c = np.uint8(_WIRE_UNKNOWN if b == unknown else b & 3) | np.uint8(intensity[i] << 2)
        if i & 1:
            out[i >> 1] |= np.uint8(c << 4)
        else:
            out[i >> 1] = c
    return out


@numba.njit(cache=True, nogil=True)
def _unpack(
    raw: CodeArray, n: int, unknown: int
) -> tuple[CodeArray, CodeArray, int]:  # pragma: no cover
    basis = np.empty(n, dtype=np.uint8)
    intensity = np.empty(n, dtype=np.uint8)
    bad = 0
    for i in range(n):
        c = (raw[i >> 1] >> (4 * (i & 1))) & 15
        b = c & 3
        k = c >> 2
        bad += (b == 2) | (k > 2)
        basis[i] = unknown if b == _WIRE_UNKNOWN else b
        intensity[i] = k
    return basis, intensity, bad


def pack_codes(basis: CodeArray, intensity: CodeArray) -> bytes:
    """Alice's answer as bytes (see the module docstring)."""
    if basis.shape != intensity.shape:
        raise CodeError("basis and intensity arrays differ in length")
    return _pack(np.ascontiguousarray(basis, np.uint8), np.ascontiguousarray(intensity, np.uint8),
                 UNKNOWN_BASIS).tobytes()  # fmt: skip


def unpack_codes(raw: bytes, n: int) -> tuple[CodeArray, CodeArray]:
    """Inverse of :func:`pack_codes` for ``n`` detections; :class:`CodeError` if malformed."""
    if len(raw) != (n + 1) // 2:
        raise CodeError(f"sifting answer of {len(raw)} bytes for {n} detections")
    basis, intensity, bad = _unpack(np.frombuffer(raw, np.uint8), n, UNKNOWN_BASIS)
    if bad:
        raise CodeError(f"{bad} codes out of range in the sifting answer")
    if n % 2 and raw[-1] >> 4:
        raise CodeError("padding nibble of the sifting answer is not zero")
    return basis, intensity
