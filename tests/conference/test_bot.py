import fractions

import av
import numpy as np
import pytest

from qkdmeet.conference.bot import BotError, CappedOpusEncoder, CappedVp8Encoder, ConferenceBot
from qkdmeet.conference.room import MIN_BITRATE


def test_vp8_target_is_min_of_cap_and_remb() -> None:
    enc = CappedVp8Encoder(800_000)
    assert enc.target_bitrate == 800_000
    enc.target_bitrate = 300_000  # REMB from the server
    assert enc.target_bitrate == 300_000
    enc.cap = 100_000  # bitrate message from the server
    assert enc.target_bitrate == 100_000
    enc.cap = 1
    assert enc.target_bitrate == MIN_BITRATE
    frame = av.VideoFrame.from_ndarray(np.zeros((72, 64), dtype=np.uint8), format="yuv420p")
    frame.pts, frame.time_base = 0, fractions.Fraction(1, 90000)
    enc.cap = 200_000
    enc.target_bitrate = 10_000_000
    enc.encode(frame)
    assert enc.codec is not None and enc.codec.bit_rate == 200_000


def test_opus_cap_change_keeps_timestamps_increasing() -> None:
    enc = CappedOpusEncoder(40_000)
    samples = (1000 * np.sin(np.arange(960) / 10)).astype(np.int16).reshape(1, -1)
    stamps = []
    for i in range(20):
        if i == 10:
            enc.set_cap(16_000)
            assert enc.codec.bit_rate == 16_000
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, i * 960
        payloads, ts = enc.encode(frame)
        if payloads:
            stamps.append(ts)
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


async def test_bot_refuses_unreachable_server() -> None:
    bot = ConferenceBot("https://127.0.0.1:1", "ward", "A")
    with pytest.raises(BotError):
        await bot.start()
