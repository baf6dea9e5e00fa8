"""Key-aware adaptation: the conference's video cap follows the gateways' key budget.

Each gateway publishes, for its outbound direction, the payload bit rate its
key supply sustains (``GET /budget``: ``sustainable_payload_bps``, from the
KME's production rate) and the key it holds. :func:`choose_cap` turns both
directions' budgets into one room-wide video cap so that every direction's
media (its video streams at the cap plus audio, with headroom) fits the key
it gets; audio is never capped. :class:`Adapter` applies it with
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
AUDIO_BPS = 40_000
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
    budgets: Mapping[str, Mapping[str, Any] | None],
    loads: Mapping[str, DirectionLoad],
    *,
    default_bps: int = DEFAULT_VIDEO_BPS,
) -> int | None:
    """The room-wide video cap (bit/s) that fits every direction, or None (no cap).

    ``budgets`` maps a direction to its sending gateway's ``/budget`` answer
    (None: unknown, that direction does not constrain); ``loads`` says how
    many streams cross it.
    """
    cap = float(default_bps)
    for name, load in loads.items():
        b = budgets.get(name)
        if not b or load.video_streams <= 0:
            continue
        sustainable = float(b.get("sustainable_payload_bps") or 0.0)
        secs = b.get("seconds_of_key_at_consumption")
        if secs is not None and float(secs) < LOW_POOL_SECONDS:
            # the pool drains: fit what arrives, not what is still buffered
            sustainable *= 0.8
        room = HEADROOM * sustainable - load.audio_streams * AUDIO_BPS
        cap = min(cap, room / load.video_streams)
    if cap >= default_bps:
        return None
    return max(MIN_VIDEO_BPS, int(cap))


def changed(old: int | None, new: int | None) -> bool:
    if old is None or new is None:
        return old != new
    return abs(new - old) > STEP * old


@dataclass(slots=True)
class Adapter:
    """Applies :func:`choose_cap` to the room; records every change."""

    post_cap: Callable[[int | None], Awaitable[Any]]
    loads: Mapping[str, DirectionLoad]
    current: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.time)

    async def update(self, budgets: Mapping[str, Mapping[str, Any] | None]) -> int | None:
        cap = choose_cap(budgets, self.loads)
        if not changed(self.current, cap):
            return self.current
        try:
            await self.post_cap(cap)
        except Exception as exc:  # the conference may be restarting: retry next sample
            log.warning("setting the video cap failed: %s", exc)
            return self.current
        self.current = cap
        self.history.append({"t": time.time() - self.t0, "cap_bps": cap})
        log.info("video cap -> %s", cap)
        return cap
