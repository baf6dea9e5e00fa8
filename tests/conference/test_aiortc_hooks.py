"""One test per use of aiortc's private API (``conference/aiortc_hooks.py``): each private
name is checked on real aiortc objects, so an aiortc release that renames or reshapes
one fails here, by name, instead of deep in a call (issue 16)."""

from __future__ import annotations

import importlib.metadata
import inspect
import queue
import tomllib
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCSessionDescription
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterBuffer

from qkdmeet.conference import aiortc_hooks as hooks

ROOT = Path(__file__).resolve().parents[2]


def params(fn: Any) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def test_the_versions_measured_are_the_versions_pinned_and_installed() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for name, version in hooks.MEASURED_WITH.items():
        assert f"{name}=={version}" in [d.split(";")[0].strip() for d in deps], name
        assert importlib.metadata.version(name) == version, name


async def test_sender_encoder_keyframe_and_next_frame_hooks() -> None:
    pc = RTCPeerConnection()
    try:
        sender = pc.addTransceiver("video", direction="sendonly").sender
        assert hasattr(sender, "_RTCRtpSender__encoder")
        marker = object()
        hooks.set_encoder(sender, marker)
        assert sender._RTCRtpSender__encoder is marker  # type: ignore[attr-defined]
        assert params(RTCRtpSender._send_keyframe) == []
        calls: list[int] = []
        hooks.on_keyframe_request(sender, lambda: calls.append(1))
        sender._send_keyframe()
        assert calls == [1]
        assert inspect.iscoroutinefunction(RTCRtpSender._next_encoded_frame)
        assert params(RTCRtpSender._next_encoded_frame) == ["codec"]
        hooks.wrap_next_encoded_frame(sender, lambda frame: frame)
        assert inspect.iscoroutinefunction(sender._next_encoded_frame)
    finally:
        await pc.close()


async def test_receiver_decoder_queue_and_jitter_buffer_hooks() -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video", direction="recvonly").receiver
        assert receiver._RTCRtpReceiver__kind == "video"  # type: ignore[attr-defined]
        assert receiver._RTCRtpReceiver__decoder_thread is None  # type: ignore[attr-defined]
        assert isinstance(receiver._RTCRtpReceiver__decoder_queue, queue.Queue)  # type: ignore[attr-defined]
        assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, JitterBuffer)  # type: ignore[attr-defined]
        q: queue.Queue[Any] = queue.Queue()
        kinds: list[str] = []

        def make(kind: str) -> JitterBuffer:
            kinds.append(kind)
            return hooks.LowLatencyJitterBuffer(16, is_video=True)

        hooks.tap_decoder_queue(receiver, q, make)
        assert receiver._RTCRtpReceiver__decoder_queue is q  # type: ignore[attr-defined]
        assert kinds == ["video"]
        assert isinstance(receiver._RTCRtpReceiver__jitter_buffer,  # type: ignore[attr-defined]
                          hooks.LowLatencyJitterBuffer)
    finally:
        await pc.close()


def test_receiver_pli_and_rtp_handler_hooks() -> None:
    assert inspect.iscoroutinefunction(RTCRtpReceiver._send_rtcp_pli)
    assert params(RTCRtpReceiver._send_rtcp_pli) == ["media_ssrc"]
    assert inspect.iscoroutinefunction(RTCRtpReceiver._handle_rtp_packet)
    assert params(RTCRtpReceiver._handle_rtp_packet) == ["packet", "arrival_time_ms"]
    # the depayloaded frame data the jitter buffer joins (LowLatencyJitterBuffer)
    assert "packet._data" in inspect.getsource(RTCRtpReceiver._handle_rtp_packet)

    class Receiver:
        def __init__(self) -> None:
            self.handled: list[tuple[Any, int]] = []

        def _handle_rtp_packet(self, packet: Any, arrival_time_ms: int) -> str:
            self.handled.append((packet, arrival_time_ms))
            return "coroutine"

    r, seen = Receiver(), []
    hooks.wrap_rtp_handler(r, seen.append)
    assert r._handle_rtp_packet("p", 7) == "coroutine"
    assert seen == ["p"] and r.handled == [("p", 7)]


async def test_transceiver_codecs_hook() -> None:
    offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        offerer.addTransceiver("video", direction="sendonly")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(
            RTCSessionDescription(offerer.localDescription.sdp, "offer"))
        (transceiver,) = answerer.getTransceivers()
        found = hooks.codecs(transceiver)
        assert any(c.mimeType.lower() == "video/vp8" for c in found)
        vp8 = [c for c in found if c.mimeType.lower() == "video/vp8"]
        hooks.set_codecs(transceiver, vp8)
        assert hooks.codecs(transceiver) == vp8
    finally:
        await offerer.close()
        await answerer.close()


def test_vp8_packetize_and_buffer_bitrate_hooks() -> None:
    frame = bytes(range(256)) * 20  # 5,120 bytes: several RTP payloads
    payloads = hooks.vp8_packetize(frame, 5)
    assert len(payloads) > 1 and all(isinstance(p, bytes) for p in payloads)
    assert b"".join(vp8_depayload(p) for p in payloads) == frame
    encoder = Vp8Encoder()
    assert hasattr(encoder, "_Vp8Encoder__target_bitrate")
    hooks.set_vp8_buffer_bitrate(encoder, 123_000)
    assert encoder._Vp8Encoder__target_bitrate == 123_000  # type: ignore[attr-defined]


def test_jitter_buffer_internals_the_low_latency_buffer_overrides() -> None:
    jb = JitterBuffer(16, is_video=True)
    for name in ("_origin", "_packets", "_is_video", "capacity"):
        assert hasattr(jb, name), name
    assert params(JitterBuffer._remove_frame) == ["sequence_number"]
    assert "_remove_frame" in inspect.getsource(JitterBuffer.add)
    assert params(JitterBuffer.remove) == ["count"]
