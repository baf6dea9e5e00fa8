"""The quantum channel: Alice's source, the fibre (with its eavesdropper) and Bob's detectors.

:class:`QuantumChannel` samples the pulse train chunk by chunk
(:class:`qkdmeet.qkd.events.PulseTrain`) and splits every record in two:

- :class:`~qkdmeet.qkd.events.AliceEvents` stay with the transmitter (her
  source's own record of what it sent: bit, basis, intensity);
- a :class:`BobChunk` is what comes out of the fibre at the receiver: the
  pulse range it covers and, per detection, the pulse index, Bob's basis,
  his bit and the double-click flag. Nothing of Alice's choices is in it.

Sampling only the detected pulses (see :mod:`qkdmeet.qkd.events`) means
Alice's half holds records of detected pulses only: a simulation shortcut.
The transmitter actor looks her records up only at the pulse indices Bob
announces, as a device holding every pulse's record would.

Run-time controls (the demo's eavesdropper and link-cut scenarios):
:meth:`QuantumChannel.set_eve` and :meth:`QuantumChannel.set_cut`. A cut
fibre lets no light through; Bob's detectors still fire dark counts and
afterpulses, so blocks fill very slowly and yield no key.

:func:`encode_bob_chunk` / :func:`decode_bob_chunk` carry Bob's half over the
networked link's quantum stream.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from qkdmeet.errors import QkdError
from qkdmeet.qkd import messages as m
from qkdmeet.qkd.classical import Buffer
from qkdmeet.qkd.eve import Eavesdropper, parse_eve
from qkdmeet.qkd.events import (
    AliceEvents,
    BobEvents,
    ChannelModel,
    PulseClass,
    PulseTrain,
    empty_class,
)
from qkdmeet.qkd.params import LinkParams


class ChannelError(QkdError, ValueError):
    """A malformed quantum-channel frame."""


@dataclass(frozen=True, slots=True)
class CutFibre:
    """A cut fibre: no light reaches Bob (only his dark counts and afterpulses)."""

    def pulse_classes(self, params: LinkParams) -> list[PulseClass]:
        return [empty_class(p, k) for k, p in enumerate(params.p_mu)]

    def __str__(self) -> str:
        return "cut"


@dataclass(frozen=True, slots=True)
class BobChunk:
    """Bob's view of pulses ``first_pulse .. first_pulse + n_pulses - 1``: his detections."""

    first_pulse: int
    n_pulses: int
    events: BobEvents

    def __len__(self) -> int:
        return len(self.events)


class QuantumChannel:
    """Source, fibre and detectors of one link; see the module docstring.

    ``emit(n)`` samples the next ``n`` pulses; ``skip(n)`` lets ``n`` pulses
    pass unrecorded (the device ran while its post-processing was full).
    """

    def __init__(
        self,
        params: LinkParams,
        rng: np.random.Generator,
        eve: Eavesdropper | None = None,
        *,
        chunk_pulses: int = 10_000_000,
    ) -> None:
        self.params = params
        self._eve: Eavesdropper | None = eve
        self._cut = False
        self._train = PulseTrain(params, rng, eve, chunk_pulses=chunk_pulses)
        #: Pulse ranges ``[first, end)`` sampled while an eavesdropper was on the
        #: fibre (ground truth of the simulation, for checking that no key came
        #: from them; the protocol itself never reads it).
        self.attacked_ranges: list[tuple[int, int]] = []

    # -- controls ---------------------------------------------------------
    @property
    def eve(self) -> Eavesdropper | None:
        return self._eve

    @property
    def cut(self) -> bool:
        return self._cut

    def set_eve(self, eve: Eavesdropper | str | None) -> None:
        """Start or stop an eavesdropper (an object, a spec such as ``"pns"``, or None)."""
        self._eve = parse_eve(eve) if isinstance(eve, str) else eve
        self._apply()

    def set_cut(self, cut: bool) -> None:
        """Cut (True) or restore (False) the fibre."""
        self._cut = bool(cut)
        self._apply()

    def _apply(self) -> None:
        model: ChannelModel | None = CutFibre() if self._cut else self._eve
        self._train.eve = model

    # -- the pulse train --------------------------------------------------
    @property
    def next_pulse(self) -> int:
        return self._train.pulses_sent

    def skip(self, n_pulses: int) -> None:
        self._train.skip(int(n_pulses))

    def emit(self, n_pulses: int) -> tuple[AliceEvents, BobChunk]:
        """Sample the next ``n_pulses``: Alice's records and what reaches Bob."""
        model = self._train.eve  # read once: the chunk is sampled through exactly this
        record = self._train.next_chunk(int(n_pulses), eve=model)
        if isinstance(model, Eavesdropper):
            end = record.first_pulse + record.n_pulses
            ranges = self.attacked_ranges
            if ranges and ranges[-1][1] == record.first_pulse:
                ranges[-1] = (ranges[-1][0], end)
            else:
                ranges.append((record.first_pulse, end))
        return record.alice, BobChunk(record.first_pulse, record.n_pulses, record.bob)


# -- Bob's half on the wire --------------------------------------------------------------

_HEAD = struct.Struct("<QQ")
U8 = npt.NDArray[np.uint8]
B1 = npt.NDArray[np.bool_]


@numba.njit(cache=True, nogil=True)
def _pack_flags(basis: U8, bit: U8, double: B1) -> U8:  # pragma: no cover
    out = np.empty(basis.size, dtype=np.uint8)
    for i in range(basis.size):
        out[i] = (basis[i] & 1) | ((bit[i] & 1) << 1) | (np.uint8(double[i]) << 2)
    return out


@numba.njit(cache=True, nogil=True)
def _unpack_flags(raw: U8) -> tuple[U8, U8, B1, int]:  # pragma: no cover
    n = raw.size
    basis = np.empty(n, dtype=np.uint8)
    bit = np.empty(n, dtype=np.uint8)
    double = np.empty(n, dtype=np.bool_)
    bad = 0
    for i in range(n):
        c = raw[i]
        bad += c > 7
        basis[i] = c & 1
        bit[i] = (c >> 1) & 1
        double[i] = (c >> 2) & 1
    return basis, bit, double, bad


def encode_bob_chunk(chunk: BobChunk) -> tuple[Buffer, ...]:
    """Bob's chunk as bytes: ``first u64 | n_pulses u64``, the pulse indices coded as an
    announcement's (:func:`qkdmeet.qkd.messages.encode_indices`: one numba pass), then
    a byte per detection: basis | bit << 1 | double click << 2 (packing it in bits cost
    three numpy passes each way; the fibre is loopback or the site's own link)."""
    ev = chunk.events
    flags = _pack_flags(np.ascontiguousarray(ev.basis, np.uint8),
                        np.ascontiguousarray(ev.bit, np.uint8),
                        np.ascontiguousarray(ev.double_click, np.bool_))  # fmt: skip
    return (
        _HEAD.pack(chunk.first_pulse, chunk.n_pulses),
        m.encode_indices(ev.pulse_index, chunk.first_pulse),
        memoryview(flags),
    )  # the frame's parts: the transport sends them without joining them


def decode_bob_chunk(data: Buffer) -> BobChunk:
    """Inverse of :func:`encode_bob_chunk`; :class:`ChannelError` on a malformed frame."""
    if len(data) < _HEAD.size:
        raise ChannelError("short quantum-channel frame")
    first, n_pulses = _HEAD.unpack_from(data)
    r = m.Reader(data)
    r.take(_HEAD.size)
    try:
        # checked, not decoded: Bob passes the coding on in his announcement
        index = m.read_indices(r, first, first + n_pulses)
        raw = np.frombuffer(r.take(index.size), dtype=np.uint8)
        r.end()
    except m.ProtocolError as exc:
        raise ChannelError(f"malformed quantum-channel frame: {exc}") from None
    basis, bit, double, bad = _unpack_flags(raw)
    if bad:
        raise ChannelError(f"{bad} detection flags out of range in a quantum-channel frame")
    return BobChunk(int(first), int(n_pulses), BobEvents(index, basis, bit, double))
