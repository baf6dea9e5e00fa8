"""Sifting: basis and intensity announcement, split into the X (key) and Z (estimation) sets.

The exchange (efficient decoy-state BB84, Lim et al. 2014):

1. Bob announces every detection: its pulse index and his basis
   (:func:`bob_announcement`).
2. Alice looks each announced pulse up in her records and answers with her
   basis and intensity for it (:func:`alice_sift`, ``reply_basis`` and
   ``reply_intensity``); a pulse she has no record of gets
   :data:`UNKNOWN_BASIS` and is dropped and counted (``unmatched``).
3. Bob applies the answer (:func:`bob_sift`). Both ends now hold the same
   index sets: detections where the bases agree, X basis (key, all
   intensities) and Z basis (phase-error estimation), with per-intensity
   counts n_{X,k} and n_{Z,k}.

Basis codes: :data:`BASIS_X` = 0 (key basis), :data:`BASIS_Z` = 1. Intensity
codes are small integers 0, 1, 2 (mu1, mu2, mu3). Pulse indices must be
sorted ascending at both ends (the simulator emits them in time order); the
look-up is a linear merge, so sifting costs O(n) with no hashing.

Event objects are read by attribute (``pulse_index``, ``basis``, ``bit``,
``intensity`` for Alice; ``pulse_index``, ``basis``, ``bit`` for Bob), so the
model's ``AliceEvents``/``BobEvents`` and plain test objects both fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numba
import numpy as np
import numpy.typing as npt

from qkdmeet.qkd.kernels.bits import BitArray

BASIS_X = 0
BASIS_Z = 1
#: Alice's reply for an announced pulse she has no record of.
UNKNOWN_BASIS = 255
#: Number of intensity classes of the decoy-state protocol (mu1, mu2, mu3).
DEFAULT_INTENSITIES = 3

IndexArray = npt.NDArray[np.int64]
CodeArray = npt.NDArray[np.uint8]


class SiftingError(ValueError):
    """Inconsistent sifting input (arrays of different lengths, unsorted indices)."""


class AliceEventsLike(Protocol):
    pulse_index: npt.NDArray[np.int64]
    bit: npt.NDArray[np.uint8]
    basis: npt.NDArray[np.uint8]
    intensity: npt.NDArray[np.uint8]


class BobEventsLike(Protocol):
    pulse_index: npt.NDArray[np.int64]
    basis: npt.NDArray[np.uint8]
    bit: npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class SiftResult:
    """One end's view of a sifted block.

    ``reply_basis``/``reply_intensity`` are Alice's answer, one entry per
    announced detection (Alice sends them; Bob received them). ``x_index`` and
    ``z_index`` are positions in the announcement (same at both ends);
    ``x_bits``/``z_bits`` this end's bits there; ``x_intensity``/``z_intensity``
    the intensity class of each; ``n_x``/``n_z`` the counts per intensity.
    """

    reply_basis: CodeArray
    reply_intensity: CodeArray
    x_index: IndexArray
    z_index: IndexArray
    x_bits: BitArray
    z_bits: BitArray
    x_intensity: CodeArray
    z_intensity: CodeArray
    n_x: IndexArray
    n_z: IndexArray
    announced: int
    unmatched: int

    @property
    def sifted(self) -> int:
        """Detections with matching bases (X and Z together)."""
        return int(self.x_index.size + self.z_index.size)


@numba.njit(cache=True, nogil=True)
def _strictly_increasing(a: IndexArray) -> bool:  # pragma: no cover
    ok = True
    for i in range(1, a.size):
        if a[i] <= a[i - 1]:
            ok = False
            break
    return ok


@numba.njit(cache=True, nogil=True)
def _merge_lookup(haystack: IndexArray, needles: IndexArray) -> IndexArray:  # pragma: no cover
    """Position of each needle in ``haystack`` (-1 if absent); both sorted ascending."""
    out = np.empty(needles.size, dtype=np.int64)
    j = 0
    nh = haystack.size
    for i in range(needles.size):
        v = needles[i]
        if j < nh and haystack[j] == v:  # the usual case: Alice holds every detected pulse
            out[i] = j
            j += 1
            continue
        while j < nh and haystack[j] < v:
            j += 1
        if j < nh and haystack[j] == v:
            out[i] = j
        else:
            out[i] = -1
    return out


@numba.njit(cache=True, nogil=True)
def _alice_reply(
    pos: IndexArray, a_basis: CodeArray, a_int: CodeArray, a_bit: BitArray
) -> tuple[CodeArray, CodeArray, BitArray, int]:  # pragma: no cover
    """Alice's basis and intensity for each announced detection (UNKNOWN where pos < 0)."""
    n = pos.size
    basis = np.empty(n, dtype=np.uint8)
    inten = np.zeros(n, dtype=np.uint8)
    bits = np.zeros(n, dtype=np.uint8)
    unknown = 0
    for i in range(n):
        p = pos[i]
        if p < 0:
            basis[i] = UNKNOWN_BASIS
            unknown += 1
        else:
            basis[i] = a_basis[p]
            inten[i] = a_int[p]
            bits[i] = a_bit[p]
    return basis, inten, bits, unknown


@numba.njit(cache=True, nogil=True)
def _split(
    own_basis: CodeArray, other_basis: CodeArray, bits: BitArray, inten: CodeArray, n_int: int
) -> tuple[
    IndexArray, IndexArray, BitArray, BitArray, CodeArray, CodeArray, IndexArray, IndexArray, int
]:  # pragma: no cover
    """One pass: X and Z sets (matching bases) with bits, intensities and counts."""
    n = own_basis.size
    nx = 0
    nz = 0
    for i in range(n):
        b = own_basis[i]
        m = b == other_basis[i]
        nx += m & (b == BASIS_X)
        nz += m & (b == BASIS_Z)
    # branch-free compaction: write every entry, advance only on a match (one spare slot)
    x_index = np.empty(nx + 1, dtype=np.int64)
    z_index = np.empty(nz + 1, dtype=np.int64)
    x_bits = np.empty(nx + 1, dtype=np.uint8)
    z_bits = np.empty(nz + 1, dtype=np.uint8)
    x_int = np.empty(nx + 1, dtype=np.uint8)
    z_int = np.empty(nz + 1, dtype=np.uint8)
    n_x = np.zeros(n_int, dtype=np.int64)
    n_z = np.zeros(n_int, dtype=np.int64)
    bad = np.int64(0)
    jx = np.int64(0)
    jz = np.int64(0)
    for i in range(n):
        b = own_basis[i]
        m = b == other_basis[i]
        isx = np.int64(m & (b == BASIS_X))
        isz = np.int64(m & (b == BASIS_Z))
        k = inten[i]
        if k >= n_int:
            bad += isx + isz
            k = np.uint8(0)
        bit = bits[i]
        x_index[jx] = i
        x_bits[jx] = bit
        x_int[jx] = k
        z_index[jz] = i
        z_bits[jz] = bit
        z_int[jz] = k
        jx += isx
        jz += isz
    x_index = x_index[:nx]
    z_index = z_index[:nz]
    x_bits = x_bits[:nx]
    z_bits = z_bits[:nz]
    x_int = x_int[:nx]
    z_int = z_int[:nz]
    for i in range(nx):  # separate loops: a histogram update per element stalls the one above
        n_x[x_int[i]] += 1
    for i in range(nz):
        n_z[z_int[i]] += 1
    return x_index, z_index, x_bits, z_bits, x_int, z_int, n_x, n_z, int(bad)


def _result(
    own_basis: CodeArray,
    other_basis: CodeArray,
    bits: BitArray,
    reply_basis: CodeArray,
    reply_intensity: CodeArray,
    n_intensities: int,
    unmatched: int,
) -> SiftResult:
    if not 1 <= n_intensities <= 255:
        raise SiftingError(f"n_intensities must be in 1..255, got {n_intensities}")
    x_index, z_index, x_bits, z_bits, x_int, z_int, n_x, n_z, bad = _split(
        own_basis, other_basis, bits, reply_intensity, n_intensities
    )
    if bad:
        raise SiftingError(f"{bad} intensity codes out of range 0..{n_intensities - 1}")
    return SiftResult(
        reply_basis=reply_basis,
        reply_intensity=reply_intensity,
        x_index=x_index,
        z_index=z_index,
        x_bits=x_bits,
        z_bits=z_bits,
        x_intensity=x_int,
        z_intensity=z_int,
        n_x=n_x,
        n_z=n_z,
        announced=int(own_basis.size),
        unmatched=unmatched,
    )


def bob_announcement(bob_events: BobEventsLike) -> tuple[IndexArray, CodeArray]:
    """Bob's public announcement: the pulse index and his basis of every detection."""
    pulse = np.ascontiguousarray(bob_events.pulse_index, dtype=np.int64)
    basis = np.ascontiguousarray(bob_events.basis, dtype=np.uint8)
    if pulse.size != basis.size:
        raise SiftingError("Bob's pulse_index and basis differ in length")
    if not _strictly_increasing(pulse):
        raise SiftingError("Bob's pulse indices must be strictly increasing")
    return pulse, basis


def alice_sift(
    alice_events: AliceEventsLike,
    bob_pulse_index: npt.ArrayLike,
    bob_basis: npt.ArrayLike,
    n_intensities: int = DEFAULT_INTENSITIES,
) -> SiftResult:
    """Alice's half: answer Bob's announcement and keep her matching-basis bits.

    Announced pulses absent from her records, out of order or duplicated are
    answered with :data:`UNKNOWN_BASIS` and counted in ``unmatched``.
    """
    a_pulse = np.ascontiguousarray(alice_events.pulse_index, dtype=np.int64)
    a_basis = np.ascontiguousarray(alice_events.basis, dtype=np.uint8)
    a_bit = np.ascontiguousarray(alice_events.bit, dtype=np.uint8)
    a_int = np.ascontiguousarray(alice_events.intensity, dtype=np.uint8)
    if not (a_pulse.size == a_basis.size == a_bit.size == a_int.size):
        raise SiftingError("Alice's event arrays differ in length")
    if not _strictly_increasing(a_pulse):
        raise SiftingError("Alice's pulse indices must be strictly increasing")
    b_pulse = np.ascontiguousarray(bob_pulse_index, dtype=np.int64)
    b_basis = np.ascontiguousarray(bob_basis, dtype=np.uint8)
    if b_pulse.ndim != 1 or b_pulse.shape != b_basis.shape:
        raise SiftingError("Bob's announcement: pulse_index and basis must be 1-D, same length")
    if _strictly_increasing(b_pulse):
        pos = _merge_lookup(a_pulse, b_pulse)
    else:  # untrusted order: look up each, refuse repeats
        pos = np.searchsorted(a_pulse, b_pulse)
        pos[pos >= a_pulse.size] = 0
        found = a_pulse[pos] == b_pulse if a_pulse.size else np.zeros(b_pulse.size, bool)
        pos = np.where(found, pos, -1)
        _, first = np.unique(b_pulse, return_index=True)
        dup = np.ones(b_pulse.size, dtype=bool)
        dup[first] = False
        pos[dup] = -1
    reply_basis, reply_int, bits, unmatched = _alice_reply(pos, a_basis, a_int, a_bit)
    return _result(reply_basis, b_basis, bits, reply_basis, reply_int, n_intensities, unmatched)


def bob_sift(
    bob_events: BobEventsLike,
    alice_basis: npt.ArrayLike,
    alice_intensity: npt.ArrayLike,
    n_intensities: int = DEFAULT_INTENSITIES,
) -> SiftResult:
    """Bob's half: apply Alice's answer to his announced detections."""
    b_basis = np.ascontiguousarray(bob_events.basis, dtype=np.uint8)
    b_bit = np.ascontiguousarray(bob_events.bit, dtype=np.uint8)
    a_basis = np.ascontiguousarray(alice_basis, dtype=np.uint8)
    a_int = np.ascontiguousarray(alice_intensity, dtype=np.uint8)
    if not (b_basis.size == b_bit.size == a_basis.size == a_int.size):
        raise SiftingError(
            f"Alice's reply has {a_basis.size} bases and {a_int.size} intensities "
            f"for {b_basis.size} announced detections"
        )
    unmatched = int(np.count_nonzero(a_basis == UNKNOWN_BASIS))
    return _result(b_basis, a_basis, b_bit, a_basis, a_int, n_intensities, unmatched)


def z_errors_per_intensity(
    own_z_bits: npt.ArrayLike,
    other_z_bits: npt.ArrayLike,
    z_intensity: npt.ArrayLike,
    n_intensities: int = DEFAULT_INTENSITIES,
) -> IndexArray:
    """m_{Z,k}: disagreeing Z-basis bits per intensity (after the Z bits are disclosed)."""
    a = np.asarray(own_z_bits, dtype=np.uint8)
    b = np.asarray(other_z_bits, dtype=np.uint8)
    k = np.asarray(z_intensity, dtype=np.int64)
    if not (a.shape == b.shape == k.shape):
        raise SiftingError("Z bits and intensities differ in length")
    return np.bincount(k[a != b], minlength=n_intensities).astype(np.int64)
