"""The simulated device's pulse train in wall-clock time (:class:`PulseSource`).

The source samples chunks of pulses as the device's clock produces them: pulse
``k`` is due ``k / clock_hz`` seconds after the start. When the post-processing
cannot keep up (the transmitter holds more than ``backlog_blocks`` blocks' worth
of unannounced detections) the source waits, and the pulses the device sent
meanwhile are skipped, never sampled (``pulses_skipped``): the rates reported are
per wall-clock second, honestly below the device's when the CPU falls behind.
With ``realtime=False`` the source runs as fast as the CPU allows (the
benchmark's throughput mode). A chunk is one block's pulses
(:func:`block_chunk_pulses`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from qkdmeet.qkd.channel import (
    BobChunk,
    QuantumChannel,
)
from qkdmeet.qkd.events import AliceEvents, detection_probability
from qkdmeet.qkd.params import LinkParams
from qkdmeet.qkd.protocol import (
    Transmitter,
)

#: Pulses sampled per chunk when blocks are small (10 ms of a 1 GHz clock).
DEFAULT_CHUNK_PULSES = 10_000_000


#: X-basis detections a block-sized chunk holds beyond the block's need (1 %: the count's
#: spread is ~0.03 % for 10^7-bit blocks, so a chunk almost never falls short).
CHUNK_MARGIN = 1.01


def block_chunk_pulses(params: LinkParams, block_bits: int) -> int:
    """Pulses in which Bob expects a block's X detections, with :data:`CHUNK_MARGIN`.

    The source samples one such chunk per block: each block is then one chunk
    at both ends, handed on without the copies that cutting and joining
    smaller chunks cost (~0.2 s per 10^7-bit block at each end, measured),
    and Bob's block holds the chunk's ~1 % more X bits than the target.
    """
    per_pulse = detection_probability(params) * params.q_x**2
    if per_pulse <= 0.0:
        return DEFAULT_CHUNK_PULSES
    return int(min(max(math.ceil(CHUNK_MARGIN * block_bits / per_pulse), 1_000_000), 4_000_000_000))


class PulseSource:
    """Samples the quantum channel in (at most) real time; see the module docstring."""

    def __init__(
        self,
        channel: QuantumChannel,
        transmitter: Transmitter,
        deliver: Callable[[BobChunk], Awaitable[None]],
        *,
        block_bits: int,
        realtime: bool = True,
        backlog_blocks: float = 2.0,
        chunk_pulses: int | None = None,
    ) -> None:
        self.channel = channel
        self.transmitter = transmitter
        self.deliver = deliver
        self.realtime = realtime
        p = channel.params
        if chunk_pulses is None:
            chunk_pulses = block_chunk_pulses(p, block_bits)
        self.chunk_pulses = chunk_pulses
        det_per_x = 1.0 / max(p.q_x**2, 1e-9)
        chunk_detections = int(chunk_pulses * detection_probability(p, channel.eve)) + 1
        # never below one block and a chunk: Bob announces only once a whole block has
        # arrived, so a smaller threshold would stop the source before he can
        blocks = max(backlog_blocks, 1.0)
        self.backlog_detections = int(blocks * block_bits * det_per_x) + chunk_detections
        self.pulses_skipped = 0
        self.sampling_seconds = 0.0
        self.started = 0.0

    @property
    def pulses_sent(self) -> int:
        return self.channel.next_pulse

    async def run(self) -> None:
        clock = self.channel.params.clock_hz
        self.started = time.perf_counter()
        max_lag = self.chunk_pulses * 4
        while True:
            if self.transmitter.buffered_detections > self.backlog_detections:
                await asyncio.sleep(0.005)
                continue
            n = self.chunk_pulses
            if self.realtime:
                due = (time.perf_counter() - self.started) * clock
                ahead = self.channel.next_pulse + n - due
                if ahead > 0:
                    await asyncio.sleep(min(ahead / clock, 0.05))
                    continue
                lag = int(-ahead)
                if lag > max_lag:
                    self.channel.skip(lag)
                    self.pulses_skipped += lag
            alice, bob, cpu = await asyncio.to_thread(self._emit, n)
            self.sampling_seconds += cpu
            self.transmitter.feed(alice)
            await self.deliver(bob)

    def _emit(self, n: int) -> tuple[AliceEvents, BobChunk, float]:
        t0 = time.thread_time()
        alice, bob = self.channel.emit(n)
        return alice, bob, time.thread_time() - t0

    def stats(self) -> dict[str, Any]:
        p = self.channel.params
        return {
            "pulses_sent": self.pulses_sent,
            "pulses_skipped": self.pulses_skipped,
            "device_seconds": self.pulses_sent / p.clock_hz,
            "sampled_device_seconds": (self.pulses_sent - self.pulses_skipped) / p.clock_hz,
            "sampling_seconds": self.sampling_seconds,
            "eve": str(self.channel.eve) if self.channel.eve is not None else None,
            "cut": self.channel.cut,
        }
