"""Selective forwarding of encoded media: no decoding, no encoding per receiver.

Design
------
A publisher's stream set arrives on one server-side RTCPeerConnection; each of
its tracks (VP8 video, Opus audio) has an aiortc ``RTCRtpReceiver``. The
receiver depacketises RTP, runs its jitter buffer and would hand each complete
*encoded* frame to a decoder thread through a ``queue.Queue``. :func:`tap_receiver`
swaps that queue for a :class:`_TapQueue` before the receiver starts: complete
encoded frames go to a callback on the event loop instead, and the decoder
thread, which is still started by aiortc, only ever waits for its stop signal.
So the server decodes nothing.

Each published track has one :class:`Forwarder`. Each subscriber gets, per
forwarded track, a :class:`ForwardedTrack` whose ``recv()`` returns ``av.Packet``
objects holding the publisher's encoded bytes with the publisher's media
timestamps. aiortc's ``RTCRtpSender`` passes packets (not frames) to its
encoder's ``pack()``, which only re-packetises; :func:`install_packer` puts a
:class:`PackOnlyEncoder` on the sender whose ``encode()`` refuses to run, so a
server sender *cannot* encode. Per receiver the server does RTP packetisation
and SRTP only.

Loss recovery and keyframes work per leg:

- publisher -> server: aiortc's receiver sends NACKs and, when its jitter
  buffer gives up on a frame, a PLI to the publisher;
- server -> subscriber: aiortc's sender keeps its RTP history and answers the
  subscriber's NACKs with retransmissions (RTX when negotiated);
- a subscriber's PLI/FIR reaches the server sender's ``_send_keyframe``, which
  :func:`install_packer` routes to :meth:`Forwarder.request_keyframe`: an RTCP
  PLI to the publisher (at most one per :data:`PLI_MIN_INTERVAL`);
- a new subscriber (its first ``recv()``), or one whose queue overflowed,
  drops video until the next keyframe and asks the publisher for one.

A moderator's mute is enforced here: a *held* forwarder (:meth:`Forwarder.hold`)
passes no frame to any subscriber; released, video resumes at the next keyframe,
requested at once.

Limits: no simulcast or SVC, so every receiver gets the one encoding the
publisher sends; a slow receiver's queue overflows and it skips to the next
keyframe rather than slowing the others. The bitrate is therefore controlled
at the sender (the server's ``bitrate`` message, see ``room.py``), not per
receiver. Only VP8 video and Opus audio are forwarded (the server pins VP8 in
every negotiation). REMB from the subscriber legs is not propagated upstream.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.base import Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError

from qkdmeet.errors import ConferenceError

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48000)
#: Frames queued per subscriber before it is declared slow and skips ahead.
VIDEO_QUEUE_FRAMES = 30
AUDIO_QUEUE_FRAMES = 25
#: The fewest seconds between two PLIs sent to one publisher.
PLI_MIN_INTERVAL = 0.3
#: Seconds a hole (a lost packet, NACKed) may hold up the video behind it before
#: the jitter buffer gives up on it and skips to the next frame: aiortc's own
#: buffer waits until 512 packets pile up behind the hole (6 s of 800 kb/s video),
#: which a retransmission lost for good (past the sender's RTP history) costs.
MAX_HOLE_S = 0.5

#: Called with (payload bytes, media timestamp) of each complete encoded frame.
FrameCallback = Callable[[bytes, int], None]


class ForwardingError(ConferenceError, RuntimeError):
    """Misuse of the forwarding path (e.g. tapping a receiver already started)."""


def is_vp8_keyframe(data: bytes) -> bool:
    """True if a VP8 frame is a key frame (RFC 6386 9.1: P bit clear, start code)."""
    return len(data) >= 10 and not data[0] & 1 and data[3:6] == b"\x9d\x01\x2a"


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
            if packet is not None and _starts_vp8_frame(packet.payload):
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


def _starts_vp8_frame(payload: bytes) -> bool:
    """RFC 7741 4.2: the first packet of a VP8 frame has S set and partition index 0."""
    return bool(payload) and payload[0] & 0x17 == 0x10


class _TapQueue(queue.Queue[Any]):
    """Stands in for a receiver's decoder queue: frames go to a callback instead."""

    def __init__(self, callback: FrameCallback, passthrough: bool) -> None:
        super().__init__()
        self._callback = callback
        self._passthrough = passthrough

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # the receiver stopping its decoder thread
            super().put(None, block, timeout)
            return
        _codec, frame = item
        try:
            self._callback(bytes(frame.data), int(frame.timestamp))
        except Exception:
            logger.exception("forwarding callback failed; frame dropped")
        if self._passthrough:
            super().put(item, block, timeout)


def tap_receiver(
    receiver: RTCRtpReceiver,
    callback: FrameCallback,
    passthrough: bool = False,
    on_skip: Callable[[], None] | None = None,
) -> None:
    """Hand every complete encoded frame of ``receiver`` to ``callback``, undecoded.

    With ``passthrough`` the frame also goes on to the decoder as usual (the
    bot counts bytes this way); without it nothing is ever decoded.

    Must be called before the receiver starts (after ``setRemoteDescription``,
    before the connection is established).
    """
    if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None:
        raise ForwardingError("cannot tap a receiver whose decoder already runs")
    if not hasattr(receiver, "_RTCRtpReceiver__decoder_queue"):
        raise ForwardingError("unsupported aiortc version: receiver has no decoder queue")
    receiver._RTCRtpReceiver__decoder_queue = _TapQueue(callback, passthrough)  # type: ignore[attr-defined]
    receiver._RTCRtpReceiver__jitter_buffer = LowLatencyJitterBuffer(  # type: ignore[attr-defined]
        capacity=512 if receiver._RTCRtpReceiver__kind == "video" else 16,  # type: ignore[attr-defined]
        is_video=receiver._RTCRtpReceiver__kind == "video",  # type: ignore[attr-defined]
        on_skip=on_skip,
    )


class PackOnlyEncoder(Encoder):
    """An aiortc encoder that only packetises pre-encoded frames; encoding is refused."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.packed_frames = 0
        self.packed_packets = 0  # RTP packets: the unit of the server's per-packet cost
        self.encode_attempts = 0
        self._picture_id = 0

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        self.encode_attempts += 1
        raise ForwardingError("the conference server never encodes media")

    def pack(self, packet: av.Packet[Any]) -> tuple[list[bytes], int]:
        self.packed_frames += 1
        data = bytes(packet)
        if self.kind == "video":
            payloads = Vp8Encoder._packetize(data, self._picture_id)
            self._picture_id = (self._picture_id + 1) % (1 << 15)
        else:
            payloads = [data]
        self.packed_packets += len(payloads)
        return payloads, int(packet.pts or 0)


def install_packer(sender: RTCRtpSender, forwarder: Forwarder) -> PackOnlyEncoder:
    """Make ``sender`` forward pre-encoded frames and route its PLI/FIR upstream."""
    packer = PackOnlyEncoder(sender.kind)
    sender._RTCRtpSender__encoder = packer  # type: ignore[attr-defined]
    sender._send_keyframe = forwarder.request_keyframe  # type: ignore[method-assign]
    return packer


@dataclass
class TrackCounters:
    frames_out: int = 0
    bytes_out: int = 0
    dropped: int = 0
    skips_to_keyframe: int = 0


class ForwardedTrack(MediaStreamTrack):
    """One subscriber's copy of a published track: yields encoded ``av.Packet``s."""

    def __init__(self, forwarder: Forwarder) -> None:
        super().__init__()
        self.kind = forwarder.kind
        self._forwarder = forwarder
        video = forwarder.kind == "video"
        self._queue: asyncio.Queue[av.Packet[Any] | None] = asyncio.Queue(
            VIDEO_QUEUE_FRAMES if video else AUDIO_QUEUE_FRAMES
        )
        self._time_base = VIDEO_TIME_BASE if video else AUDIO_TIME_BASE
        self._need_keyframe = video
        self._started = False
        self.counters = TrackCounters()

    def push(self, data: bytes, timestamp: int, keyframe: bool) -> None:
        """Queue one encoded frame (called by the forwarder on the event loop)."""
        if self.readyState != "live":
            return
        if self._need_keyframe:
            if not keyframe:
                # Keep asking (rate-limited): a PLI can be lost or suppressed,
                # and VP8 senders send no periodic keyframes.
                self.counters.dropped += 1
                self._forwarder.request_keyframe()
                return
            self._need_keyframe = False
        if self._queue.full():
            self._skip_to_keyframe()
            self.counters.dropped += 1
            return
        packet = av.Packet(data)
        packet.pts = timestamp
        packet.time_base = self._time_base
        self._queue.put_nowait(packet)

    def need_keyframe(self) -> None:
        """Send nothing more of a video track until its next keyframe."""
        if self.kind == "video":
            self._need_keyframe = True

    def _skip_to_keyframe(self) -> None:
        while not self._queue.empty():
            if self._queue.get_nowait() is not None:
                self.counters.dropped += 1
        if self.kind == "video":
            self.counters.skips_to_keyframe += 1
            self._need_keyframe = True
            self._forwarder.request_keyframe()

    async def recv(self) -> av.Packet[Any]:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        if not self._started:
            # The sender starts pulling once the subscriber is connected: what
            # queued before is stale, and video must begin at a keyframe.
            self._started = True
            self._skip_to_keyframe()
        packet = await self._queue.get()
        if packet is None:
            self.stop()
            raise MediaStreamError
        self.counters.frames_out += 1
        self.counters.bytes_out += packet.size
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self._forwarder.remove(self)
            if self._queue.full():
                self._queue.get_nowait()
            self._queue.put_nowait(None)


class Forwarder:
    """The fan-out point of one published track."""

    def __init__(self, kind: str, receiver: RTCRtpReceiver) -> None:
        if kind not in ("audio", "video"):
            raise ForwardingError(f"unknown track kind {kind!r}")
        self.kind = kind
        self._receiver = receiver
        self._tracks: list[ForwardedTrack] = []
        self._last_pli = -PLI_MIN_INTERVAL
        self._pli_tasks: set[asyncio.Task[None]] = set()
        self.frames_in = 0
        self.bytes_in = 0
        self.keyframes_in = 0
        self.keyframe_requests = 0
        self.frames_forwarded = 0
        self.frames_held = 0
        self.skips = 0  # frames lost for good on the publisher leg (skipped)
        #: a moderator muted this track: its frames reach no subscriber (see :meth:`hold`)
        self.held = False
        tap_receiver(receiver, self._on_frame, on_skip=self._on_skip)

    def subscribe(self) -> ForwardedTrack:
        track = ForwardedTrack(self)
        self._tracks.append(track)
        return track

    def remove(self, track: ForwardedTrack) -> None:
        if track in self._tracks:
            self._tracks.remove(track)

    @property
    def subscribers(self) -> int:
        return len(self._tracks)

    def _on_skip(self) -> None:
        """The publisher leg lost a frame for good: every subscriber waits for the
        keyframe the receiver has asked for (the frames after a gap do not decode)."""
        self.skips += 1
        for track in self._tracks:
            track.need_keyframe()

    def hold(self, held: bool) -> None:
        """Forward nothing of this track while ``held`` (a moderator's mute, enforced
        here whatever the publisher's client does); on release, video resumes at
        the next keyframe, which is requested at once."""
        if held == self.held:
            return
        self.held = held
        if not held and self.kind == "video":
            for track in self._tracks:
                track.need_keyframe()
            self.request_keyframe()

    def _on_frame(self, data: bytes, timestamp: int) -> None:
        keyframe = self.kind == "audio" or is_vp8_keyframe(data)
        self.frames_in += 1
        self.bytes_in += len(data)
        if self.kind == "video" and keyframe:
            self.keyframes_in += 1
        if self.held:
            self.frames_held += 1
            return
        for track in list(self._tracks):
            track.push(data, timestamp, keyframe)
            self.frames_forwarded += 1

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe (RTCP PLI), rate-limited."""
        if self.kind != "video":
            return
        now = time.monotonic()
        if now - self._last_pli < PLI_MIN_INTERVAL:
            return
        sources = self._receiver.getSynchronizationSources()
        if not sources:
            return
        self._last_pli = now
        self.keyframe_requests += 1
        ssrc = max(sources, key=lambda s: s.timestamp).source
        task = asyncio.ensure_future(self._receiver._send_rtcp_pli(ssrc))
        self._pli_tasks.add(task)
        task.add_done_callback(self._pli_tasks.discard)

    def stop(self) -> None:
        """End every subscriber's track (their senders then stop)."""
        for track in list(self._tracks):
            track.stop()
        for task in self._pli_tasks:
            task.cancel()

    def stats(self) -> dict[str, int]:
        return {
            "frames_in": self.frames_in,
            "bytes_in": self.bytes_in,
            "keyframes_in": self.keyframes_in,
            "keyframe_requests": self.keyframe_requests,
            "frames_forwarded": self.frames_forwarded,
            "frames_held": self.frames_held,
            "skips": self.skips,
            "held": self.held,
            "subscribers": self.subscribers,
            "dropped": sum(t.counters.dropped for t in self._tracks),
        }
