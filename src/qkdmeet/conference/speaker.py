"""Active speaker from the RTP audio-level header extension: no audio is decoded.

Browsers (and aiortc) mark every audio packet with its level (RFC 6464,
``urn:ietf:params:rtp-hdrext:ssrc-audio-level``): a voice-activity flag and the
level of the packet's samples in -dBov, 0 (full scale) to 127 (silence). aiortc
parses the extension into ``packet.extensions.audio_level`` = ``(vad, level)``
before the packet reaches its receiver; :func:`tap_audio_level` reads it there,
on the server's leg from the publisher: one attribute read per received audio
packet, none per forwarded one.

Selection, per room (:class:`SpeakerDetector`)::

    packet (participant, level) --> loudness = max(0, SILENCE_DBOV - level)
        (only loud packets are kept: a window of WINDOW_S per participant)
    every TICK_S (driven by packet arrival):
        score(participant) = sum of its loudness in the window / WINDOW_S
        the loudest score wins the floor when
            - nobody holds it, or
            - the holder's score is 0 (silent for a whole window), or
            - it is SWITCH_RATIO times the holder's score,
        and the holder got the floor at least MIN_SWITCH_INTERVAL_S ago.

The floor is kept through silence (the last one who spoke stays the active
speaker, as in Jitsi Meet), and lost only to another speaker or when the holder
leaves (:meth:`SpeakerDetector.forget`). A change is reported at most once per
:data:`MIN_SWITCH_INTERVAL_S`, so the room hears of it at most that often.

Muted participants are not fed to the detector by the server (a muted browser
track sends silence anyway); packets without the extension are not counted.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from qkdmeet.conference import aiortc_hooks as hooks

logger = logging.getLogger(__name__)

#: -dBov at and below which a packet counts as silence (RFC 6464's 127 is digital
#: silence; a quiet room is around -60 dBov, speech -40..-15 dBov).
SILENCE_DBOV = 70
#: Seconds of packets a participant's score is taken over.
WINDOW_S = 1.5
#: Seconds between two evaluations of the room (at packet arrival).
TICK_S = 0.25
#: A challenger takes the floor from a speaker still talking only this much louder.
SWITCH_RATIO = 1.5
#: The fewest seconds between two changes of the active speaker.
MIN_SWITCH_INTERVAL_S = 0.5

#: Called with (vad, level in -dBov) of each audio packet that carries the extension.
LevelCallback = Callable[[bool, int], None]


class _Levels:
    """One participant's loud packets within the window, and their running sum."""

    __slots__ = ("packets", "total")

    def __init__(self) -> None:
        self.packets: deque[tuple[float, int]] = deque()
        self.total = 0

    def expire(self, before: float) -> None:
        packets = self.packets
        while packets and packets[0][0] < before:
            self.total -= packets.popleft()[1]


class SpeakerDetector:
    """The active speaker of one room, from the audio levels of its publishers.

    :meth:`observe` is called per audio packet and returns the new speaker's id
    when the floor changes (at most once per :data:`MIN_SWITCH_INTERVAL_S`),
    else None. Times are ``time.monotonic()`` unless given (tests).
    """

    def __init__(self) -> None:
        self.speaker: str | None = None
        self.changes = 0
        self.packets = 0
        self._levels: dict[str, _Levels] = {}
        self._next_tick = 0.0
        self._switched_at = -MIN_SWITCH_INTERVAL_S

    def observe(self, participant: str, level: int, now: float | None = None) -> str | None:
        """Count one audio packet of ``participant`` at ``level`` (-dBov, 0..127)."""
        now = time.monotonic() if now is None else now
        self.packets += 1
        loudness = SILENCE_DBOV - level
        if loudness > 0:
            levels = self._levels.get(participant)
            if levels is None:
                levels = self._levels[participant] = _Levels()
            levels.packets.append((now, loudness))
            levels.total += loudness
        if now < self._next_tick:
            return None
        self._next_tick = now + TICK_S
        return self._evaluate(now)

    def scores(self, now: float | None = None) -> dict[str, float]:
        """Each participant's current score (mean loudness above silence per second)."""
        now = time.monotonic() if now is None else now
        out = {}
        for participant, levels in list(self._levels.items()):
            levels.expire(now - WINDOW_S)
            if not levels.packets:
                del self._levels[participant]
                continue
            out[participant] = levels.total / WINDOW_S
        return out

    def _evaluate(self, now: float) -> str | None:
        if now - self._switched_at < MIN_SWITCH_INTERVAL_S:
            return None
        scores = self.scores(now)
        if not scores:
            return None
        best = max(scores, key=scores.__getitem__)
        if best == self.speaker:
            return None
        held = scores.get(self.speaker, 0.0) if self.speaker is not None else 0.0
        if held > 0 and scores[best] < SWITCH_RATIO * held:
            return None
        self.speaker = best
        self._switched_at = now
        self.changes += 1
        return best

    def forget(self, participant: str) -> bool:
        """Drop a participant (left, or stopped publishing audio); True when it held
        the floor, which is then free."""
        self._levels.pop(participant, None)
        if self.speaker != participant:
            return False
        self.speaker = None
        return True


def tap_audio_level(receiver: Any, callback: LevelCallback) -> None:
    """Call ``callback(vad, level)`` for every RTP packet of ``receiver`` that carries
    the audio-level extension, before aiortc handles the packet as usual.

    The receiver's packet handler is replaced on the instance by a plain function
    that returns the original coroutine: no extra coroutine per packet.
    """

    def read_level(packet: Any) -> None:
        level = packet.extensions.audio_level
        if level is not None:
            try:
                callback(bool(level[0]), int(level[1]))
            except Exception:  # the media path goes on whatever the detector does
                logger.exception("audio level callback failed")

    hooks.wrap_rtp_handler(receiver, read_level)
