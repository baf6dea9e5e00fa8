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
- a subscriber's PLI/FIR reaches the server sender's keyframe hook, which
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

The aiortc internals this needs (the receiver's decoder queue and jitter
buffer, the sender's encoder and keyframe request) are reached only through
:mod:`qkdmeet.conference.aiortc_hooks`.
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
from aiortc.mediastreams import MediaStreamError

from qkdmeet.conference import aiortc_hooks as hooks
from qkdmeet.conference.aiortc_hooks import LowLatencyJitterBuffer
from qkdmeet.errors import ConferenceError

logger = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48000)
#: Frames queued per subscriber before it is declared slow and skips ahead.
VIDEO_QUEUE_FRAMES = 30
AUDIO_QUEUE_FRAMES = 25
#: The fewest seconds between two PLIs sent to one publisher.
PLI_MIN_INTERVAL = 0.3

#: Called with (payload bytes, media timestamp) of each complete encoded frame.
FrameCallback = Callable[[bytes, int], None]


class ForwardingError(ConferenceError, RuntimeError):
    """Misuse of the forwarding path (e.g. tapping a receiver already started)."""


def is_vp8_keyframe(data: bytes) -> bool:
    """True if a VP8 frame is a key frame (RFC 6386 9.1: P bit clear, start code)."""
    return len(data) >= 10 and not data[0] & 1 and data[3:6] == b"\x9d\x01\x2a"


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

    def buffer(kind: str) -> LowLatencyJitterBuffer:
        video = kind == "video"
        return LowLatencyJitterBuffer(capacity=512 if video else 16, is_video=video,
                                      on_skip=on_skip)

    try:
        hooks.tap_decoder_queue(receiver, _TapQueue(callback, passthrough), buffer)
    except ValueError as exc:
        raise ForwardingError(str(exc)) from exc


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
            payloads = hooks.vp8_packetize(data, self._picture_id)
            self._picture_id = (self._picture_id + 1) % (1 << 15)
        else:
            payloads = [data]
        self.packed_packets += len(payloads)
        return payloads, int(packet.pts or 0)


def install_packer(sender: RTCRtpSender, forwarder: Forwarder) -> PackOnlyEncoder:
    """Make ``sender`` forward pre-encoded frames and route its PLI/FIR upstream."""
    packer = PackOnlyEncoder(sender.kind)
    hooks.set_encoder(sender, packer)
    hooks.on_keyframe_request(sender, forwarder.request_keyframe)
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
        task = asyncio.ensure_future(hooks.send_pli(self._receiver, ssrc))
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
