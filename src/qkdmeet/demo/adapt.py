"""Key-aware adaptation: the conference's video cap follows the gateways' key budget.

Both directions' key comes from one QKD link. :func:`choose_cap` turns the
link's key rate (as payload bit rate) and the gateways' key pools
(``GET /budget``: key buffered, consumption) into one room-wide video cap so
that the media of both directions together (video streams at the cap plus
audio, with headroom) fits the key produced. :func:`choose_caps` adds the
tiers below the video floor: lean Opus audio, then the cameras paused (screen
shares and audio go on), then audio only; a better tier returns only with key
to spare. :class:`Adapter` applies them with ``POST /api/rooms/{room}/cap``
when they change (the video cap by more than a step), and lifts the caps
(``null``) when key is plentiful again. The gateways fail closed on
their own: the cap only avoids spending key on packets that would be dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

#: Fraction of the sustainable payload rate the media may use (the KMEs'
#: stock absorbs the link's block-by-block delivery; a stock under
#: LOW_POOL_SECONDS tightens it further).
HEADROOM = 0.85
#: Below this the video is paused in effect (an encoder floor), audio continues.
MIN_VIDEO_BPS = 30_000
#: Default per-stream video rate; a cap at or above it is lifted.
DEFAULT_VIDEO_BPS = 1_000_000
#: What one audio stream costs its direction, in payload bit/s at the budget's
#: key efficiency. Measured in the 80 km demo with audio only: 16 kb/s of Opus
#: in 20 ms packets cost 66 kb/s of key per direction (57 packets/s of about
#: 109 bytes: RTP/SRTP/UDP/IP headers, RTCP, and the VPN's 32-byte mask per
#: packet); full-rate audio (40 kb/s Opus, 20 ms) adds the 24 kb/s between.
AUDIO_BPS = 88_000
#: The lean audio tier, when the key cannot carry the video floor beside full audio:
#: Opus at 16 kb/s (speech stays clear) in 60 ms packets ...
AUDIO_LEAN_BPS = 16_000
#: ... which costs its direction 40 kb/s of key (measured in the 80 km demo,
#: audio only, 23 packets/s with RTCP: 40.4 and 39.5 kb/s; in 20 ms packets
#: it was 66 kb/s).
AUDIO_LEAN_WIRE_BPS = 40_000
#: Factor of key to spare before lean audio returns to full rate.
LEAN_HYSTERESIS = 1.1
#: Seconds of buffered key under which the pool counts as draining.
LOW_POOL_SECONDS = 3.0
#: Relative change that triggers a new cap.
STEP = 0.2


@dataclass(frozen=True, slots=True)
class DirectionLoad:
    """What one direction carries: video streams and audio streams."""

    video_streams: int
    audio_streams: int
    #: How many of the video streams are cameras (the rest: screen shares).
    camera_streams: int | None = None

    @property
    def cameras(self) -> int:
        return self.video_streams if self.camera_streams is None else self.camera_streams


def media_budget(
    link_payload_bps: float, pool_seconds: Mapping[str, float | None] | None = None
) -> float:
    """Payload bit/s the media of all directions may use: :data:`HEADROOM` of what
    the link's key carries, less while any pool drains (under
    :data:`LOW_POOL_SECONDS` of its consumption)."""
    budget = HEADROOM * max(0.0, link_payload_bps)
    if any(s is not None and s < LOW_POOL_SECONDS for s in (pool_seconds or {}).values()):
        budget *= 0.8  # the pool drains: fit what arrives, not what is still buffered
    return budget


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
    budget = media_budget(link_payload_bps, pool_seconds)
    cap = (budget - audio * AUDIO_BPS) / video
    if cap >= default_bps:
        return None
    return max(MIN_VIDEO_BPS, int(cap))


class Caps(NamedTuple):
    """The room's caps in bit/s: ``None`` no cap, ``0`` paused (video only)."""

    video: int | None
    audio: int | None = None
    camera: int | None = None


#: The tiers, best first: video capped (or not), + lean audio, + cameras paused
#: (screen shares and audio go on), audio only.
TIER_FULL, TIER_LEAN_AUDIO, TIER_CAMERAS_PAUSED, TIER_AUDIO_ONLY = range(4)


def _tier(budget: float, video: int, cameras: int, audio: int) -> int:
    """The best tier whose floor fits ``budget`` (bit/s of payload)."""
    if (budget - audio * AUDIO_BPS) / video >= MIN_VIDEO_BPS:
        return TIER_FULL
    if (budget - audio * AUDIO_LEAN_WIRE_BPS) / video >= MIN_VIDEO_BPS:
        return TIER_LEAN_AUDIO
    screens = video - cameras
    if screens > 0 and (budget - audio * AUDIO_LEAN_WIRE_BPS) / screens >= MIN_VIDEO_BPS:
        return TIER_CAMERAS_PAUSED
    return TIER_AUDIO_ONLY


def tier_of(caps: Caps) -> int:
    if caps.video == 0:
        return TIER_AUDIO_ONLY
    if caps.camera == 0:
        return TIER_CAMERAS_PAUSED
    return TIER_LEAN_AUDIO if caps.audio is not None else TIER_FULL


def choose_caps(
    link_payload_bps: float,
    loads: Mapping[str, DirectionLoad],
    pool_seconds: Mapping[str, float | None] | None = None,
    *,
    default_bps: int = DEFAULT_VIDEO_BPS,
    tier_now: int = TIER_FULL,
) -> Caps:
    """The room's video, audio and camera caps for the key supply.

    Tiers, while the key cannot carry the one before: video capped as
    :func:`choose_cap` (audio at full rate); audio at :data:`AUDIO_LEAN_BPS`
    with the video at least at the floor; cameras paused (``camera = 0``) so
    that the screen shares (the documents under discussion) keep the floor
    beside lean audio; every video paused (``video = 0``): audio only. A tier
    better than ``tier_now`` is taken only once it fits with
    :data:`LEAN_HYSTERESIS` to spare, so that the media do not flip with every
    block the link delivers.
    """
    video = sum(load.video_streams for load in loads.values())
    audio = sum(load.audio_streams for load in loads.values())
    cameras = sum(load.cameras for load in loads.values())
    if video <= 0:
        return Caps(None)
    budget = media_budget(link_payload_bps, pool_seconds)
    tier = _tier(budget, video, cameras, audio)
    if tier < tier_now:
        tier = min(tier_now, _tier(budget / LEAN_HYSTERESIS, video, cameras, audio))
    if tier == TIER_FULL:
        return Caps(choose_cap(link_payload_bps, loads, pool_seconds, default_bps=default_bps))
    if tier == TIER_LEAN_AUDIO:
        lean = (budget - audio * AUDIO_LEAN_WIRE_BPS) / video
        return Caps(max(MIN_VIDEO_BPS, int(min(lean, default_bps))), AUDIO_LEAN_BPS)
    if tier == TIER_CAMERAS_PAUSED:
        screen = (budget - audio * AUDIO_LEAN_WIRE_BPS) / (video - cameras)
        return Caps(max(MIN_VIDEO_BPS, int(min(screen, default_bps))), AUDIO_LEAN_BPS, 0)
    return Caps(0, AUDIO_LEAN_BPS, 0)


def changed(old: int | None, new: int | None) -> bool:
    if old is None or new is None:
        return old != new
    if new in (0, MIN_VIDEO_BPS) or old == 0:
        return new != old  # reaching the floor is always applied
    return abs(new - old) > STEP * old


@dataclass(slots=True)
class Adapter:
    """Applies :func:`choose_caps` to the room; records every change."""

    post_cap: Callable[[Caps], Awaitable[Any]]
    loads: Mapping[str, DirectionLoad]
    caps: Caps = field(default_factory=lambda: Caps(None))
    history: list[dict[str, Any]] = field(default_factory=list)
    t0: float = field(default_factory=time.time)

    @property
    def current(self) -> int | None:
        return self.caps.video

    async def update(self, link_payload_bps: float,
                     pool_seconds: Mapping[str, float | None] | None = None) -> int | None:
        new = choose_caps(link_payload_bps, self.loads, pool_seconds,
                          tier_now=tier_of(self.caps))
        old = self.caps
        if not changed(old.video, new.video) and (new.audio, new.camera) == (old.audio, old.camera):
            return old.video
        try:
            await self.post_cap(new)
        except Exception as exc:  # the conference may be restarting: retry next sample
            log.warning("setting the video cap failed: %s", exc)
            return old.video
        self.caps = new
        self.history.append({"t": time.time() - self.t0, "cap_bps": new.video,
                             "audio_cap_bps": new.audio, "camera_cap_bps": new.camera})
        log.info("caps -> video %s, audio %s, camera %s", new.video, new.audio, new.camera)
        return new.video

    def plotted(self, t_end: float) -> list[tuple[str, float, float]]:
        """The caps as ``(stream, time, bit/s)`` points for the run's bitrates plot, in
        seconds of the same epoch as ``time.time()``.

        A cap holds from its change to the next one, so each stream's last cap is
        repeated at ``t_end`` (the run's end): drawn as steps, the line reaches
        the end of the run, not only the last change. No cap is drawn as the
        camera's default rate, a paused camera (``camera == 0``) at 0, and a
        camera without a camera cap follows the video cap.
        """
        points: list[tuple[str, float, float]] = []
        for h in self.history:
            video, camera = h["cap_bps"], h.get("camera_cap_bps")
            shown = float(DEFAULT_VIDEO_BPS if video is None else video)
            t = self.t0 + h["t"]
            points += [("video cap", t, shown), ("camera cap", t, 0.0 if camera == 0 else shown)]
        if points and t_end > points[-1][1]:
            points += [(stream, t_end, bps) for stream, _, bps in points[-2:]]
        return points
