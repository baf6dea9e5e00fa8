import asyncio
import datetime
from typing import Any

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import vp8_depayload
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtpPacket

from qkdmeet.conference.aiortc_hooks import MAX_HOLE_S, LowLatencyJitterBuffer
from qkdmeet.conference.forwarding import (
    VIDEO_QUEUE_FRAMES,
    Forwarder,
    ForwardingError,
    PackOnlyEncoder,
    is_vp8_keyframe,
)


class FakeReceiver:
    """Stands in for RTCRtpReceiver: the attributes tap_receiver swaps, PLI capture."""

    def __init__(self, kind: str = "video") -> None:
        self._RTCRtpReceiver__kind = kind
        self._RTCRtpReceiver__decoder_thread = None
        self._RTCRtpReceiver__decoder_queue = None
        self._RTCRtpReceiver__jitter_buffer = None
        self.plis: list[int] = []

    def getSynchronizationSources(self) -> list[Any]:
        class Source:
            source = 1234
            timestamp = datetime.datetime.now()

        return [Source()]

    async def _send_rtcp_pli(self, ssrc: int) -> None:
        self.plis.append(ssrc)


class JitterFrameLike:
    def __init__(self, data: bytes, timestamp: int) -> None:
        self.data, self.timestamp = data, timestamp


def vp8_frames(n: int) -> list[bytes]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = 64, 48, "yuv420p"
    codec.options = {"deadline": "realtime", "lag-in-frames": "0"}
    out = []
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(
            np.full((72, 64), (i * 37) % 256, dtype=np.uint8), format="yuv420p"
        )
        frame.pts = i
        out += [bytes(p) for p in codec.encode(frame)]
    return out


KEY, *DELTAS = vp8_frames(4)


def feed(receiver: FakeReceiver, data: bytes, ts: int) -> None:
    receiver._RTCRtpReceiver__decoder_queue.put((None, JitterFrameLike(data, ts)))


def test_keyframe_detection() -> None:
    assert is_vp8_keyframe(KEY)
    assert not any(is_vp8_keyframe(d) for d in DELTAS)
    assert not is_vp8_keyframe(b"") and not is_vp8_keyframe(b"\x00" * 3)


async def test_subscriber_starts_at_keyframe_and_sees_injected_loss_only() -> None:
    rx = FakeReceiver()
    fwd = Forwarder("video", rx)  # type: ignore[arg-type]
    track = fwd.subscribe()
    first = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)  # first recv asks for a keyframe
    await asyncio.sleep(0)
    assert rx.plis == [1234] and fwd.keyframe_requests == 1
    feed(rx, DELTAS[0], 0)  # not a keyframe: skipped
    sent = [1, 2, 3, 5, 6, 9]  # frames 4, 7, 8 lost upstream
    feed(rx, KEY, 90 * sent[0])
    for ts in sent[1:]:
        feed(rx, DELTAS[ts % 3], 90 * ts)
    got = [await first] + [await track.recv() for _ in sent[1:]]
    assert [p.pts // 90 for p in got] == sent
    assert bytes(got[0]) == KEY and got[0].time_base == pytest.approx(1 / 90000)
    assert fwd.frames_in == 7 and track.counters.dropped == 1
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()
    assert fwd.subscribers == 0


async def test_slow_subscriber_skips_to_next_keyframe_without_slowing_others() -> None:
    rx = FakeReceiver()
    fwd = Forwarder("video", rx)  # type: ignore[arg-type]
    slow, fast = fwd.subscribe(), fwd.subscribe()
    for t in (slow, fast):
        t._started = True  # already pulling
    feed(rx, KEY, 0)
    received = []
    for i in range(1, VIDEO_QUEUE_FRAMES + 5):
        feed(rx, DELTAS[0], i)
        received.append(await fast.recv())
    assert len(received) == VIDEO_QUEUE_FRAMES + 4
    assert slow.counters.skips_to_keyframe == 1 and slow._queue.empty()
    await asyncio.sleep(0)
    assert rx.plis  # asked the publisher for a keyframe
    feed(rx, DELTAS[0], 100)
    assert slow._queue.empty()  # still waiting for a keyframe
    feed(rx, KEY, 101)
    assert (await slow.recv()).pts == 101
    fwd.stop()


def test_pack_only_encoder_packetises_and_refuses_to_encode() -> None:
    packer = PackOnlyEncoder("video")
    big = KEY * 20
    packet = av.Packet(big)
    packet.pts = 4242
    payloads, ts = packer.pack(packet)
    assert ts == 4242 and len(payloads) > 1
    assert b"".join(vp8_depayload(p) for p in payloads) == big
    with pytest.raises(ForwardingError):
        packer.encode(av.VideoFrame(64, 48, "yuv420p"))
    assert packer.encode_attempts == 1 and packer.packed_frames == 1
    audio = PackOnlyEncoder("audio")
    packet = av.Packet(b"opus")
    packet.pts = 960
    assert audio.pack(packet) == ([b"opus"], 960)


def test_tapping_a_started_receiver_is_refused() -> None:
    rx = FakeReceiver()
    rx._RTCRtpReceiver__decoder_thread = object()
    with pytest.raises(ForwardingError):
        Forwarder("video", rx)  # type: ignore[arg-type]
    with pytest.raises(ForwardingError):
        Forwarder("data", FakeReceiver())  # type: ignore[arg-type]


def rtp(seq: int, ts: int, marker: int, data: bytes) -> RtpPacket:
    p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, marker=marker)
    p._data = data  # type: ignore[attr-defined]
    return p


def test_low_latency_jitter_buffer_emits_at_marker_and_waits_for_holes() -> None:
    ours = LowLatencyJitterBuffer(capacity=16, is_video=True)
    theirs = JitterBuffer(capacity=16, is_video=True)
    frame1 = [rtp(1, 100, 0, b"a"), rtp(2, 100, 1, b"b")]
    for buf in (ours, theirs):
        assert buf.add(frame1[0]) == (False, None)
    _, done = ours.add(frame1[1])
    assert done is not None and done.data == b"ab" and done.timestamp == 100
    assert theirs.add(frame1[1])[1] is None  # aiortc waits for the next frame
    # a hole (seq 4 missing) holds frame 2 until the retransmission arrives
    assert ours.add(rtp(3, 200, 0, b"c"))[1] is None
    assert ours.add(rtp(5, 200, 1, b"e"))[1] is None
    _, done = ours.add(rtp(4, 200, 0, b"d"))
    assert done is not None and done.data == b"cde"
    audio = LowLatencyJitterBuffer(capacity=16)
    _, done = audio.add(rtp(7, 960, 0, b"opus"))
    assert done is not None and done.data == b"opus"


def vp8_rtp(seq: int, ts: int, marker: int, start: bool) -> RtpPacket:
    p = rtp(seq, ts, marker, b"x%d" % seq)
    p.payload = bytes([0x10 if start else 0x00]) + b"vp8"  # RFC 7741 descriptor: S bit
    return p


def test_a_hole_lost_for_good_holds_the_video_back_for_max_hole_s_only() -> None:
    """aiortc's buffer waits for 512 packets behind a hole (about 6 s of camera video,
    the frame-rate collapse of the panel benchmark's starved receivers): ours skips
    to the next frame start after MAX_HOLE_S, asks for a keyframe and says so."""
    now = [0.0]
    skipped: list[int] = []
    buf = LowLatencyJitterBuffer(capacity=512, is_video=True, clock=lambda: now[0],
                                 on_skip=lambda: skipped.append(1))
    assert buf.add(vp8_rtp(1, 100, 0, True)) == (False, None)
    assert buf.add(vp8_rtp(2, 100, 1, False))[1] is not None
    # seq 3 (the start of frame 200) is lost for good; frame 300 waits behind it
    for seq, ts, marker, start in ((4, 200, 0, False), (5, 200, 1, False),
                                   (6, 300, 0, True)):
        now[0] += 0.1
        assert buf.add(vp8_rtp(seq, ts, marker, start)) == (False, None)
    now[0] = 0.1 + MAX_HOLE_S  # the hole was seen at 0.1
    pli, frame = buf.add(vp8_rtp(7, 300, 1, False))
    assert pli and frame is not None and frame.timestamp == 300 and frame.data == b"x6x7"
    assert buf.skips == 1 and skipped == [1]
    # and on: the next frame leaves at its marker as usual
    pli, frame = buf.add(vp8_rtp(8, 400, 1, True))
    assert not pli and frame is not None and frame.data == b"x8"
    # a hole filled in time is no skip
    assert buf.add(vp8_rtp(10, 500, 1, True))[1] is None  # 9 missing
    now[0] += MAX_HOLE_S / 2
    assert buf.add(vp8_rtp(9, 450, 1, True))[1] is not None
    assert buf.skips == 1


async def test_a_frame_skipped_upstream_makes_subscribers_wait_for_a_keyframe() -> None:
    rx = FakeReceiver()
    fwd = Forwarder("video", rx)  # type: ignore[arg-type]
    track = fwd.subscribe()
    track._started = True  # as after the subscriber's first recv()
    track.push(KEY, 0, True)
    track.push(DELTAS[0], 3000, False)
    assert track._queue.qsize() == 2
    rx._RTCRtpReceiver__jitter_buffer._on_skip()  # the publisher leg lost a frame
    assert fwd.skips == 1 and fwd.stats()["skips"] == 1
    track.push(DELTAS[1], 6000, False)  # would not decode: dropped
    assert track._queue.qsize() == 2 and track.counters.dropped == 1
    track.push(KEY, 9000, True)
    assert track._queue.qsize() == 3
