"""Every use of aiortc's private API, in one place (issue 16).

aiortc has no public way to forward encoded frames without decoding, to put our
own encoder on a sender, or to read RTP header extensions before its receiver
does. The conference does all three, through the hooks below and nowhere else;
``tests/conference/test_aiortc_hooks.py`` checks each private name on real
aiortc objects, so an aiortc release that renames one fails there, loudly,
rather than in a call. The versions measured are pinned in ``pyproject.toml``
(:data:`MEASURED_WITH`).

=====================================  ===========================================
private name (aiortc 1.16)             hook
=====================================  ===========================================
``RTCRtpSender.__encoder``             :func:`set_encoder`
``RTCRtpSender._send_keyframe``        :func:`on_keyframe_request`
``RTCRtpSender._next_encoded_frame``   :func:`wrap_next_encoded_frame`
``RTCRtpReceiver.__kind``,             :func:`tap_decoder_queue`
``__decoder_queue``,
``__decoder_thread``,
``__jitter_buffer``
``RTCRtpReceiver._send_rtcp_pli``      :func:`send_pli`
``RTCRtpReceiver._handle_rtp_packet``  :func:`wrap_rtp_handler`
``RTCRtpTransceiver._codecs``          :func:`codecs`, :func:`set_codecs`
``Vp8Encoder._packetize``              :func:`vp8_packetize`
``Vp8Encoder.__target_bitrate``        :func:`set_vp8_buffer_bitrate`
``JitterBuffer._origin``, ``_packets``,  :class:`LowLatencyJitterBuffer`
``_is_video``, ``_remove_frame``;
``RtpPacket._data``
=====================================  ===========================================
"""

from __future__ import annotations

import queue
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame

#: The aiortc and PyAV versions these hooks were measured with (pinned in pyproject).
MEASURED_WITH = {"aiortc": "1.16.0", "av": "18.1.0"}

#: Seconds a hole (a lost packet, NACKed) may hold up the video behind it before
#: the jitter buffer gives up on it and skips to the next frame: aiortc's own
#: buffer waits until 512 packets pile up behind the hole (6 s of 800 kb/s video),
#: which a retransmission lost for good (past the sender's RTP history) costs.
MAX_HOLE_S = 0.5


# -- senders -------------------------------------------------------------------------


def set_encoder(sender: RTCRtpSender, encoder: Any) -> None:
    """Use ``encoder`` (``encode``/``pack``, as aiortc's codecs) for ``sender``'s frames."""
    sender._RTCRtpSender__encoder = encoder  # type: ignore[attr-defined]


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Route the PLI/FIR that ``sender``'s receiver sends to ``callback``."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


def wrap_next_encoded_frame(
    sender: RTCRtpSender, wrap: Callable[[Any], Any]
) -> None:
    """Pass every encoded frame ``sender`` is about to packetise through ``wrap``
    (it may set the frame's ``audio_level``; it returns the frame)."""
    next_frame = sender._next_encoded_frame

    async def next_encoded_frame(codec: Any) -> Any:
        frame = await next_frame(codec)
        return None if frame is None else wrap(frame)

    sender._next_encoded_frame = next_encoded_frame  # type: ignore[method-assign]


def vp8_packetize(frame: bytes, picture_id: int) -> list[bytes]:
    """aiortc's VP8 RTP payloads (RFC 7741 descriptor) of one encoded frame."""
    return list(Vp8Encoder._packetize(frame, picture_id))


def set_vp8_buffer_bitrate(encoder: Vp8Encoder, bitrate: int) -> None:
    """The bitrate aiortc's VP8 encoder sizes its rate-control buffer from."""
    encoder._Vp8Encoder__target_bitrate = bitrate  # type: ignore[attr-defined]


# -- receivers -----------------------------------------------------------------------


def tap_decoder_queue(
    receiver: RTCRtpReceiver,
    decoder_queue: queue.Queue[Any],
    jitter_buffer: Callable[[str], JitterBuffer],
) -> None:
    """Give ``receiver`` (not started yet) another decoder queue, and the jitter
    buffer that ``jitter_buffer(kind)`` makes for its kind ("video" or "audio").

    ``ValueError`` if its decoder already runs or this aiortc has no such queue.
    """
    if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None:
        raise ValueError("cannot tap a receiver whose decoder already runs")
    if not hasattr(receiver, "_RTCRtpReceiver__decoder_queue"):
        raise ValueError("unsupported aiortc version: receiver has no decoder queue")
    kind = str(receiver._RTCRtpReceiver__kind)  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__decoder_queue = decoder_queue  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__jitter_buffer = jitter_buffer(kind)  # type: ignore[attr-defined]


def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> Awaitable[None]:
    """An RTCP PLI from ``receiver`` to the sender of ``media_ssrc``."""
    result: Awaitable[None] = receiver._send_rtcp_pli(media_ssrc)
    return result


def wrap_rtp_handler(receiver: Any, before: Callable[[Any], None]) -> None:
    """Call ``before(packet)`` for every RTP packet of ``receiver``, before aiortc
    handles it as usual (a plain function returning the original coroutine: no
    extra coroutine per packet)."""
    handle = receiver._handle_rtp_packet

    def handle_rtp_packet(packet: Any, arrival_time_ms: int) -> Any:
        before(packet)
        return handle(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = handle_rtp_packet


# -- transceivers --------------------------------------------------------------------


def codecs(transceiver: Any) -> list[Any]:
    """The codecs negotiated on ``transceiver`` (``RTCRtpCodecParameters``)."""
    return list(transceiver._codecs)


def set_codecs(transceiver: Any, chosen: list[Any]) -> None:
    transceiver._codecs = chosen


# -- the jitter buffer ---------------------------------------------------------------


def starts_vp8_frame(payload: bytes) -> bool:
    """RFC 7741 4.2: the first packet of a VP8 frame has S set and partition index 0."""
    return bool(payload) and payload[0] & 0x17 == 0x10


class LowLatencyJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, but a frame leaves as soon as it is complete.

    aiortc emits a frame only when the first packet of the *next* frame arrives,
    which costs one frame interval (67 ms at 15 fps) per hop. Here a video frame
    is complete at its RTP marker bit (set on the last packet of a frame by
    aiortc and browsers) and an audio packet is a frame by itself.

    Loss: a hole stops the frames behind it until a retransmission fills it, for
    at most :data:`MAX_HOLE_S`; then the buffer drops what it holds up to the
    next VP8 frame start, counts a skip, asks for a keyframe (the receiver sends
    the PLI) and calls ``on_skip`` (a forwarder then makes its subscribers wait
    for that keyframe: the frames after a gap do not decode).
    """

    def __init__(
        self,
        capacity: int,
        prefetch: int = 0,
        is_video: bool = False,
        on_skip: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(capacity, prefetch, is_video)
        self.skips = 0
        self._on_skip = on_skip
        self._clock = clock
        self._hole_since: float | None = None
        self._skipped = False

    def add(self, packet: Any) -> tuple[bool, JitterFrame | None]:
        pli, frame = super().add(packet)
        if self._skipped:
            self._skipped = False
            pli = pli or self._is_video
        return pli, frame

    def _skip_hole(self) -> bool:
        """Drop the packets from the hole at the origin up to the next frame start
        (VP8 payload descriptor: S bit set, partition 0); False when none is here yet."""
        assert self._origin is not None
        for count in range(1, self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is not None and starts_vp8_frame(packet.payload):
                self.remove(count)
                self.skips += 1
                self._skipped = True
                self._hole_since = None
                if self._on_skip is not None:
                    self._on_skip()
                return True
        return False

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        assert self._origin is not None
        if self._is_video and self._packets[self._origin % self.capacity] is None:
            now = self._clock()
            if self._hole_since is None:
                self._hole_since = now
            elif now - self._hole_since >= MAX_HOLE_S:
                self._skip_hole()
        packets: list[Any] = []
        timestamp = None
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None:
                return None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                break  # the next frame began: this one is complete
            packets.append(packet)
            if packet.marker or not self._is_video:
                break
        else:
            return None
        self.remove(len(packets))
        self._hole_since = None
        return JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)
