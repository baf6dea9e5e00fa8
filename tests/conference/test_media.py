import fractions
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.mediastreams import MediaStreamError

from qkdmeet.conference.forwarding import is_vp8_keyframe
from qkdmeet.conference.media import (
    AUDIO_SAMPLES,
    MAX_CLIP_FRAMES,
    EncodedClip,
    ReplayAudioTrack,
    ReplayVideoTrack,
    SlidesTrack,
    TestPatternTrack,
    ToneTrack,
    cached_clip,
    cached_tone_clip,
    encode_clip,
    luma,
    read_frame_code,
    render_slides,
    replay_counter,
    split_replay_counter,
    write_frame_code,
)


async def test_frame_code_survives_low_bitrate_vp8() -> None:
    track = TestPatternTrack(320, 240, fps=1000)
    enc = Vp8Encoder()
    enc.target_bitrate = 100_000
    dec = av.CodecContext.create("libvpx", "r")
    read = []
    for _ in range(10):
        frame = await track.recv()
        payloads, _ = enc.encode(frame)
        for decoded in dec.decode(av.Packet(b"".join(vp8_depayload(p) for p in payloads))):
            code = read_frame_code(luma(decoded))
            assert code is not None
            read.append(code[0])
    assert read == list(range(10))


def test_frame_code_rejects_corruption_and_small_frames() -> None:
    y = np.zeros((240, 320), dtype=np.uint8)
    write_frame_code(y, 77, 123456789)
    assert read_frame_code(y) == (77, 123456789)
    y[8:16, 120:128] = 255 - y[8:16, 120:128]  # flip one counter bit
    assert read_frame_code(y) is None
    with pytest.raises(ValueError):
        write_frame_code(np.zeros((100, 100), dtype=np.uint8), 1, 1)
    with pytest.raises(ValueError):
        TestPatternTrack(321, 240)


async def test_tone_and_slides() -> None:
    tone = ToneTrack()
    frames = [await tone.recv() for _ in range(3)]
    assert [f.pts for f in frames] == [0, AUDIO_SAMPLES, 2 * AUDIO_SAMPLES]
    assert frames[0].samples == AUDIO_SAMPLES and frames[0].sample_rate == 48000
    slides = render_slides(320, 180)
    assert len(slides) == 4 and all(s.shape == (180, 320) for s in slides)
    assert len({s.tobytes() for s in slides}) == 4  # four different slides
    share = SlidesTrack(320, 180, fps=1000, seconds_per_slide=0.001)
    f0, f1 = await share.recv(), await share.recv()
    assert read_frame_code(f0.to_ndarray(format="gray")) is not None
    assert (
        f0.to_ndarray(format="gray")[100:].tobytes() != f1.to_ndarray(format="gray")[100:].tobytes()
    )


def test_replay_counter_round_trip_and_live_counters_untouched() -> None:
    assert split_replay_counter(replay_counter(0, 150)) == (0, 150)
    assert split_replay_counter(replay_counter(149, 150)) == (149, 150)
    assert split_replay_counter(123456) is None  # a live frame counter
    with pytest.raises(ValueError):
        replay_counter(150, 150)
    with pytest.raises(ValueError):
        replay_counter(0, MAX_CLIP_FRAMES + 1)


async def test_replay_track_yields_vp8_packets_keyframe_first_pts_increasing(
    tmp_path: Path,
) -> None:
    clip = encode_clip(320, 240, fps=15.0, frames=20, keyframe_interval=10, bitrate=300_000)
    assert len(clip.frames) == 20 and clip.keyframes == [0, 10]
    path = tmp_path / "clip.bin"
    clip.save(path)
    assert EncodedClip.load(path) == clip
    assert (
        cached_clip(
            path, width=320, height=240, fps=15.0, frames=20, keyframe_interval=10, bitrate=300_000
        )
        == clip
    )

    track = ReplayVideoTrack(clip)
    track.fps = 1000.0  # pace fast: this test checks content, not timing
    dec = av.CodecContext.create("libvpx", "r")
    packets = [await track.recv() for _ in range(45)]  # more than two loops
    assert all(isinstance(p, av.Packet) for p in packets)
    assert is_vp8_keyframe(bytes(packets[0]))
    pts = [int(p.pts or 0) for p in packets]
    assert pts == [n * 6000 for n in range(45)]  # 90 kHz, 15 fps, continuous across loops
    assert all(p.time_base == fractions.Fraction(1, 90000) for p in packets)
    codes = []
    for p in packets:
        for frame in dec.decode(p):
            code = read_frame_code(luma(frame))
            assert code is not None
            codes.append(code)
    assert [split_replay_counter(c) for c, _ in codes] == [(n % 20, 20) for n in range(45)]
    assert all(sent_ms == 0 for _, sent_ms in codes)  # no (stale) send time
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


def test_clip_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        encode_clip(320, 240, frames=1)
    with pytest.raises(ValueError):
        EncodedClip(320, 240, 15.0, 300_000, 10, (b"\x01" * 20,))  # not a keyframe
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a clip")
    with pytest.raises(ValueError):
        EncodedClip.load(bad)


async def test_replay_audio_track_loops_opus_packets_with_48khz_pts() -> None:
    packets = cached_tone_clip(50, 40_000)
    assert len(packets) == 50 and cached_tone_clip(50, 40_000) is packets
    track = ReplayAudioTrack(packets)
    track._start = -1e9  # no pacing: frames are all due
    out = [await track.recv() for _ in range(120)]
    assert [int(p.pts or 0) for p in out] == [n * AUDIO_SAMPLES for n in range(120)]
    assert bytes(out[50]) == packets[0] and bytes(out[119]) == packets[19]
    dec = av.CodecContext.create("libopus", "r")
    assert sum(f.samples for p in out[:10] for f in dec.decode(p)) == 10 * AUDIO_SAMPLES
