"""The active-speaker detector (RFC 6464 levels in, the room's speaker out), on a fake clock."""

import itertools
from types import SimpleNamespace
from typing import Any

import pytest

from qkdmeet.conference.speaker import (
    MIN_SWITCH_INTERVAL_S,
    SILENCE_DBOV,
    SWITCH_RATIO,
    TICK_S,
    WINDOW_S,
    SpeakerDetector,
    tap_audio_level,
)

PACKET_S = 0.02  # one 20 ms Opus packet


def feed(
    detector: SpeakerDetector, levels: dict[str, int], start: float, seconds: float
) -> list[tuple[float, str]]:
    """Every participant sends a packet at ``levels[p]`` every 20 ms; the changes."""
    changes = []
    n = round(seconds / PACKET_S)
    for i in range(n):
        now = start + i * PACKET_S
        for participant, level in levels.items():
            speaker = detector.observe(participant, level, now)
            if speaker is not None:
                changes.append((now, speaker))
    return changes


def test_the_loud_participant_gets_the_floor_and_keeps_it_through_silence() -> None:
    d = SpeakerDetector()
    changes = feed(d, {"p1": 20, "p2": 127}, 0.0, 1.0)
    assert [who for _, who in changes] == ["p1"] and d.speaker == "p1"
    assert changes[0][0] <= TICK_S + PACKET_S  # found at the first evaluation
    # everyone silent: the last speaker keeps the floor, nothing is reported
    assert feed(d, {"p1": 127, "p2": 127}, 1.0, 3.0) == []
    assert d.speaker == "p1" and d.scores(4.0) == {}
    # the other one speaks: it takes the floor (p1 has been silent for a window)
    changes = feed(d, {"p1": 127, "p2": 30}, 4.0, 1.0)
    assert [who for _, who in changes] == ["p2"]


def test_silence_and_packets_below_the_threshold_never_take_the_floor() -> None:
    d = SpeakerDetector()
    assert feed(d, {"p1": SILENCE_DBOV, "p2": 127}, 0.0, 2.0) == []
    assert d.speaker is None and d.packets == 200


def test_a_challenger_must_be_clearly_louder_than_a_speaker_still_talking() -> None:
    d = SpeakerDetector()
    feed(d, {"p1": 30}, 0.0, 2.0)  # loudness 40
    assert d.speaker == "p1"
    # slightly louder (loudness 45 < 1.5 * 40): no switch
    assert feed(d, {"p1": 30, "p2": 25}, 2.0, 2.0) == []
    # much louder (loudness 65 >= 1.5 * 40): switch
    assert SWITCH_RATIO * (70 - 30) <= 70 - 5
    changes = feed(d, {"p1": 30, "p2": 5}, 4.0, 2.0)  # once its window is all loud
    assert [who for _, who in changes] == ["p2"]


def test_changes_are_rate_limited() -> None:
    """Two participants taking turns every 20 ms cannot make the speaker flap."""
    d = SpeakerDetector()
    changes = []
    for i in range(500):  # 10 s
        now = i * PACKET_S
        loud, quiet = ("p1", "p2") if (i // 1) % 2 else ("p2", "p1")
        for who, level in ((loud, 0), (quiet, 127)):
            if (s := d.observe(who, level, now)) is not None:
                changes.append((now, s))
    times = [t for t, _ in changes]
    assert all(b - a >= MIN_SWITCH_INTERVAL_S for a, b in itertools.pairwise(times))
    assert len(changes) <= 10 / MIN_SWITCH_INTERVAL_S + 1


def test_a_speaker_who_leaves_frees_the_floor() -> None:
    d = SpeakerDetector()
    feed(d, {"p1": 10, "p2": 40}, 0.0, 1.0)
    assert d.speaker == "p1"
    assert not d.forget("p2") and d.speaker == "p1"
    assert d.forget("p1") and d.speaker is None
    assert "p1" not in d.scores(1.0)
    # the window forgets: p2's last loud packet is over a window old
    assert d.scores(1.0 + WINDOW_S) == {}


def test_scores_are_the_mean_loudness_over_the_window() -> None:
    d = SpeakerDetector()
    feed(d, {"p1": 20}, 0.0, WINDOW_S)
    assert d.scores(WINDOW_S - PACKET_S / 2)["p1"] == pytest.approx(50 / PACKET_S, rel=0.02)


class _Receiver:
    def __init__(self) -> None:
        self.handled: list[Any] = []

    async def _handle_rtp_packet(self, packet: Any, arrival_time_ms: int) -> None:
        self.handled.append(packet)


async def test_the_tap_reads_the_extension_and_the_receiver_still_gets_every_packet() -> None:
    receiver = _Receiver()
    seen: list[tuple[bool, int]] = []
    tap_audio_level(receiver, lambda vad, level: seen.append((vad, level)))
    loud = SimpleNamespace(extensions=SimpleNamespace(audio_level=(True, 12)))
    plain = SimpleNamespace(extensions=SimpleNamespace(audio_level=None))
    await receiver._handle_rtp_packet(loud, arrival_time_ms=1)
    await receiver._handle_rtp_packet(plain, arrival_time_ms=2)
    assert seen == [(True, 12)] and receiver.handled == [loud, plain]

    def broken(vad: bool, level: int) -> None:
        raise RuntimeError("detector bug")

    receiver = _Receiver()
    tap_audio_level(receiver, broken)  # a failing detector never stops the media
    await receiver._handle_rtp_packet(loud, arrival_time_ms=3)
    assert receiver.handled == [loud]
