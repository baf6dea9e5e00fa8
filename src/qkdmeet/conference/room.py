"""Rooms, participants and bitrate caps (no media; the server drives it).

A participant's effective video cap is the smallest of its stream type's default,
its own cap and the room-wide cap (set by the server's HTTP API, e.g. from the
QKD-VPN key budget). The participant and room video caps apply to camera and
screen; audio has its own room-wide cap (``audio_cap``), which the key-aware
adaptation sets only when the key cannot carry even the video floor beside
full-rate audio: the conference then stays audible at a lean Opus rate.

A room cap of ``0`` pauses: ``camera_cap = 0`` pauses every camera (screen
shares and audio go on), ``cap = 0`` pauses cameras and screen shares. It is
the key-aware adaptation's last video tier, for a key supply that cannot
carry even the encoders' floor (:data:`MIN_BITRATE`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from qkdmeet.errors import ConferenceError

# Default send bitrates in bit/s per stream type.
DEFAULT_BITRATES: dict[str, int] = {"camera": 800_000, "screen": 1_200_000, "audio": 40_000}
MIN_BITRATE = 30_000
#: The lowest audio cap (Opus still carries speech at 8 kb/s).
MIN_AUDIO_BITRATE = 8_000


class RoomError(ConferenceError, ValueError):
    """Bad request against a room (unknown participant, invalid cap)."""


@dataclass
class Participant:
    id: str
    name: str
    cap: int | None = None
    #: what the participant says it sends (its own ``mute`` messages)
    muted: dict[str, bool] = field(default_factory=lambda: {"audio": False, "video": False})
    #: muted by a moderator: the server forwards none of that kind from the
    #: participant's camera until the participant unmutes it
    held: dict[str, bool] = field(default_factory=lambda: {"audio": False, "video": False})
    #: when the participant raised its hand (``time.time()``), None when lowered
    hand: float | None = None

    def public(self) -> dict[str, object]:
        """What every member of the room sees of this participant (the list)."""
        return {
            "id": self.id,
            "name": self.name,
            "muted": dict(self.muted),
            "hand": self.hand is not None,
            "hand_at": self.hand,
        }


@dataclass
class Room:
    name: str
    cap: int | None = None
    audio_cap: int | None = None
    camera_cap: int | None = None
    participants: dict[str, Participant] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def join(self, name: str) -> Participant:
        p = Participant(id=f"p{next(self._ids)}", name=name)
        self.participants[p.id] = p
        return p

    def leave(self, participant_id: str) -> bool:
        """Remove a participant; False when it was already gone (vanished twice)."""
        return self.participants.pop(participant_id, None) is not None

    def get(self, participant_id: str) -> Participant:
        try:
            return self.participants[participant_id]
        except KeyError:
            raise RoomError(f"no participant {participant_id!r} in room {self.name!r}") from None

    def set_participant_cap(self, participant_id: str, bps: int | None) -> None:
        self.get(participant_id).cap = _valid_cap(bps)

    def set_room_cap(self, bps: int | None) -> None:
        self.cap = _valid_cap(bps, pause=True)

    def set_room_audio_cap(self, bps: int | None) -> None:
        self.audio_cap = _valid_cap(bps, MIN_AUDIO_BITRATE)

    def set_room_caps(
        self, video_bps: int | None, audio_bps: int | None, camera_bps: int | None = None
    ) -> None:
        """The room caps at once: none changes unless all are valid."""
        video = _valid_cap(video_bps, pause=True)
        audio = _valid_cap(audio_bps, MIN_AUDIO_BITRATE)
        camera = _valid_cap(camera_bps, pause=True)
        self.cap, self.audio_cap, self.camera_cap = video, audio, camera

    def effective_bitrate(self, participant_id: str, stream: str) -> int:
        """The bitrate (bit/s) this participant should send for a stream type."""
        if stream not in DEFAULT_BITRATES:
            raise RoomError(f"unknown stream type {stream!r}")
        caps = [DEFAULT_BITRATES[stream]]
        p = self.get(participant_id)
        if stream == "audio":
            return min(caps[0], self.audio_cap) if self.audio_cap is not None else caps[0]
        caps += [c for c in (p.cap, self.cap) if c is not None]
        if stream == "camera" and self.camera_cap is not None:
            caps.append(self.camera_cap)
        return min(caps)  # 0: paused


def _valid_cap(bps: int | None, least: int = MIN_BITRATE, *, pause: bool = False) -> int | None:
    if bps is None:
        return None
    paused = pause and bps == 0
    if isinstance(bps, bool) or not isinstance(bps, int) or (bps < least and not paused):
        also = " or 0 (pause)" if pause else ""
        raise RoomError(f"bitrate cap must be an integer >= {least} bit/s{also}")
    return bps
