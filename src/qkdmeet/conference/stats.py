"""Receive-side stream statistics: frame rate, bitrate, frame loss, latency.

Frames carry a sender frame counter and send timestamp (see the test pattern);
loss is counted from counter gaps and latency from the embedded timestamp.
:class:`Unwrapper` turns wrapping counters (RTP timestamps, the frame index of
a replayed clip) into continuous ones, so a wrap is not counted as loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class StreamStats:
    """Accumulates per-frame observations of one received stream."""

    frames: int = 0
    bytes: int = 0
    lost: int = 0
    reordered: int = 0
    first_arrival: float | None = None
    last_arrival: float | None = None
    last_counter: int | None = None
    latencies: list[float] = field(default_factory=list)

    def record(self, counter: int, sent_at: float | None, arrived_at: float, size: int) -> None:
        """Record one frame with its counter, send and arrival times (s), size (bytes).

        ``sent_at`` is None for frames counted without reading their send time
        (no latency is recorded for them).
        """
        if size < 0:
            raise ValueError("frame size must be non-negative")
        if self.last_counter is not None:
            if counter <= self.last_counter:
                self.reordered += 1
                return
            self.lost += counter - self.last_counter - 1
        self.last_counter = counter
        self.frames += 1
        self.bytes += size
        if self.first_arrival is None:
            self.first_arrival = arrived_at
        self.last_arrival = arrived_at
        if sent_at is not None:
            self.latencies.append(arrived_at - sent_at)

    @property
    def duration(self) -> float:
        if self.first_arrival is None or self.last_arrival is None:
            return 0.0
        return self.last_arrival - self.first_arrival

    def fps(self) -> float:
        """Frames per second over the observed span (0 with fewer than two frames)."""
        return (self.frames - 1) / self.duration if self.duration > 0 else 0.0

    def bitrate(self) -> float:
        """Received bits per second over the observed span."""
        return 8 * self.bytes / self.duration if self.duration > 0 else 0.0

    def loss_ratio(self) -> float:
        total = self.frames + self.lost
        return self.lost / total if total else 0.0

    def latency_percentile(self, q: float) -> float:
        """Latency percentile q (0..100) in seconds; NaN with no frames."""
        if not self.latencies:
            return float("nan")
        return float(np.percentile(np.asarray(self.latencies), q))


class Unwrapper:
    """Extends a counter that wraps modulo ``modulus`` to an unbounded one.

    Used for RTP timestamps (modulo 2**32) and for the frame index of a
    replayed clip (modulo its length): a step forward of less than half the
    modulus is progress (across a wrap too), a larger one is read as an older,
    reordered value and returned below the last (without moving the reference),
    so :class:`StreamStats` counts it as reordered, not as a burst of loss.
    """

    def __init__(self, modulus: int) -> None:
        if modulus < 2:
            raise ValueError("modulus must be at least 2")
        self.modulus = modulus
        self._raw: int | None = None
        self._value = 0

    def __call__(self, value: int) -> int:
        raw = value % self.modulus
        if self._raw is None:
            self._raw, self._value = raw, raw
            return raw
        delta = (raw - self._raw) % self.modulus
        if delta >= (self.modulus + 1) // 2:
            return self._value + delta - self.modulus  # older than the last
        self._raw = raw
        self._value += delta
        return self._value
