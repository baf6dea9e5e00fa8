"""Per-pulse detection events of the link, sampled without drawing empty pulses.

What is drawn, and why it is exact
----------------------------------
Every pulse belongs to a *pulse class*: the intensity Alice chose and, when an
eavesdropper acts, what she did to it (forwarded, intercepted and resent,
blocked, split). A class has a prior probability per pulse and fixed
no-click probabilities for Bob's two detectors, so each pulse is detected
independently with probability R = sum_c pi_c R_c. The detected pulses of a
run of ``n_pulses`` therefore form a Bernoulli process: the gaps between
detections are geometric with parameter R, and each detection's class is
drawn with probability pi_c R_c / R. Alice's bit and basis and Bob's basis
are independent of whether the pulse was detected (Bob's two detectors are
symmetric), so they are drawn only for detected pulses; the choices for
undetected pulses never enter the protocol. The result has exactly the law
of simulating every pulse, at a cost proportional to the detections.

Bob's detectors (two, one per bit value of his basis): light from the pulse
reaches the detector of the sent bit ("correct") and, with misalignment
probability e_mis, the other one; for mismatched bases it splits evenly.
Each detector also fires a dark count with probability p_dc. A click pattern
with both detectors firing is a double click: flagged, with a random bit.
Afterpulses follow the reference model R_k = D_k (1 + p_ap): a pulse gets an
afterpulse-only detection with probability p_ap D_k, with a random bit.

How it is drawn: three 64-bit xoshiro256** draws per detection. The gap
takes 53 bits and is found by inversion from a table of the geometric law
(:func:`_gap_tables`: a guide table gives the start, about one comparison
per detection); the table is the log formula ``floor(log v / log(1 - R))``
tabulated, so it maps each draw to the same gap, and the rare draws past it
(survival below 2^-24) use the formula itself. The second draw gives the
class and the click outcome, 32 bits each, compared with integer thresholds
``ceil(p 2^32)`` (every probability to within 2^-32); the third Alice's bit,
both bases (24 bits each) and three fair coins. Alice's and Bob's halves
share one read-only pulse-index array (nobody writes to it, so the copy
per half is gone).

Throughput (measured 2026-12-04, one core of the shared 2-core machine,
chunks of 10^7 pulses, toshiba preset at 2 dB, median of 9 runs; time per
chunk of 5.8e5 detections): 4.3 ms, i.e. about 135 M detections/s (thread
CPU time; ``benchmarks/bench_qkd_model.py``'s wall-clock median 101-110 M
detections/s, 1.8-1.9 x real time at 57.7 M detections/s); the previous
sampler (a log and four draws per detection, a copy of the index array)
took 9.1 ms. Chunks much larger than 10^7 pulses run slower (fresh output
arrays are paged in); :class:`PulseTrain` keeps chunks small.

Codes: basis 0 = X (key), 1 = Z; intensity 0, 1, 2 = mu1, mu2, mu3 (as in
:mod:`qkdmeet.qkd.kernels.sifting`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

import numba
import numpy as np
import numpy.typing as npt

from qkdmeet.qkd.optics import detector_no_click
from qkdmeet.qkd.params import LinkParams

if TYPE_CHECKING:
    from qkdmeet.qkd.messages import CodedIndices

IndexArray = npt.NDArray[np.int64]
CodeArray = npt.NDArray[np.uint8]

BASIS_X = 0
BASIS_Z = 1

#: Source of the light that reaches Bob in a pulse class.
SOURCE_ALICE = 0  # Alice's state (possibly attenuated or photon-number filtered)
SOURCE_RESEND = 1  # a state Eve prepared after measuring in a random basis
SOURCE_NONE = 2  # no light (blocked, or Eve found the pulse empty)


@dataclass(frozen=True, slots=True)
class PulseClass:
    """A kind of pulse as Bob's detectors see it.

    ``prob``: prior probability per pulse (includes Alice's intensity choice);
    ``no_click_match`` / ``no_click_mismatch``: light-only no-click
    probabilities (correct detector, wrong detector, both) when Bob's basis
    matches / does not match the basis the light was prepared in.
    """

    prob: float
    intensity: int
    source: int
    no_click_match: tuple[float, float, float]
    no_click_mismatch: tuple[float, float, float]


def coherent_class(
    prob: float, intensity: int, mean_photons: float, eta: float, e_mis: float, source: int
) -> PulseClass:
    """A phase-randomised coherent pulse of ``mean_photons``, Bob's transmittance ``eta``."""
    a, b = detector_no_click(eta, mean_photons, e_mis)
    am, bm = detector_no_click(eta, mean_photons, 0.5)
    return PulseClass(prob, intensity, source, (a, b, a * b), (am, bm, am * bm))


def fock_class(
    prob: float, intensity: int, photons: int, eta: float, e_mis: float, source: int
) -> PulseClass:
    """An ``photons``-photon state reaching Bob's detectors with transmittance ``eta``."""
    a, b = detector_no_click(eta, photons, e_mis, fock=True)
    am, bm = detector_no_click(eta, photons, 0.5, fock=True)
    c = (1.0 - eta) ** photons
    return PulseClass(prob, intensity, source, (a, b, c), (am, bm, c))


def empty_class(prob: float, intensity: int) -> PulseClass:
    """A pulse from which no light reaches Bob (only dark counts and afterpulses)."""
    return PulseClass(prob, intensity, SOURCE_NONE, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0))


def honest_classes(params: LinkParams) -> list[PulseClass]:
    """The untouched link: one coherent class per intensity."""
    return [
        coherent_class(p, k, mu, params.eta_sys, params.e_mis, SOURCE_ALICE)
        for k, (mu, p) in enumerate(zip(params.mu, params.p_mu, strict=True))
    ]


class ChannelModel(Protocol):
    """What an eavesdropper (or the honest channel) does to the pulses, as pulse classes."""

    def pulse_classes(self, params: LinkParams) -> list[PulseClass]: ...


@dataclass(frozen=True, slots=True)
class AliceEvents:
    """Alice's records of the detected pulses (her half of a :class:`DetectionRecord`)."""

    pulse_index: IndexArray
    bit: CodeArray
    basis: CodeArray
    intensity: CodeArray

    def __len__(self) -> int:
        return int(self.pulse_index.size)


@dataclass(frozen=True, slots=True)
class BobEvents:
    """Bob's detections: pulse index, his basis, his bit, and the double-click flag.

    From the fibre (another process) ``pulse_index`` stays coded
    (:class:`qkdmeet.qkd.messages.CodedIndices`; ``np.asarray`` decodes it).
    """

    pulse_index: IndexArray | CodedIndices
    basis: CodeArray
    bit: CodeArray
    double_click: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.pulse_index.size)


@dataclass(frozen=True, slots=True)
class DetectionRecord:
    """The detections of pulses ``first_pulse .. first_pulse + n_pulses - 1``, both halves.

    Give ``alice`` to the transmitter and ``bob`` to the receiver; neither
    half contains anything the other party would not have.
    """

    first_pulse: int
    n_pulses: int
    alice: AliceEvents
    bob: BobEvents

    def __len__(self) -> int:
        return len(self.bob)


@dataclass(frozen=True, slots=True)
class _ClassTables:
    detection_probability: float
    class_cum: npt.NDArray[np.float64]
    intensity: CodeArray
    source: CodeArray
    cum_match: npt.NDArray[np.float64]
    cum_mismatch: npt.NDArray[np.float64]
    #: ``class_cum`` as 32-bit thresholds (see :func:`_thresholds32`)
    class_u32: npt.NDArray[np.int64]
    #: ``[class, mismatch, outcome]``: ``cum_match`` / ``cum_mismatch`` (first three) as thresholds
    outcome_u32: npt.NDArray[np.int64]


def _thresholds32(cum: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Integer thresholds ``T = ceil(cum 2^32)``: for ``U`` uniform on ``0 .. 2^32 - 1``,
    ``U < T`` has probability ``T / 2^32``, ``cum`` to within ``2^-32``."""
    out: npt.NDArray[np.int64] = np.minimum(np.ceil(cum * _TWO32), _TWO32).astype(np.int64)
    return out


def _outcome_cum(
    no_click: tuple[float, float, float], p_dc: float, p_ap: float
) -> tuple[float, npt.NDArray[np.float64]]:
    """Detection probability and cumulative outcome probabilities given a detection.

    Outcomes: afterpulse (random bit), correct detector only, wrong only, double click.
    """
    a, b, c = no_click
    quiet = 1.0 - p_dc
    neither = c * quiet * quiet
    click = 1.0 - neither
    correct_only = max(b * quiet - neither, 0.0)
    wrong_only = max(a * quiet - neither, 0.0)
    double = max(click - correct_only - wrong_only, 0.0)
    detect = click * (1.0 + p_ap)
    if detect <= 0.0:
        return 0.0, np.array([0.0, 0.0, 0.0, 1.0])
    parts = np.array([click * p_ap, correct_only, wrong_only, double]) / detect
    cum = np.cumsum(parts)
    cum[-1] = 1.0
    return detect, cum


def _tables(params: LinkParams, classes: list[PulseClass]) -> _ClassTables:
    if not classes:
        raise ValueError("a channel model must produce at least one pulse class")
    n = len(classes)
    weights = np.empty(n)
    cum_match = np.empty((n, 4))
    cum_mismatch = np.empty((n, 4))
    for i, cls in enumerate(classes):
        if not (0.0 <= cls.prob <= 1.0) or cls.intensity not in (0, 1, 2):
            raise ValueError(f"invalid pulse class {cls!r}")
        r_match, cum_match[i] = _outcome_cum(cls.no_click_match, params.p_dc, params.p_ap)
        r_mis, cum_mismatch[i] = _outcome_cum(cls.no_click_mismatch, params.p_dc, params.p_ap)
        if abs(r_match - r_mis) > 1e-9 * max(r_match, 1e-300) + 1e-15:
            raise ValueError("detection probability must not depend on Bob's basis")
        weights[i] = cls.prob * r_match
    total_prob = sum(cls.prob for cls in classes)
    if abs(total_prob - 1.0) > 1e-9:
        raise ValueError(f"pulse class probabilities must sum to 1, got {total_prob!r}")
    r = float(weights.sum())
    class_cum = np.cumsum(weights) / r if r > 0 else np.ones(n)
    class_cum[-1] = 1.0
    outcome = np.stack([cum_match[:, :3], cum_mismatch[:, :3]], axis=1)
    return _ClassTables(
        detection_probability=r,
        class_cum=class_cum,
        intensity=np.array([c.intensity for c in classes], dtype=np.uint8),
        source=np.array([c.source for c in classes], dtype=np.uint8),
        cum_match=cum_match,
        cum_mismatch=cum_mismatch,
        class_u32=_thresholds32(class_cum),
        outcome_u32=np.ascontiguousarray(_thresholds32(outcome)),
    )


_TWO24 = float(2**24)
_TWO32 = float(2**32)
_TWO53 = 2**53
_MASK24 = np.int64(2**24 - 1)
_MASK32 = np.uint64(2**32 - 1)
#: Gap table: at most this many entries, and none past a survival probability below
#: 2^-24 (beyond it the log formula takes over); guide table of 2^_GUIDE_BITS entries.
_GAP_TABLE_MAX = 4096
_GAP_TAIL = 2.0**-24
_GUIDE_BITS = 12


@functools.lru_cache(maxsize=64)
def _gap_tables(r: float) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Inversion tables of the gap ``G`` (geometric: ``P(G >= g) = (1 - r)^g``).

    With ``u`` the 53-bit integer of a draw and ``v = 1 - u / 2^53`` in (0, 1],
    the log formula ``G = floor(log v / log(1 - r))`` is the smallest ``g`` with
    ``S(g) = (1 - r)^(g + 1) < v``, i.e. with ``u < U[g] = 2^53 - floor(S(g) 2^53)``
    (``v 2^53`` is an integer). ``U`` (``L`` entries and a sentinel ``2^53``) is
    that comparison tabulated, so the table gives the log formula's ``G`` for the
    same ``u``; ``u >= U[L - 1]`` (``G >= L``) falls back to the formula.
    ``guide[b]`` is ``G`` at ``u = b 2^(53 - _GUIDE_BITS)``, where a search up ``U``
    starts (about one comparison per draw).
    """
    log1m_r = math.log1p(-r) if r < 1.0 else -math.inf
    g = np.arange(_GAP_TABLE_MAX, dtype=np.float64)
    survival = np.exp((g + 1.0) * log1m_r)
    length = int(np.searchsorted(-survival, -_GAP_TAIL, side="right")) + 1  # first S < tail
    length = min(max(length, 1), _GAP_TABLE_MAX)
    table = np.empty(length + 1, dtype=np.int64)
    table[:length] = _TWO53 - np.floor(survival[:length] * float(_TWO53)).astype(np.int64)
    table[length] = _TWO53
    starts = np.arange(1 << _GUIDE_BITS, dtype=np.int64) << (53 - _GUIDE_BITS)
    guide = np.searchsorted(table[:length], starts, side="right").astype(np.int64)
    table.flags.writeable = False
    guide.flags.writeable = False
    return table, guide


# xoshiro256** (Blackman and Vigna): a small, fast generator whose state the
# caller owns, so that a record is reproducible from the numpy Generator that
# seeded it and threads never share a stream.


@numba.njit(inline="always")
def _rotl(x: np.uint64, k: int) -> np.uint64:
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@numba.njit(inline="always")
def _xoshiro(
    s0: np.uint64, s1: np.uint64, s2: np.uint64, s3: np.uint64
) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64, np.uint64]:
    """One step on a state held in locals: (output, new state)."""
    result = _rotl(s1 * np.uint64(5), 7) * np.uint64(9)
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, 45)
    return result, s0, s1, s2, s3


@numba.njit(inline="always")
def _next_u64(s: npt.NDArray[np.uint64]) -> np.uint64:
    result, s[0], s[1], s[2], s[3] = _xoshiro(s[0], s[1], s[2], s[3])
    return result


@numba.njit(inline="always")
def _next_double(s: npt.NDArray[np.uint64]) -> float:
    """Uniform in [0, 1) with 53 random bits."""
    return float(_next_u64(s) >> np.uint64(11)) * (1.0 / 9007199254740992.0)


def _rng_state(rng: np.random.Generator) -> npt.NDArray[np.uint64]:
    state = rng.integers(0, np.iinfo(np.uint64).max, size=4, dtype=np.uint64, endpoint=True)
    if not state.any():
        state[0] = 1  # the all-zero state is the generator's only fixed point
    return state


@numba.njit(cache=True, nogil=True, fastmath=True)
def _sample_kernel(
    state: npt.NDArray[np.uint64],
    n_pulses: int,
    first_pulse: int,
    log1m_r: float,
    gap_table: npt.NDArray[np.int64],
    gap_guide: npt.NDArray[np.int64],
    class_u32: npt.NDArray[np.int64],
    class_intensity: CodeArray,
    class_source: CodeArray,
    outcome_u32: npt.NDArray[np.int64],
    q_x: float,
    pulse_index: IndexArray,
    a_bit: CodeArray,
    a_basis: CodeArray,
    intensity: CodeArray,
    b_basis: CodeArray,
    b_bit: CodeArray,
    double: npt.NDArray[np.bool_],
) -> int:
    """Fill the output arrays; returns the number of detections, or -1 when they overflow.

    Three 64-bit draws per detection: the gap (53 bits, by the tables of
    :func:`_gap_tables`), the class and the click outcome (32 bits each), and
    Alice's bit, both bases and three fair coins. The generator's state lives
    in locals (registers) and goes back to ``state`` on return: kept in the
    array, every draw stored and reloaded it, since the compiler cannot rule
    out that the output arrays alias it (measured 2026-12-05, 1.15e7 detections of the
    toshiba preset at 2 dB, median of 5: 13.9 ns per detection before, 11.2 after).
    """
    cap = pulse_index.size
    qx24 = np.int64(q_x * _TWO24)
    n_classes = class_u32.size
    table_len = gap_table.size - 1  # the last entry is the sentinel 2^53
    guide_shift = np.uint64(53 - _GUIDE_BITS)
    pos = np.int64(-1)
    count = 0
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    while True:
        w, s0, s1, s2, s3 = _xoshiro(s0, s1, s2, s3)
        u = w >> np.uint64(11)
        g = gap_guide[u >> guide_shift]
        ui = np.int64(u)
        while ui >= gap_table[g]:
            g += 1
        if g >= table_len:  # the tail: the log formula on the same draw (v in (0, 1])
            v = float(np.int64(_TWO53) - ui) * (1.0 / 9007199254740992.0)
            g = max(np.int64(math.floor(math.log(v) / log1m_r)), np.int64(table_len))
        pos += g + 1
        if pos >= n_pulses or pos < 0:
            break
        if count >= cap:
            count = -1
            break
        y, s0, s1, s2, s3 = _xoshiro(s0, s1, s2, s3)
        u_class = np.int64(y >> np.uint64(32))
        u_out = np.int64(y & _MASK32)
        c = 0
        if n_classes <= 8:  # branch-free: thresholds are non-decreasing
            for k in range(n_classes - 1):
                c += u_class >= class_u32[k]
        else:
            while c < n_classes - 1 and u_class >= class_u32[c]:
                c += 1
        # One 53-bit draw gives Alice's bit (1 bit), both bases (24 bits each)
        # and three fair coins for the cases that need them.
        w, s0, s1, s2, s3 = _xoshiro(s0, s1, s2, s3)
        x = np.int64(w >> np.uint64(11))
        abit = np.uint8(x & 1)
        abasis = np.uint8(0) if ((x >> 1) & _MASK24) < qx24 else np.uint8(1)
        bbasis = np.uint8(0) if ((x >> 25) & _MASK24) < qx24 else np.uint8(1)
        coin_a = np.uint8((x >> 49) & 1)
        coin_b = np.uint8((x >> 50) & 1)
        coin_c = np.uint8((x >> 51) & 1)
        src = class_source[c]
        if src == 0:
            sbasis = abasis
            sbit = abit
        elif src == 1:
            sbasis = coin_a
            sbit = abit if sbasis == abasis else coin_b
        else:
            sbasis = bbasis
            sbit = coin_b
        mis = np.int64(bbasis != sbasis)
        # outcome 0 afterpulse, 1 correct detector only, 2 wrong only, 3 double click
        o = (
            np.int64(u_out >= outcome_u32[c, mis, 0])
            + np.int64(u_out >= outcome_u32[c, mis, 1])
            + np.int64(u_out >= outcome_u32[c, mis, 2])
        )
        random_bit = (o == 0) | (o == 3)
        bit = coin_c if random_bit else sbit ^ np.uint8(o == 2)
        pulse_index[count] = first_pulse + pos
        a_bit[count] = abit
        a_basis[count] = abasis
        intensity[count] = class_intensity[c]
        b_basis[count] = bbasis
        b_bit[count] = bit
        double[count] = o == 3
        count += 1
    state[0], state[1], state[2], state[3] = s0, s1, s2, s3
    return count


def detection_probability(params: LinkParams, eve: ChannelModel | None = None) -> float:
    """Probability that a pulse gives Bob a detection, under ``eve`` (None: the honest link)."""
    classes = honest_classes(params) if eve is None else eve.pulse_classes(params)
    return _tables(params, classes).detection_probability


def sample_detections(
    params: LinkParams,
    n_pulses: int,
    rng: np.random.Generator,
    eve: ChannelModel | None = None,
    *,
    first_pulse: int = 0,
) -> DetectionRecord:
    """Sample the detections among ``n_pulses`` consecutive pulses (see the module docstring).

    ``rng`` seeds the sampler, so a seeded generator gives a reproducible
    record. ``first_pulse`` offsets the pulse indices so that consecutive
    calls continue one pulse train.
    """
    if isinstance(n_pulses, bool) or not isinstance(n_pulses, int | np.integer) or n_pulses < 0:
        raise ValueError(f"n_pulses must be an integer >= 0, got {n_pulses!r}")
    if not isinstance(first_pulse, int | np.integer) or first_pulse < 0:
        raise ValueError(f"first_pulse must be an integer >= 0, got {first_pulse!r}")
    n_pulses = int(n_pulses)
    classes = honest_classes(params) if eve is None else eve.pulse_classes(params)
    t = _tables(params, classes)
    r = t.detection_probability
    expected = n_pulses * r
    cap = int(expected + 12.0 * math.sqrt(expected + 1.0) + 64)
    state = _rng_state(rng)
    while True:
        out_index = np.empty(cap, dtype=np.int64)
        a_bit = np.empty(cap, dtype=np.uint8)
        a_basis = np.empty(cap, dtype=np.uint8)
        intensity = np.empty(cap, dtype=np.uint8)
        b_basis = np.empty(cap, dtype=np.uint8)
        b_bit = np.empty(cap, dtype=np.uint8)
        double = np.empty(cap, dtype=np.bool_)
        if r <= 0.0 or n_pulses == 0:
            count = 0
            break
        log1m_r = math.log1p(-r) if r < 1.0 else -745.0
        gap_table, gap_guide = _gap_tables(r)
        count = int(
            _sample_kernel(
                state, n_pulses, int(first_pulse), log1m_r, gap_table, gap_guide, t.class_u32,
                t.intensity, t.source, t.outcome_u32, params.q_x,
                out_index, a_bit, a_basis, intensity, b_basis, b_bit, double,
            )
        )  # fmt: skip
        if count >= 0:
            break
        cap *= 2  # astronomically rare: more detections than 12 sigma above the mean
    # One index array for both halves, read-only: neither party can change the other's.
    idx = out_index[:count]
    idx.flags.writeable = False
    return DetectionRecord(
        first_pulse=int(first_pulse),
        n_pulses=n_pulses,
        alice=AliceEvents(idx, a_bit[:count], a_basis[:count], intensity[:count]),
        bob=BobEvents(idx, b_basis[:count], b_bit[:count], double[:count]),
    )


#: "The train's own eavesdropper" (the default of :meth:`PulseTrain.next_chunk`).
_CURRENT = object()


class PulseTrain:
    """A continuing pulse train sampled chunk by chunk (the real-time link's source).

    Each :meth:`next_chunk` covers the next ``chunk_pulses`` pulses, so pulse
    indices increase across chunks and the two halves of every record can go
    to the transmitter and the receiver. ``eve`` may be changed between
    chunks (an attack that starts mid-run).
    """

    def __init__(
        self,
        params: LinkParams,
        rng: np.random.Generator,
        eve: ChannelModel | None = None,
        *,
        chunk_pulses: int = 10_000_000,
    ) -> None:
        if isinstance(chunk_pulses, bool) or not isinstance(chunk_pulses, int) or chunk_pulses < 1:
            raise ValueError(f"chunk_pulses must be an integer >= 1, got {chunk_pulses!r}")
        self.params = params
        self.eve = eve
        self.chunk_pulses = chunk_pulses
        self._rng = rng
        self._next_pulse = 0

    @property
    def pulses_sent(self) -> int:
        """Pulses covered so far (the index of the next chunk's first pulse)."""
        return self._next_pulse

    @property
    def seconds_sent(self) -> float:
        """Time the device's clock needed for the pulses so far."""
        return self._next_pulse / self.params.clock_hz

    def skip(self, n_pulses: int) -> None:
        """Let ``n_pulses`` pass unrecorded (the device sent them while nobody listened)."""
        if isinstance(n_pulses, bool) or not isinstance(n_pulses, int) or n_pulses < 0:
            raise ValueError(f"n_pulses must be an integer >= 0, got {n_pulses!r}")
        self._next_pulse += n_pulses

    def next_chunk(
        self, n_pulses: int | None = None, *, eve: ChannelModel | object | None = _CURRENT
    ) -> DetectionRecord:
        """The next chunk, through ``eve`` if given (else the train's own ``eve``)."""
        n = self.chunk_pulses if n_pulses is None else n_pulses
        model = self.eve if eve is _CURRENT else cast("ChannelModel | None", eve)
        record = sample_detections(
            self.params, n, self._rng, model, first_pulse=self._next_pulse
        )
        self._next_pulse += record.n_pulses
        return record
