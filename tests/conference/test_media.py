import av
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload

from qkdmeet.conference.media import (
    AUDIO_SAMPLES,
    SlidesTrack,
    TestPatternTrack,
    ToneTrack,
    luma,
    read_frame_code,
    render_slides,
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
