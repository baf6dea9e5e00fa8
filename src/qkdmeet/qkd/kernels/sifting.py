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
def _merge_lookup(haystack: IndexArray, needles: IndexArray) -> IndexArray:  # pragma: no cover
    """Position of each needle in ``haystack`` (-1 if absent); both sorted ascending."""
    out = np.empty(needles.size, dtype=np.int64)
    j = 0
    nh = haystack.size
    for i in range(needles.size):
        v = needles[i]
        while j < nh and haystack[j] < v:
            j += 1
        if j < nh and haystack[j] == v:
            out[i] = j
        else:
            out[i] = -1
    return out


@numba.njit(cache=True, nogil=True)
def _classify(own_basis: CodeArray, other_basis: CodeArray) -> CodeArray:  # pragma: no cover
    """0: discarded, 1: X set, 2: Z set (bases equal and known)."""
    out = np.zeros(own_basis.size, dtype=np.uint8)
    for i in range(own_basis.size):
        b = own_basis[i]
        if b == other_basis[i]:
            if b == BASIS_X:
                out[i] = 1
            elif b == BASIS_Z:
                out[i] = 2
    return out


def _is_sorted(a: IndexArray) -> bool:
    return bool(a.size < 2 or np.all(a[1:] > a[:-1]))


def _result(
    cls: CodeArray,
    bits: BitArray,
    intensity: CodeArray,
    reply_basis: CodeArray,
    reply_intensity: CodeArray,
    n_intensities: int,
    unmatched: int,
) -> SiftResult:
    x_index = np.flatnonzero(cls == 1).astype(np.int64)
    z_index = np.flatnonzero(cls == 2).astype(np.int64)
    x_int = intensity[x_index]
    z_int = intensity[z_index]
    if (x_int.size and int(x_int.max()) >= n_intensities) or (
        z_int.size and int(z_int.max()) >= n_intensities
    ):
        raise SiftingError(f"intensity code out of range 0..{n_intensities - 1}")
    return SiftResult(
        reply_basis=reply_basis,
        reply_intensity=reply_intensity,
        x_index=x_index,
        z_index=z_index,
        x_bits=np.ascontiguousarray(bits[x_index]),
        z_bits=np.ascontiguousarray(bits[z_index]),
        x_intensity=x_int,
        z_intensity=z_int,
        n_x=np.bincount(x_int, minlength=n_intensities).astype(np.int64),
        n_z=np.bincount(z_int, minlength=n_intensities).astype(np.int64),
        announced=int(cls.size),
        unmatched=unmatched,
    )


def bob_announcement(bob_events: BobEventsLike) -> tuple[IndexArray, CodeArray]:
    """Bob's public announcement: the pulse index and his basis of every detection."""
    pulse = np.ascontiguousarray(bob_events.pulse_index, dtype=np.int64)
    basis = np.ascontiguousarray(bob_events.basis, dtype=np.uint8)
    if pulse.size != basis.size:
        raise SiftingError("Bob's pulse_index and basis differ in length")
    if not _is_sorted(pulse):
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
    if not _is_sorted(a_pulse):
        raise SiftingError("Alice's pulse indices must be strictly increasing")
    b_pulse = np.ascontiguousarray(bob_pulse_index, dtype=np.int64)
    b_basis = np.ascontiguousarray(bob_basis, dtype=np.uint8)
    if b_pulse.ndim != 1 or b_pulse.shape != b_basis.shape:
        raise SiftingError("Bob's announcement: pulse_index and basis must be 1-D, same length")
    if _is_sorted(b_pulse):
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
    known = pos >= 0
    safe = np.where(known, pos, 0)
    if a_pulse.size == 0:
        reply_basis = np.full(b_pulse.size, UNKNOWN_BASIS, dtype=np.uint8)
        reply_int = np.zeros(b_pulse.size, dtype=np.uint8)
        bits = np.zeros(b_pulse.size, dtype=np.uint8)
    else:
        reply_basis = np.where(known, a_basis[safe], UNKNOWN_BASIS).astype(np.uint8)
        reply_int = np.where(known, a_int[safe], 0).astype(np.uint8)
        bits = a_bit[safe]
    cls = _classify(reply_basis, b_basis)
    return _result(
        cls, bits, reply_int, reply_basis, reply_int, n_intensities, int(b_pulse.size - known.sum())
    )


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
    cls = _classify(b_basis, a_basis)
    unmatched = int(np.count_nonzero(a_basis == UNKNOWN_BASIS))
    return _result(cls, b_bit, a_int, a_basis, a_int, n_intensities, unmatched)


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
