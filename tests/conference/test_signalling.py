import json

import pytest

from qkdmeet.conference.signalling import (
    MAX_MESSAGE_BYTES,
    SignallingError,
    encode,
    error_message,
    parse_message,
)


def test_join_is_parsed_and_trimmed() -> None:
    msg = parse_message(
        json.dumps({"type": "join", "room": " ward ", "name": "Dr A", "secret": "s3cr3t"})
    )
    assert msg.type == "join"
    assert msg.fields == {"room": "ward", "name": "Dr A", "secret": "s3cr3t"}


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        "[1, 2]",
        json.dumps({"room": "x"}),
        json.dumps({"type": "dance"}),
        json.dumps({"type": "offer", "sdp": 5}),
        json.dumps({"type": "join", "room": "", "name": "a", "secret": "s"}),
        json.dumps({"type": "join", "room": "ward", "name": "a"}),  # no invite
        json.dumps({"type": "join", "room": "ward", "name": "a", "secret": ""}),
        json.dumps({"type": "join", "room": "ward", "name": "a", "secret": "s" * 300}),
        json.dumps({"type": "remove", "id": ""}),
        json.dumps({"type": "lock", "locked": "yes"}),
        json.dumps({"type": "hand"}),
        json.dumps({"type": "hand", "raised": "true"}),
        json.dumps({"type": "hand", "raised": 0}),
        json.dumps({"type": "mute_participant", "id": "p1"}),
        json.dumps({"type": "mute_participant", "kind": "audio"}),
        json.dumps({"type": "mute_participant", "id": "", "kind": "audio"}),
        json.dumps({"type": "mute_participant", "id": "p" * 65, "kind": "video"}),
        json.dumps({"type": "mute_participant", "id": "p1", "kind": "screen"}),
        json.dumps({"type": "mute_participant", "id": 7, "kind": "audio"}),
        json.dumps({"type": "chat", "text": ""}),
        json.dumps({"type": "mute", "kind": "screen", "muted": True}),
        json.dumps({"type": "mute", "kind": "audio", "muted": 1}),
        json.dumps({"type": "publish", "pc": "cam", "kind": "hologram", "sdp": "v=0"}),
        json.dumps({"type": "publish", "pc": "", "kind": "camera", "sdp": "v=0"}),
        json.dumps({"type": "publish", "pc": "cam", "kind": "camera", "sdp": " "}),
        json.dumps({"type": "answer", "pc": 3, "sdp": "v=0"}),
        json.dumps({"type": "unpublish"}),
        b"\xff\xfe",
        "x" * (MAX_MESSAGE_BYTES + 1),
    ],
)
def test_malformed_messages_raise_clear_error(raw: str | bytes) -> None:
    with pytest.raises(SignallingError) as info:
        parse_message(raw)
    assert str(info.value)
    reply = json.loads(error_message(str(info.value)))
    assert reply["type"] == "error" and reply["reason"] == str(info.value)


def test_protocol_messages_are_parsed() -> None:
    msg = parse_message(
        json.dumps({"type": "publish", "pc": "camera", "kind": "screen", "sdp": "v=0"})
    )
    assert msg.fields == {"pc": "camera", "kind": "screen", "sdp": "v=0"}
    assert parse_message('{"type": "unpublish", "pc": "screen"}').fields == {"pc": "screen"}
    assert parse_message('{"type": "leave", "extra": 1}').fields == {}
    assert json.loads(encode("bitrate", camera=1, screen=2, audio=3)) == {
        "type": "bitrate",
        "camera": 1,
        "screen": 2,
        "audio": 3,
    }


def test_meeting_control_messages_are_parsed() -> None:
    assert parse_message('{"type": "hand", "raised": true}').fields == {"raised": True}
    msg = parse_message('{"type": "mute_participant", "id": "p2", "kind": "video"}')
    assert msg.type == "mute_participant" and msg.fields == {"id": "p2", "kind": "video"}
