import asyncio
import fractions
import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import VpxPayloadDescriptor

from qkdmeet.conference.bot import (
    HALF_RESOLUTION_BELOW_BPS,
    BotError,
    CappedOpusEncoder,
    CappedVp8Encoder,
    ConferenceBot,
    _Received,
)
from qkdmeet.conference.media import (
    ReplayAudioTrack,
    ReplayVideoTrack,
    luma,
    opus_packet_samples,
    read_frame_code,
    replay_counter,
    write_frame_code,
)
from qkdmeet.conference.room import MIN_BITRATE
from qkdmeet.conference.server import ConferenceServer

from .conftest import SMALL, MakeBot


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


def test_vp8_halves_the_picture_under_a_low_cap_and_reads_its_code() -> None:
    enc = CappedVp8Encoder(800_000)
    y = np.full((480, 640), 128, dtype=np.uint8)
    write_frame_code(y, 41, 1234)
    planes = np.concatenate([y, np.full((240, 640), 128, dtype=np.uint8)])
    frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
    frame.pts, frame.time_base = 0, fractions.Fraction(1, 90000)
    enc.encode(frame)
    assert enc.codec is not None and (enc.codec.width, enc.codec.height) == (640, 480)
    enc.cap = HALF_RESOLUTION_BELOW_BPS - 1
    payloads, _ = enc.encode(frame, force_keyframe=True)
    assert (enc.codec.width, enc.codec.height) == (320, 240)
    # the keyframe decodes to a 320x240 picture whose frame code still reads
    data = b"".join(VpxPayloadDescriptor.parse(p)[1] for p in payloads)
    decoded = av.CodecContext.create("libvpx", "r").decode(av.Packet(data))
    assert decoded and (decoded[0].width, decoded[0].height) == (320, 240)
    assert read_frame_code(luma(decoded[0])) == (41, 1234)
    enc.cap = 800_000
    enc.encode(frame)
    assert (enc.codec.width, enc.codec.height) == (640, 480)


def test_opus_cap_change_keeps_timestamps_increasing() -> None:
    enc = CappedOpusEncoder(40_000)
    samples = (1000 * np.sin(np.arange(960) / 10)).astype(np.int16).reshape(1, -1)
    stamps: list[int] = []
    durations: list[int] = []
    for i in range(40):
        if i == 10:
            enc.set_cap(16_000)
            assert enc.codec.bit_rate == 16_000
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, i * 960
        payloads, ts = enc.encode(frame)
        if payloads:
            stamps.append(ts)
            durations.append(opus_packet_samples(payloads[0]))
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    # the lean rate sends 60 ms packets, and the RTP clock follows their length
    assert durations[0] == 960 and durations[-1] == 2880
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    assert steps[:8] == [960] * 8 and steps[-2:] == [2880, 2880]


def test_opus_packet_samples_reads_the_toc() -> None:
    assert opus_packet_samples(b"") == 0
    assert opus_packet_samples(bytes([15 << 3 | 0])) == 960  # hybrid 20 ms, one frame
    assert opus_packet_samples(bytes([15 << 3 | 1, 0])) == 1920  # two frames
    assert opus_packet_samples(bytes([15 << 3 | 3, 3])) == 2880  # code 3: three frames
    assert opus_packet_samples(bytes([3 << 3 | 0])) == 2880  # SILK 60 ms
    assert opus_packet_samples(bytes([16 << 3 | 0])) == 120  # CELT 2.5 ms
    assert opus_packet_samples(bytes([15 << 3 | 3])) == 0  # code 3 without its count byte


def test_a_60_ms_packet_counts_three_audio_frames_without_loss() -> None:
    rec = _Received("p1", "A", "camera", "audio")
    for i in range(10):
        rec.record_encoded(1000 + i * 2880, 960, float(i), 120, frames=3)
    assert rec.stats.frames == 30 and rec.stats.lost == 0


async def test_bot_refuses_unreachable_server() -> None:
    bot = ConferenceBot("https://127.0.0.1:1/?room=ward#invite=x", None, "A")
    with pytest.raises(BotError, match=r"cannot connect .* \(3 attempts\)"):
        await bot.start(wait_s=2.5)


async def test_bot_needs_an_invite() -> None:
    bot = ConferenceBot("https://127.0.0.1:1", "ward", "A")
    with pytest.raises(BotError, match="no invite"):
        await bot.start(wait_s=2.5)
    with pytest.raises(ValueError, match="room"):
        ConferenceBot("https://127.0.0.1:1/?room=ward#invite=x", "icu", "A")


async def test_bot_joins_a_server_that_comes_up_late(tmp_path: Any) -> None:
    """As in the demo, where the server is reachable only once the QKD-VPN has key."""
    import socket

    from qkdmeet.conference.config import ServerConfig

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # a room the operator created before the server started (the registry keeps hashes)
    from qkdmeet.conference.access import RoomRegistry

    invite = RoomRegistry(tmp_path / "state" / "rooms.json").create("ward")
    url = invite.urls(f"https://127.0.0.1:{port}")["invite_url"]
    bot = ConferenceBot(url, None, "A", SMALL)
    joining = asyncio.ensure_future(bot.start(wait_s=15.0))
    await asyncio.sleep(1.5)
    assert not joining.done()
    server = ConferenceServer(ServerConfig(port=port, state_dir=tmp_path / "state"))
    await server.start()
    try:
        await asyncio.wait_for(joining, 15.0)
        assert bot.id is not None
    finally:
        await bot.stop()
        await server.stop()


def test_replay_wrap_counts_no_loss_and_no_latency() -> None:
    rec = _Received("p", "P", "camera", "video")
    for n in range(3 * 150 + 7):  # three wraps of a 150-frame loop
        rec.record_code(replay_counter(n % 150, 150), 0, 100.0 + n / 15, 1000)
    assert rec.stats.frames == 457 and rec.stats.lost == 0 and rec.stats.reordered == 0
    assert rec.stats.last_counter == 456 and rec.replayed == 457
    assert rec.stats.latencies == []  # a replayed send time is stale: no latency
    # frames missing at the wrap are those frames lost, not a loop's worth
    rec = _Received("p", "P", "camera", "video")
    for index in [*range(148), 149, 1, 2]:  # 148 and 0 lost
        rec.record_code(replay_counter(index, 150), 0, 100.0 + index / 15, 1000)
    assert rec.stats.lost == 2 and rec.stats.last_counter == 152


def test_encoded_frame_counter_crosses_rtp_timestamp_wrap() -> None:
    rec = _Received("p", "P", "camera", "video")
    start = (1 << 32) - 5 * 6000  # the sender's random RTP origin, close to the wrap
    for n in range(20):
        rec.record_encoded((start + n * 6000) % (1 << 32), 6000, 100.0 + n / 15, 1000)
    assert rec.stats.frames == 20 and rec.stats.lost == 0 and rec.stats.reordered == 0


async def until(predicate: Any, wait_s: float = 20.0) -> None:
    """Wait until predicate() holds (a deadline against hanging, not a timing check)."""
    async with asyncio.timeout(wait_s):
        while not predicate():  # noqa: ASYNC110 - polling media counters
            await asyncio.sleep(0.05)


async def test_three_pre_encoded_bots_receive_everyone(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    options = replace(SMALL, pre_encoded=True, clip_seconds=2.0, keyframe_interval_s=1.0)
    bots = [await make_bot(name, options=options) for name in ("Dr A", "Dr B", "Dr C")]

    def rec(rx: ConferenceBot, tx: ConferenceBot) -> _Received | None:
        return rx.received.get(f"{tx.id}:camera:video")

    def frames(rx: ConferenceBot, tx: ConferenceBot, track: str = "video") -> int:
        r = rx.received.get(f"{tx.id}:camera:{track}")
        return r.stats.frames if r else 0

    pairs = [(rx, tx) for rx in bots for tx in bots if rx is not tx]
    # 45 frames at 15 fps span more than one wrap of the 30-frame loop
    await until(lambda: all(frames(rx, tx) >= 45 for rx, tx in pairs))
    await until(lambda: all(frames(rx, tx, "audio") >= 60 for rx, tx in pairs))
    for rx, tx in pairs:
        r = rec(rx, tx)
        assert r is not None and r.decoded
        assert r.replayed == r.stats.frames and r.unreadable == 0
        assert r.stats.lost == 0 and r.stats.reordered == 0  # the wrap is no loss
        assert r.stats.latencies == []
    for bot in bots:
        assert isinstance(bot.camera, ReplayVideoTrack)
        assert isinstance(bot.tone, ReplayAudioTrack)
        assert bot.video_encoders == {} and bot.audio_encoder is None  # nothing encoded
        for kind, least in (("camera", 45), ("audio", 60)):
            assert bot.packers[kind].encode_attempts == 0
            assert bot.packers[kind].packed_frames > least
        assert bot.report()["camera"] == "pre-encoded VP8 replay"


async def test_a_load_test_bot_enlarges_its_subscription_sockets(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    import socket

    a = await make_bot("A")
    b = await make_bot("B", options=replace(SMALL, socket_buffer=1 << 20))

    def receive_buffers(bot: ConferenceBot) -> list[int]:
        sizes = []
        for name, pc in bot._pcs.items():
            if not name.startswith("sub-"):
                continue
            for t in pc.getTransceivers():
                for proto in t.receiver.transport.transport._connection._protocols:
                    sock = proto.transport.get_extra_info("socket")
                    sizes.append(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
        return sizes

    async with asyncio.timeout(20):
        while not receive_buffers(b) or not receive_buffers(a):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    rmem_max = int(await asyncio.to_thread(Path("/proc/sys/net/core/rmem_max").read_text))
    assert min(receive_buffers(b)) >= min(1 << 20, rmem_max)  # Linux reports twice that
    assert max(receive_buffers(a)) < min(1 << 20, rmem_max)  # the default elsewhere
