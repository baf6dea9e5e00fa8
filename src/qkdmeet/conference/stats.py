"""Receive-side stream statistics: frame rate, bitrate, frame loss, latency.

Frames carry a sender frame counter and send timestamp (see the test pattern);
loss is counted from counter gaps and latency from the embedded timestamp.
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
