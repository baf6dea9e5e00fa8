"""Meeting controls through the protocol, with headless bots (PROTOCOL.md, "Meeting
controls"): the participant list, hands, moderator mutes, the active speaker, and
malformed control messages."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from qkdmeet.conference.bot import ConferenceBot
from qkdmeet.conference.server import ConferenceServer
from qkdmeet.conference.speaker import MIN_SWITCH_INTERVAL_S

from .conftest import MakeBot


async def until(predicate: Any, wait_s: float = 20.0) -> None:
    """Wait until predicate() holds (a deadline against hanging, not a timing check)."""
    async with asyncio.timeout(wait_s):
        while not predicate():  # noqa: ASYNC110 - polling media counters
            await asyncio.sleep(0.05)


def audio_frames(bot: ConferenceBot, publisher: ConferenceBot) -> int:
    rec = bot.received.get(f"{publisher.id}:camera:audio")
    return rec.stats.frames if rec else 0


def video_frames(bot: ConferenceBot, publisher: ConferenceBot) -> int:
    rec = bot.received.get(f"{publisher.id}:camera:video")
    return rec.stats.frames if rec else 0


async def test_the_participant_list_carries_mute_and_hand_state_to_late_joiners(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    alice, bob = await make_bot("Alice"), await make_bot("Bob")
    await alice.mute("video", True)
    await bob.raise_hand()
    await alice.wait_for("hand", id=bob.id, raised=True)
    await bob.wait_for("mute", id=alice.id, kind="video", muted=True)
    assert alice.participants[bob.id]["hand"] and bob.hand
    carol = await make_bot("Carol")  # joins later: the state comes with `joined`
    joined = await carol.wait_for("joined")
    listed = {p["id"]: p for p in joined["participants"]}
    assert listed[alice.id]["muted"] == {"audio": False, "video": True}
    assert listed[bob.id]["hand"] and listed[bob.id]["hand_at"] > 0
    assert not listed[alice.id]["hand"] and listed[alice.id]["hand_at"] is None
    assert carol.participants[alice.id]["muted"]["video"] and carol.participants[bob.id]["hand"]
    assert set(carol.participants) == {alice.id, bob.id, carol.id}
    # a hand is lowered as it was raised, and raising it twice says it once
    await bob.raise_hand()
    await bob.raise_hand(False)
    await carol.wait_for("hand", id=bob.id, raised=False)
    assert not carol.participants[bob.id]["hand"]
    assert sum(1 for m in alice.messages if m["type"] == "hand") == 2
    # the participants' HTTP API says the same
    room = server._member_json(server.rooms["ward"])
    assert {p["id"]: p["hand"] for p in room["participants"]} == {
        alice.id: False, bob.id: False, carol.id: False
    }


async def test_a_moderator_mutes_a_participant_who_obeys_and_the_server_enforces_it(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    chair = await make_bot("Chair", moderator=True)
    bob = await make_bot("Bob")
    carol = await make_bot("Carol")
    await until(lambda: audio_frames(carol, bob) > 25 and video_frames(carol, bob) > 10)

    await chair.mute_participant(bob.id, "audio")
    await carol.wait_for("mute", id=bob.id, kind="audio", muted=True, by=chair.id)
    await bob.wait_for("mute", id=bob.id, kind="audio", muted=True, by=chair.id)
    # Bob's client obeys (its tone is silenced) and knows who muted it
    assert bob.muted["audio"] and bob.muted_by["audio"] == chair.id
    assert bob.tone is not None and bob.tone.muted
    # and the server forwards none of Bob's audio, whatever his client does
    bob_session = server.rooms["ward"].sessions[bob.id]
    assert bob_session.participant is not None and bob_session.participant.held["audio"]
    audio = bob_session.publications["camera"].forwarders["audio"]
    assert audio.held
    await asyncio.sleep(0.3)  # what was in flight arrives
    held_at = audio_frames(carol, bob)
    await until(lambda: audio.frames_held > 25)
    assert audio_frames(carol, bob) <= held_at + 2
    assert video_frames(carol, bob) > 0 and not bob_session.publications["camera"].forwarders[
        "video"].held  # only the microphone

    # Bob unmutes himself: the hold is lifted, his audio flows again
    await bob.mute("audio", False)
    await carol.wait_for("mute", id=bob.id, kind="audio", muted=False)
    assert not audio.held and not bob.tone.muted and bob.muted_by["audio"] is None
    await until(lambda: audio_frames(carol, bob) > held_at + 25)

    # the camera likewise: held, and Bob's live camera pauses
    await chair.mute_participant(bob.id, "video")
    await bob.wait_for("mute", id=bob.id, kind="video", muted=True, by=chair.id)
    assert bob.muted["video"] and bob.camera is not None and bob.camera.paused
    video = bob_session.publications["camera"].forwarders["video"]
    assert video.held
    await bob.mute("video", False)
    await until(lambda: not video.held)
    seen = video_frames(carol, bob)
    await until(lambda: video_frames(carol, bob) > seen + 10)  # from the next keyframe on


async def test_moderator_controls_are_refused_to_others_and_nothing_happens(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    chair = await make_bot("Chair", moderator=True)
    bob = await make_bot("Bob")
    carol = await make_bot("Carol")
    for message in (
        {"type": "mute_participant", "id": carol.id, "kind": "audio"},
        {"type": "mute_participant", "id": chair.id, "kind": "video"},
        {"type": "remove", "id": carol.id},
        {"type": "lock", "locked": True},
    ):
        before = len(bob.errors)
        await bob.send_raw(json.dumps(message))
        await until(lambda before=before: len(bob.errors) > before)
        error = [m for m in bob.messages if m["type"] == "error"][-1]
        assert error["code"] == "forbidden", error
        assert error["reason"] == f"{message['type']}: only a moderator may do this"
    await bob.chat("still here")  # the connection stays open
    await carol.wait_for("chat", text="still here")
    state = server.rooms["ward"]
    assert not state.locked and set(state.sessions) == {chair.id, bob.id, carol.id}
    for s in state.sessions.values():
        assert s.participant is not None
        assert s.participant.held == {"audio": False, "video": False}
        assert not any(f.held for p in s.publications.values() for f in p.forwarders.values())
    assert not any(m["type"] == "mute" for m in carol.messages)
    assert not carol.muted["audio"] and not chair.muted["video"]


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ({"type": "hand"}, "invalid_field"),
        ({"type": "hand", "raised": "yes"}, "invalid_field"),
        ({"type": "hand", "raised": 1}, "invalid_field"),
        ({"type": "mute_participant", "kind": "audio"}, "invalid_field"),
        ({"type": "mute_participant", "id": "p1", "kind": "screen"}, "invalid_field"),
        ({"type": "mute_participant", "id": "", "kind": "audio"}, "invalid_field"),
        ({"type": "mute_participant", "id": "p" * 65, "kind": "audio"}, "invalid_field"),
        ({"type": "mute_participant", "id": ["p1"], "kind": "audio"}, "invalid_field"),
        ({"type": "mute_participant", "id": "nobody", "kind": "audio"}, "invalid_field"),
        ({"type": "remove", "id": "nobody"}, "invalid_field"),
        ({"type": "lock", "locked": None}, "invalid_field"),
        ({"type": "mute", "kind": "audio", "muted": "true"}, "invalid_field"),
    ],
)
async def test_malformed_control_messages_get_an_error_and_change_nothing(
    server: ConferenceServer, make_bot: MakeBot, message: dict[str, Any], code: str
) -> None:
    chair = await make_bot("Chair", moderator=True)  # a moderator: rights are not the issue
    bob = await make_bot("Bob")
    await chair.send_raw(json.dumps(message))
    error = await chair.wait_for("error")
    assert error["code"] == code and error["reason"], error
    assert "Traceback" not in error["reason"] and "Error" not in error["reason"]
    await chair.chat("after")
    await bob.wait_for("chat", text="after")
    state = server.rooms["ward"]
    assert not state.locked and set(state.sessions) == {chair.id, bob.id}
    assert not any(m["type"] in ("mute", "hand", "removed", "locked") for m in bob.messages)


async def test_the_active_speaker_follows_the_audio_levels_of_the_publishers(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    """A bot's tone carries its RFC 6464 level (about -15 dBov); a muted one sends
    silence (127). The server picks the speaker from the levels alone."""
    alice = await make_bot("Alice")
    bob = await make_bot("Bob")
    await bob.mute("audio", True)
    await alice.wait_for("speaker", id=alice.id)
    await bob.wait_for("speaker", id=alice.id)
    assert server.rooms["ward"].speaker.speaker == alice.id
    # the floor changes hands: Alice stops, Bob speaks
    await alice.mute("audio", True)
    await bob.mute("audio", False)
    await alice.wait_for("speaker", id=bob.id)
    assert bob.speaker == bob.id and alice.speaker == bob.id
    # a late joiner learns the current speaker with `joined`
    carol = await make_bot("Carol")
    assert (await carol.wait_for("joined"))["speaker"] == bob.id and carol.speaker == bob.id
    # reported on change only, and at most every MIN_SWITCH_INTERVAL_S
    await asyncio.sleep(1.0)
    speakers = [m["id"] for m in alice.messages if m["type"] == "speaker"]
    assert speakers == [alice.id, bob.id]
    # the speaker leaves: the floor is free
    await bob.stop()
    await alice.wait_for("speaker", id=None)
    assert MIN_SWITCH_INTERVAL_S <= 1.0


async def test_a_pre_encoded_microphone_carries_its_level_and_its_mute(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    """The load test's replayed Opus packets carry the tone's level as a browser's
    would (so the bench pays for the speaker detection), and silence when muted."""
    from dataclasses import replace

    from .conftest import SMALL

    replay = replace(SMALL, pre_encoded=True, clip_seconds=2.0, keyframe_interval_s=1.0)
    alice = await make_bot("Alice", options=replay)
    bob = await make_bot("Bob", options=replay)
    await bob.mute("audio", True)
    await bob.wait_for("speaker", id=alice.id)
    detector = server.rooms["ward"].speaker
    assert detector.packets > 0 and set(detector.scores()) == {alice.id}
