import pytest

from qkdmeet.conference.room import DEFAULT_BITRATES, MIN_BITRATE, Room, RoomError


def test_caps_combine_by_minimum() -> None:
    room = Room("ward")
    a, b = room.join("A"), room.join("B")
    assert a.id != b.id
    assert room.effective_bitrate(a.id, "camera") == DEFAULT_BITRATES["camera"]
    room.set_participant_cap(a.id, 300_000)
    room.set_room_cap(500_000)
    assert room.effective_bitrate(a.id, "camera") == 300_000
    assert room.effective_bitrate(b.id, "screen") == 500_000
    assert room.effective_bitrate(b.id, "audio") == DEFAULT_BITRATES["audio"]
    room.set_room_cap(MIN_BITRATE)
    assert room.effective_bitrate(b.id, "camera") == MIN_BITRATE
    assert room.effective_bitrate(b.id, "audio") == DEFAULT_BITRATES["audio"]  # audio kept
    room.set_room_cap(None)
    assert room.effective_bitrate(b.id, "screen") == DEFAULT_BITRATES["screen"]


def test_bad_requests_and_vanishing_participant() -> None:
    room = Room("ward")
    a = room.join("A")
    with pytest.raises(RoomError):
        room.set_participant_cap(a.id, MIN_BITRATE - 1)
    with pytest.raises(RoomError):
        room.set_room_cap(True)  # type: ignore[arg-type]
    with pytest.raises(RoomError):
        room.effective_bitrate(a.id, "hologram")
    assert room.leave(a.id) and not room.leave(a.id)
    with pytest.raises(RoomError):
        room.set_participant_cap(a.id, 100_000)
    b = room.join("B")
    assert room.effective_bitrate(b.id, "camera") == DEFAULT_BITRATES["camera"]


def test_room_audio_cap() -> None:
    from qkdmeet.conference.room import DEFAULT_BITRATES, MIN_AUDIO_BITRATE, Room, RoomError

    room = Room("ward")
    p = room.join("a")
    assert room.effective_bitrate(p.id, "audio") == DEFAULT_BITRATES["audio"]
    room.set_room_cap(50_000)  # the video cap leaves audio alone
    assert room.effective_bitrate(p.id, "audio") == DEFAULT_BITRATES["audio"]
    room.set_room_audio_cap(16_000)
    assert room.effective_bitrate(p.id, "audio") == 16_000
    assert room.effective_bitrate(p.id, "camera") == 50_000
    room.set_room_audio_cap(10**6)  # never above the default
    assert room.effective_bitrate(p.id, "audio") == DEFAULT_BITRATES["audio"]
    with pytest.raises(RoomError):
        room.set_room_audio_cap(MIN_AUDIO_BITRATE - 1)
    room.set_room_audio_cap(None)
    assert room.effective_bitrate(p.id, "audio") == DEFAULT_BITRATES["audio"]


def test_a_cap_of_zero_pauses_cameras_or_all_video_but_never_audio() -> None:
    room = Room("r")
    p = room.join("x")
    room.set_room_caps(None, None, 0)
    assert room.effective_bitrate(p.id, "camera") == 0
    assert room.effective_bitrate(p.id, "screen") == DEFAULT_BITRATES["screen"]
    room.set_room_caps(0, 16_000, None)
    assert room.effective_bitrate(p.id, "camera") == 0
    assert room.effective_bitrate(p.id, "screen") == 0
    assert room.effective_bitrate(p.id, "audio") == 16_000
    with pytest.raises(RoomError):
        room.set_room_caps(None, 0, None)  # audio cannot be paused
    with pytest.raises(RoomError):
        room.set_room_caps(None, None, 10)  # neither paused nor at the floor
    with pytest.raises(RoomError):
        room.set_participant_cap(p.id, 0)  # a participant's own cap does not pause
    # refused calls changed nothing
    assert (room.cap, room.audio_cap, room.camera_cap) == (0, 16_000, None)
