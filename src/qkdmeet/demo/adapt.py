"""Key-aware adaptation: the conference's video cap follows the gateways' key budget.

Both directions' key comes from one QKD link. :func:`choose_cap` turns the
link's key rate (as payload bit rate) and the gateways' key pools
(``GET /budget``: key buffered, consumption) into one room-wide video cap so
that the media of both directions together (video streams at the cap plus
audio, with headroom) fits the key produced; audio is capped (to a lean Opus
rate) only when even the video floor would not fit beside it. :class:`Adapter` applies it with
``POST /api/rooms/{room}/cap`` when it changes by more than a step, and lifts
the cap (``null``) when key is plentiful again. The gateways fail closed on
their own: the cap only avoids spending key on packets that would be dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: Fraction of the sustainable payload rate the media may use.
HEADROOM = 0.7
#: Below this the video is paused in effect (an encoder floor), audio continues.
MIN_VIDEO_BPS = 30_000
#: Default per-stream video rate; a cap at or above it is lifted.
DEFAULT_VIDEO_BPS = 1_000_000
#: Audio on the wire: Opus plus RTP/SRTP/UDP/IP headers at 50 packets/s.
AUDIO_BPS = 64_000
#: The lean audio tier, when the key cannot carry the video floor beside full audio:
#: Opus at 16 kb/s (speech stays clear) ...
AUDIO_LEAN_BPS = 16_000
#: ... which is about 40 kb/s on the wire (the same 24 kb/s of headers).
AUDIO_LEAN_WIRE_BPS = 40_000
#: Factor of key to spare before lean audio returns to full rate.
LEAN_HYSTERESIS = 1.3
#: Seconds of buffered key under which the pool counts as draining.
LOW_POOL_SECONDS = 3.0
#: Relative change that triggers a new cap.
STEP = 0.2


@dataclass(frozen=True, slots=True)
class DirectionLoad:
    """What one direction carries: video streams and audio streams."""

    video_streams: int
    audio_streams: int


def choose_cap(
    link_payload_bps: float,
    loads: Mapping[str, DirectionLoad],
    pool_seconds: Mapping[str, float | None] | None = None,
    *,
    default_bps: int = DEFAULT_VIDEO_BPS,
) -> int | None:
    """The room-wide video cap (bit/s) that fits the key supply, or None (no cap).

    Both directions draw their key from the same QKD link, so the media of
    every direction together (``loads``: video streams at the cap, audio
    uncapped) must fit ``HEADROOM`` of the payload rate the link's key
    carries (``link_payload_bps``: key rate times payload per key byte).
    ``pool_seconds`` (each sending gateway's buffered key in seconds of its
    consumption) tightens the cap while a pool drains.
    """
    video = sum(load.video_streams for load in loads.values())
    audio = sum(load.audio_streams for load in loads.values())
    if video <= 0:
        return None
    budget = HEADROOM * max(0.0, link_payload_bps)
    if any(s is not None and s < LOW_POOL_SECONDS for s in (pool_seconds or {}).values()):
        budget *= 0.8  # the pool drains: fit what arrives, not what is still buffered
    cap = (budget - audio * AUDIO_BPS) / video
    if cap >= default_bps:
        return None
    return max(MIN_VIDEO_BPS, int(cap))


def choose_caps(
    link_payload_bps: float,
    loads: Mapping[str, DirectionLoad],
    pool_seconds: Mapping[str, float | None] | None = None,
    *,
    default_bps: int = DEFAULT_VIDEO_BPS,
    lean_now: bool = False,
) -> tuple[int | None, int | None]:
    """The room's video cap and audio cap (bit/s; None: no cap).

    As :func:`choose_cap`; when even the video floor does not fit beside
    full-rate audio, audio drops to :data:`AUDIO_LEAN_BPS` and the video cap
    is recomputed with the lean audio's wire rate (still at least the floor).
    With ``lean_now`` (audio is lean already) full audio returns only once it
    fits with :data:`LEAN_HYSTERESIS` to spare, so that audio does not flip at
    every block the link delivers.
    """
    video_cap = choose_cap(link_payload_bps, loads, pool_seconds, default_bps=default_bps)
    video = sum(load.video_streams for load in loads.values())
    audio = sum(load.audio_streams for load in loads.values())
    if video_cap is None or video <= 0:
        return video_cap, None
    budget = HEADROOM * max(0.0, link_payload_bps)
    if any(s is not None and s < LOW_POOL_SECONDS for s in (pool_seconds or {}).values()):
        budget *= 0.8
    spare = LEAN_HYSTERESIS if lean_now else 1.0
    if (budget / spare - audio * AUDIO_BPS) / video >= MIN_VIDEO_BPS:
        return video_cap, None
    lean = (budget - audio * AUDIO_LEAN_WIRE_BPS) / video
    return max(MIN_VIDEO_BPS, int(lean)), AUDIO_LEAN_BPS


def changed(old: int | None, new: int | None) -> bool:
    if old is None or new is None:
        return old != new
    if new == MIN_VIDEO_BPS:
        return new != old  # reaching the floor is always applied
    return abs(new - old) > STEP * old


@dataclass(slots=True)
class Adapter:
    """Applies :func:`choose_cap` to the room; records every change."""

    post_cap: Callable[[int | None, int | None], Awaitable[Any]]
    loads: Mapping[str, DirectionLoad]
    current: int | None = None
    audio: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.time)

    async def update(self, link_payload_bps: float,
                     pool_seconds: Mapping[str, float | None] | None = None) -> int | None:
        cap, audio = choose_caps(link_payload_bps, self.loads, pool_seconds,
                                 lean_now=self.audio is not None)
        if not changed(self.current, cap) and audio == self.audio:
            return self.current
        try:
            await self.post_cap(cap, audio)
        except Exception as exc:  # the conference may be restarting: retry next sample
            log.warning("setting the video cap failed: %s", exc)
            return self.current
        self.current, self.audio = cap, audio
        self.history.append({"t": time.time() - self.t0, "cap_bps": cap, "audio_cap_bps": audio})
        log.info("video cap -> %s, audio cap -> %s", cap, audio)
        return cap
