"""The headless conference client: synthetic media out, measured media in.

A :class:`ConferenceBot` joins a room over the same WebSocket protocol as the
browser (``PROTOCOL.md``), publishes a synthetic camera (moving test pattern
with a frame code) plus a tone, optionally a screen share (patient-case
slides) and a document, and answers every ``subscribe`` offer. Each received
video stream is decoded and its frame code read (counter and send time ->
frame loss and latency, ``stats.py``); audio, and video beyond
``decode_limit`` streams, is counted from the encoded frames without decoding
(the counter then comes from the RTP timestamp, and no latency is measured).

The bot follows the server's ``bitrate`` caps: its senders use
:class:`CappedVp8Encoder` / :class:`CappedOpusEncoder`, whose target is the
smaller of the cap and the congestion controller's estimate (REMB).

With ``pre_encoded`` (``--pre-encoded``) the camera is a
:class:`~qkdmeet.conference.media.ReplayVideoTrack`: a loop of test-pattern
frames encoded once at start-up (or loaded from ``clip_path``) and replayed as
VP8 packets through a pack-only encoder, and the tone is likewise a loop of
Opus packets (:class:`~qkdmeet.conference.media.ReplayAudioTrack`), so a load
test's senders cost almost no CPU (real participants encode on their own
machines); a screen share stays live-encoded. A replay cannot
follow bitrate caps or make a keyframe on request: the clip is encoded at the
camera's default bitrate with periodic keyframes, which serve PLIs. Replayed
frames carry a replay code (loop length, index) instead of a counter and send
time: receivers unwrap the index (a loop wrap is no loss) and measure no
latency from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamError
from av import AudioResampler, CodecContext, VideoFrame

from qkdmeet.conference import aiortc_hooks as hooks
from qkdmeet.conference.access import parse_invite
from qkdmeet.conference.forwarding import PackOnlyEncoder, tap_receiver
from qkdmeet.conference.media import (
    AUDIO_SAMPLES,
    VIDEO_CLOCK,
    ReplayAudioTrack,
    ReplayVideoTrack,
    SlidesTrack,
    TestPatternTrack,
    ToneTrack,
    cached_clip,
    cached_tone_clip,
    luma,
    opus_packet_samples,
    read_frame_code,
    split_replay_counter,
)
from qkdmeet.conference.room import DEFAULT_BITRATES, MIN_BITRATE
from qkdmeet.conference.server import codec_preferences, rtc_configuration
from qkdmeet.conference.stats import StreamStats, Unwrapper
from qkdmeet.errors import ConferenceError

RTP_TIMESTAMP_MODULUS = 1 << 32

logger = logging.getLogger(__name__)


class BotError(ConferenceError, RuntimeError):
    """The bot could not join or was refused by the server."""


class BotState(enum.Enum):
    NEW = "new"
    JOINED = "joined"
    CLOSED = "closed"


#: Below this target (bit/s) the camera is sent at half width and height, as a
#: browser's encoder degrades resolution to keep its frame rate: libvpx cannot
#: bring the 640x480 test pattern under about 280 kb/s (measured: 281 kb/s at a
#: 56 kb/s cap), while at 320x240 it holds 54 kb/s for a 56 kb/s cap.
HALF_RESOLUTION_BELOW_BPS = 300_000
#: Seconds between attempts to reach the server's WebSocket while joining.
CONNECT_RETRY_S = 1.0
#: Seconds :meth:`ConferenceBot.stop` waits for its peer connections to close.
STOP_TIMEOUT_S = 10.0


class CappedVp8Encoder(Vp8Encoder):
    """aiortc's VP8 encoder with a cap: target = min(cap, REMB estimate).

    Under :data:`HALF_RESOLUTION_BELOW_BPS` frames are scaled to half size
    before encoding (the frame code scales with the picture and stays readable).
    """

    def __init__(self, cap: int) -> None:
        super().__init__()
        self._estimate = cap
        self.cap = cap

    @property  # type: ignore[override]
    def target_bitrate(self) -> int:
        target = max(MIN_BITRATE, min(self._estimate, self.cap))
        hooks.set_vp8_buffer_bitrate(self, target)  # used for the encoder's buffer size
        return target

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self._estimate = bitrate

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        if self.target_bitrate < HALF_RESOLUTION_BELOW_BPS and frame.width >= 320:
            small = frame.reformat(width=frame.width // 4 * 2, height=frame.height // 4 * 2,
                                   format="yuv420p")
            small.pts, small.time_base = frame.pts, frame.time_base
            frame = small
        return super().encode(frame, force_keyframe)  # type: ignore[no-any-return]


#: At or below this Opus bitrate (the adaptation's lean tier) packets carry
#: 60 ms instead of 20 ms: a third of the packets, so a third of the per-packet
#: RTP/SRTP/UDP/IP headers and of the VPN's key mask per packet, which at
#: 16 kb/s cost more key than the speech itself.
LONG_PACKETS_AT_OR_BELOW_BPS = 16_000
LONG_PACKET_SAMPLES = 3 * AUDIO_SAMPLES


class CappedOpusEncoder(OpusEncoder):
    """aiortc's Opus encoder at a settable bitrate (re-opened when it changes);
    60 ms packets at :data:`LONG_PACKETS_AT_OR_BELOW_BPS` and below."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = 0
        self.packet_samples = AUDIO_SAMPLES
        self._offset = 0
        self._last = -AUDIO_SAMPLES
        self._last_samples = AUDIO_SAMPLES
        self.set_cap(cap)

    def set_cap(self, cap: int) -> None:
        if cap == self.cap:
            return
        self.cap = cap
        samples = LONG_PACKET_SAMPLES if cap <= LONG_PACKETS_AT_OR_BELOW_BPS else AUDIO_SAMPLES
        codec = CodecContext.create("libopus", "w")
        for name in ("format", "layout", "sample_rate", "time_base"):
            setattr(codec, name, getattr(self.codec, name))
        codec.options = {"application": "voip", "frame_duration": str(samples * 1000 // 48000)}
        codec.bit_rate = cap
        self.codec = codec
        if samples != self.packet_samples:
            self.packet_samples = samples
            self.resampler = AudioResampler(
                format="s16", layout="stereo", rate=48000, frame_size=samples
            )
        self.first_packet_pts = None
        self._offset = self._last + self._last_samples  # timestamps continue

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        payloads, timestamp = super().encode(frame, force_keyframe)
        if payloads:
            timestamp += self._offset
            self._last = timestamp
            self._last_samples = opus_packet_samples(payloads[-1]) or self.packet_samples
        return payloads, timestamp


@dataclass
class BotOptions:
    width: int = 640
    height: int = 480
    fps: float = 15.0
    audio: bool = True
    screen: bool = False
    screen_width: int = 1280
    screen_height: int = 720
    screen_fps: float = 5.0
    decode_limit: int | None = None  # video streams decoded; the rest only counted
    verify_tls: bool = True
    pre_encoded: bool = False  # camera replays a VP8 clip encoded once at start-up
    clip_seconds: float = 10.0  # length of that clip's loop
    keyframe_interval_s: float = 2.0  # its keyframe spacing
    clip_path: Path | None = None  # load the clip from here (or store it here)
    #: receive buffer (SO_RCVBUF, bytes) of each subscription's UDP socket; None:
    #: the system's default. A load test's bots share the machine's cores and get
    #: the CPU in bursts: a larger buffer rides them out instead of dropping.
    socket_buffer: int | None = None


def clip_parameters(options: BotOptions) -> dict[str, Any]:
    """The :func:`~qkdmeet.conference.media.encode_clip` arguments of a pre-encoded camera."""
    return {
        "width": options.width,
        "height": options.height,
        "fps": options.fps,
        "frames": max(2, round(options.clip_seconds * options.fps)),
        "keyframe_interval": max(1, round(options.keyframe_interval_s * options.fps)),
        "bitrate": DEFAULT_BITRATES["camera"],
    }


@dataclass
class _Received:
    publisher: str
    name: str
    kind: str  # camera | screen
    track: str  # audio | video
    stats: StreamStats = field(default_factory=StreamStats)
    decoded: bool = False
    unreadable: int = 0
    pending_bytes: int = 0
    origin: int | None = None
    replayed: int = 0
    timestamps: Unwrapper = field(default_factory=lambda: Unwrapper(RTP_TIMESTAMP_MODULUS))
    replay_index: Unwrapper | None = None

    def record_encoded(
        self, timestamp: int, ticks: float, arrived: float, size: int, frames: int = 1
    ) -> None:
        """Count a frame from its RTP timestamp (``ticks`` per frame), undecoded;
        a packet of ``frames`` frames (60 ms of Opus: 3) counts as that many."""
        unwrapped = self.timestamps(timestamp)
        if self.origin is None:
            self.origin = unwrapped
        first = round((unwrapped - self.origin) / ticks)
        for k in range(max(1, frames)):
            self.stats.record(first + k, None, arrived, size if k == 0 else 0)

    def record_code(self, counter: int, sent_ms: int, arrived: float, size: int) -> None:
        """Count a decoded frame from its frame code (live or replayed)."""
        replay = split_replay_counter(counter)
        if replay is None:
            latency_ms = (int(arrived * 1000) - sent_ms) % (1 << 32)
            self.stats.record(counter, arrived - latency_ms / 1000, arrived, size)
            return
        index, period = replay
        if period < 2:
            self.unreadable += 1
            return
        if self.replay_index is None or self.replay_index.modulus != period:
            self.replay_index = Unwrapper(period)
        self.replayed += 1
        self.stats.record(self.replay_index(index), None, arrived, size)

    def report(self) -> dict[str, Any]:
        s = self.stats
        out: dict[str, Any] = {
            "from": self.publisher,
            "name": self.name,
            "kind": self.kind,
            "track": self.track,
            "decoded": self.decoded,
            "frames": s.frames,
            "fps": round(s.fps(), 2),
            "bitrate_bps": round(s.bitrate()),
            "lost": s.lost,
            "loss_ratio": round(s.loss_ratio(), 4),
            "unreadable": self.unreadable,
        }
        if self.replayed:
            out["replayed"] = self.replayed
        if s.latencies:
            out["latency_ms_p50"] = round(1000 * s.latency_percentile(50), 1)
            out["latency_ms_p95"] = round(1000 * s.latency_percentile(95), 1)
        return out


class ConferenceBot:
    """A headless participant. ``await start()``, ``await run(seconds)``, ``await stop()``."""

    def __init__(
        self,
        url: str,
        room: str | None,
        name: str,
        options: BotOptions | None = None,
        *,
        secret: str | None = None,
    ) -> None:
        """``url``: the room's invite (or moderator) URL, as the operator handed it
        out (``https://host:port/?room=R#invite=S``); or the server's base URL with
        ``room`` and ``secret`` given."""
        invite = parse_invite(url)
        if room and invite.room and room != invite.room:
            raise ValueError(f"the invite is for room {invite.room!r}, not {room!r}")
        self.url = invite.base
        self.room = room or invite.room or ""
        if not self.room:
            raise ValueError("no room: pass an invite URL (or a room)")
        self.secret = secret if secret is not None else invite.secret
        #: the session token the server issued at join (for the HTTP API)
        self.token: str | None = None
        self.moderator = False
        self.name = name
        self.options = options or BotOptions()
        self.state = BotState.NEW
        self.id = ""
        self.bitrates: dict[str, int] = dict(DEFAULT_BITRATES)
        self.messages: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.documents: list[dict[str, Any]] = []
        #: the room as the protocol tells it: id -> {"id", "name", "moderator",
        #: "muted": {"audio", "video"}, "hand"}, this bot included
        self.participants: dict[str, dict[str, Any]] = {}
        self.speaker: str | None = None  # the room's active speaker (``speaker``)
        self.locked = False
        self.muted: dict[str, bool] = {"audio": False, "video": False}
        #: who muted this bot's microphone / camera (a moderator's id), while muted so
        self.muted_by: dict[str, str | None] = {"audio": None, "video": None}
        self.hand = False
        self.received: dict[str, _Received] = {}
        self.camera: TestPatternTrack | ReplayVideoTrack | None = None
        self.screen: SlidesTrack | None = None
        self.tone: ToneTrack | ReplayAudioTrack | None = None
        self.video_encoders: dict[str, CappedVp8Encoder] = {}
        self.audio_encoder: CappedOpusEncoder | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._pcs: dict[str, RTCPeerConnection] = {}
        self._pending: dict[str, asyncio.Future[str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._joined: asyncio.Future[dict[str, Any]] | None = None
        self._message_event = asyncio.Event()
        self._decoding = 0
        self.packers: dict[str, PackOnlyEncoder] = {}

    # lifecycle -----------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.url.startswith("https"):
            return False
        if self.options.verify_tls:
            return ssl.create_default_context()
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx

    async def start(self, wait_s: float = 20.0) -> None:
        if self.state is not BotState.NEW:
            raise BotError(f"cannot start a bot in state {self.state.value}")
        try:
            await self._start(wait_s)
        except BaseException:
            await self.stop()
            raise

    async def _make_camera(self) -> TestPatternTrack | ReplayVideoTrack:
        o = self.options
        if not o.pre_encoded:
            return TestPatternTrack(o.width, o.height, o.fps)
        clip = await asyncio.to_thread(cached_clip, o.clip_path, **clip_parameters(o))
        return ReplayVideoTrack(clip)

    async def _start(self, wait_s: float) -> None:
        if not self.secret:
            raise BotError("no invite: join with the room's invite URL (…#invite=SECRET)")
        # 0. the camera first: a pre-encoded clip is encoded (or loaded) before joining
        self.camera = await self._make_camera()
        # 1. connect the signalling socket and join
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl()))
        ws_url = self.url.replace("https://", "wss://").replace("http://", "ws://") + "/ws"
        # the server may not be reachable yet (a QKD-VPN still waiting for its
        # first key drops packets): retry until the join deadline
        deadline = time.monotonic() + wait_s
        attempts = 0
        while True:
            attempts += 1
            try:
                self._ws = await self._session.ws_connect(ws_url, max_msg_size=0)
                break
            except (aiohttp.ClientError, OSError) as exc:
                if time.monotonic() + CONNECT_RETRY_S >= deadline:
                    await self._session.close()
                    raise BotError(
                        f"cannot connect to {ws_url} ({attempts} attempts): {exc}"
                    ) from exc
                logger.info("bot %s: %s unreachable (%s), retrying", self.name, ws_url, exc)
                await asyncio.sleep(CONNECT_RETRY_S)
        loop = asyncio.get_running_loop()
        self._joined = loop.create_future()
        self._reader = asyncio.ensure_future(self._read_loop())
        await self._send(
            {"type": "join", "room": self.room, "name": self.name, "secret": self.secret}
        )
        joined = await asyncio.wait_for(self._joined, wait_s)
        self.id = joined["id"]
        self.token = joined.get("token")
        self.moderator = bool(joined.get("moderator"))
        self.bitrates = dict(joined["bitrates"])
        self.documents = list(joined.get("documents", []))
        self.state = BotState.JOINED
        self._follow_pauses()
        # 2. publish the camera (and screen)
        tracks: list[MediaStreamTrack] = [self.camera]
        if self.options.audio:
            if self.options.pre_encoded:
                tone = await asyncio.to_thread(cached_tone_clip, 50, DEFAULT_BITRATES["audio"])
                self.tone = ReplayAudioTrack(tone)
            else:
                self.tone = ToneTrack()
            self.tone.muted = self.muted["audio"]
            tracks.append(self.tone)
        await self._publish("camera", "camera", tracks, wait_s)
        if not self.options.audio:  # no microphone: the list shows it off
            await self.mute("audio", True)
        if self.options.screen:
            await self.start_screen(wait_s)

    async def start_screen(self, wait_s: float = 20.0) -> None:
        o = self.options
        self.screen = SlidesTrack(o.screen_width, o.screen_height, o.screen_fps)
        self._follow_pauses()
        await self._publish("screen", "screen", [self.screen], wait_s)

    async def stop_screen(self) -> None:
        pc = self._pcs.pop("screen", None)
        if pc is not None:
            await self._send({"type": "unpublish", "pc": "screen"})
            await pc.close()

    async def stop(self) -> None:
        if self.state is BotState.CLOSED:
            return
        self.state = BotState.CLOSED
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send({"type": "leave"})
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # a peer connection that does not close in time is left to the process's
        # exit: stopping never hangs (a load test's bot must end)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(pc.close() for pc in self._pcs.values()),
                               return_exceptions=True),
                STOP_TIMEOUT_S,
            )
        self._pcs.clear()
        if self._ws is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ws.close(), STOP_TIMEOUT_S)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def drop(self) -> None:
        """Vanish without ``leave``: close the socket and media abruptly (tests)."""
        if self._ws is not None:
            await self._ws.close()
        await self.stop()

    async def run(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def reset_stats(self) -> None:
        """Forget what was received so far (e.g. after a warm-up)."""
        for rec in self.received.values():
            rec.stats = StreamStats()
            rec.unreadable = 0
            rec.replayed = 0
            rec.origin = None

    # signalling ----------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is None or self._ws.closed:
            raise ConnectionError("signalling socket is closed")
        await self._ws.send_str(json.dumps(message))

    async def send_raw(self, text: str) -> None:
        """Send a raw text frame (for tests of the server's input checks)."""
        if self._ws is None:
            raise ConnectionError("not connected")
        await self._ws.send_str(text)

    async def chat(self, text: str) -> None:
        await self._send({"type": "chat", "text": text})

    async def mute(self, kind: str, muted: bool) -> None:
        """Mute (or unmute) this bot's microphone (``audio``) or camera (``video``):
        a muted tone sends silence, a muted live camera sends no frames."""
        self._set_muted(kind, muted)
        await self._send({"type": "mute", "kind": kind, "muted": muted})

    async def raise_hand(self, raised: bool = True) -> None:
        await self._send({"type": "hand", "raised": raised})

    async def mute_participant(self, participant: str, kind: str) -> None:
        """Moderator: mute another participant's microphone or camera."""
        await self._send({"type": "mute_participant", "id": participant, "kind": kind})

    async def remove(self, participant: str) -> None:
        """Moderator: remove another participant from the room."""
        await self._send({"type": "remove", "id": participant})

    async def lock(self, locked: bool = True) -> None:
        """Moderator: lock (or unlock) the room against new joins."""
        await self._send({"type": "lock", "locked": locked})

    def _set_muted(self, kind: str, muted: bool, by: str | None = None) -> None:
        if kind not in self.muted:
            raise ValueError(f"mute: kind must be 'audio' or 'video', not {kind!r}")
        self.muted[kind] = muted
        self.muted_by[kind] = by if muted else None
        if kind == "audio" and isinstance(self.tone, (ToneTrack, ReplayAudioTrack)):
            self.tone.muted = muted
        self._follow_pauses()
        me = self.participants.get(self.id)
        if me is not None:
            me["muted"][kind] = muted

    async def wait_for(self, type_: str, wait_s: float = 10.0, **match: Any) -> dict[str, Any]:
        """The first message of ``type_`` (seen so far or later) whose fields match."""

        def find() -> dict[str, Any] | None:
            for m in self.messages:
                if m.get("type") == type_ and all(m.get(k) == v for k, v in match.items()):
                    return m
            return None

        async def poll() -> dict[str, Any]:
            while (found := find()) is None:
                self._message_event.clear()
                await self._message_event.wait()
            return found

        return await asyncio.wait_for(poll(), wait_s)

    async def _read_loop(self) -> None:
        assert self._ws is not None
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    logger.debug("bot %s: non-JSON message dropped", self.name)
                    continue
                if not isinstance(data, dict):
                    continue
                self.messages.append(data)
                self._message_event.set()
                self._handle(data)
        finally:
            if self._joined is not None and not self._joined.done():
                self._joined.set_exception(BotError("signalling socket closed before joined"))
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(BotError("signalling socket closed"))
            self._message_event.set()

    def _handle(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        self._follow_room(data)
        if kind == "joined" and self._joined is not None and not self._joined.done():
            self._joined.set_result(data)
        elif kind == "error":
            self.errors.append(str(data.get("reason")))
            if self._joined is not None and not self._joined.done():
                self._joined.set_exception(BotError(f"refused: {data.get('reason')}"))
        elif kind == "answer":
            fut = self._pending.get(str(data.get("pc")))
            if fut is not None and not fut.done():
                fut.set_result(str(data.get("sdp")))
        elif kind == "subscribe":
            self._spawn(self._on_subscribe(data))
        elif kind == "unsubscribe":
            pc = self._pcs.pop(str(data.get("pc")), None)
            if pc is not None:
                self._spawn(pc.close())
        elif kind == "bitrate":
            self._apply_bitrates(data)
        elif kind == "document":
            self.documents.append(data["document"])

    def _follow_room(self, data: dict[str, Any]) -> None:
        """The participant list, hands, the active speaker and the lock, from the
        server's messages; a moderator's mute of this bot is obeyed."""
        kind = data.get("type")
        if kind == "joined":
            self.id = str(data.get("id"))
            self.participants = {}
            self.speaker = data.get("speaker")
            self.locked = bool(data.get("locked"))
            for p in [*data.get("participants", []), {"id": data.get("id"),
                                                     "name": self.name,
                                                     "moderator": data.get("moderator")}]:
                self._add_participant(p)
        elif kind == "participant_joined":
            self._add_participant(data)
        elif kind == "participant_left":
            self.participants.pop(str(data.get("id")), None)
        elif kind == "mute":
            who, media = str(data.get("id")), str(data.get("kind"))
            p = self.participants.get(who)
            if p is not None and media in p["muted"]:
                p["muted"][media] = bool(data.get("muted"))
            by = data.get("by")
            if who == self.id and by is not None and media in self.muted:
                self._set_muted(media, bool(data.get("muted")), str(by))
        elif kind == "hand":
            p = self.participants.get(str(data.get("id")))
            if p is not None:
                p["hand"] = bool(data.get("raised"))
            if data.get("id") == self.id:
                self.hand = bool(data.get("raised"))
        elif kind == "speaker":
            self.speaker = data.get("id")
        elif kind == "locked":
            self.locked = bool(data.get("locked"))

    def _add_participant(self, data: dict[str, Any]) -> None:
        muted = data.get("muted") or {}
        self.participants[str(data.get("id"))] = {
            "id": str(data.get("id")),
            "name": str(data.get("name")),
            "moderator": bool(data.get("moderator")),
            "muted": {k: bool(muted.get(k)) for k in ("audio", "video")},
            "hand": bool(data.get("hand")),
        }

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("bot %s task failed: %r", self.name, task.exception())

    # publishing ----------------------------------------------------------------

    async def _publish(
        self, pc_name: str, kind: str, tracks: list[MediaStreamTrack], wait_s: float
    ) -> None:
        pc = RTCPeerConnection(rtc_configuration())
        self._pcs[pc_name] = pc
        for track in tracks:
            transceiver = pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(codec_preferences(track.kind))
            if isinstance(track, ReplayVideoTrack):
                self._install_packer(transceiver.sender, kind, track)
            elif isinstance(track, ReplayAudioTrack):
                packer = self.packers["audio"] = PackOnlyEncoder("audio")
                hooks.set_encoder(transceiver.sender, packer)
                _send_audio_level(transceiver.sender, track)
            else:
                self._install_encoder(transceiver.sender, kind)
        await pc.setLocalDescription(await pc.createOffer())
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[pc_name] = fut
        await self._send(
            {"type": "publish", "pc": pc_name, "kind": kind, "sdp": pc.localDescription.sdp}
        )
        try:
            sdp = await asyncio.wait_for(fut, wait_s)
        finally:
            self._pending.pop(pc_name, None)
        await pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    def _install_encoder(self, sender: RTCRtpSender, kind: str) -> None:
        if sender.kind == "video":
            encoder: Any = CappedVp8Encoder(self.bitrates[kind])
            self.video_encoders[kind] = encoder
        else:
            encoder = self.audio_encoder = CappedOpusEncoder(self.bitrates["audio"])
        hooks.set_encoder(sender, encoder)

    def _install_packer(self, sender: RTCRtpSender, kind: str, track: ReplayVideoTrack) -> None:
        """The sender only packetises the replayed VP8 frames; PLI/FIR go to the track."""
        packer = self.packers[kind] = PackOnlyEncoder("video")
        hooks.set_encoder(sender, packer)
        hooks.on_keyframe_request(sender, track.request_keyframe)

    def _follow_pauses(self) -> None:
        """Pause (or resume) each live video track whose cap is 0, and the live
        camera while muted (a replayed clip cannot follow caps or mutes: the
        server holds a moderator-muted camera's frames itself)."""
        for kind, track in (("camera", self.camera), ("screen", self.screen)):
            if isinstance(track, (TestPatternTrack, SlidesTrack)):
                muted = kind == "camera" and self.muted["video"]
                track.pause(self.bitrates.get(kind) == 0 or muted)

    def _apply_bitrates(self, data: dict[str, Any]) -> None:
        """Follow the server's caps; a video cap of 0 pauses that track (no frames)."""
        for key in DEFAULT_BITRATES:
            value = data.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                if value == 0 and key == "audio":
                    continue  # audio is never paused
                self.bitrates[key] = value
        self._follow_pauses()
        for kind, enc in self.video_encoders.items():
            if self.bitrates[kind] > 0:
                enc.cap = self.bitrates[kind]
        if self.audio_encoder is not None:
            self.audio_encoder.set_cap(self.bitrates["audio"])

    # receiving -----------------------------------------------------------------

    async def _on_subscribe(self, data: dict[str, Any]) -> None:
        pc_name = str(data["pc"])
        pc = RTCPeerConnection(rtc_configuration())
        self._pcs[pc_name] = pc
        await pc.setRemoteDescription(RTCSessionDescription(str(data["sdp"]), "offer"))
        for transceiver in pc.getTransceivers():
            rec = _Received(
                str(data["from"]), str(data["name"]), str(data["kind"]), transceiver.kind
            )
            key = f"{rec.publisher}:{rec.kind}:{rec.track}"
            self.received[key] = rec
            limit = self.options.decode_limit
            decode = transceiver.kind == "video" and (limit is None or self._decoding < limit)
            if decode:
                self._decoding += 1
                rec.decoded = True
                tap_receiver(transceiver.receiver, self._byte_counter(rec), passthrough=True)
                self._spawn(self._consume(transceiver.receiver.track, rec))
            else:
                tap_receiver(transceiver.receiver, self._frame_counter(rec))
        await pc.setLocalDescription(await pc.createAnswer())
        if self.options.socket_buffer:
            _set_receive_buffer(pc, self.options.socket_buffer)
        await self._send({"type": "answer", "pc": pc_name, "sdp": pc.localDescription.sdp})

    @staticmethod
    def _byte_counter(rec: _Received) -> Any:
        def count(data: bytes, timestamp: int) -> None:
            rec.pending_bytes += len(data)

        return count

    def _frame_counter(self, rec: _Received) -> Any:
        ticks = VIDEO_CLOCK / self.options.fps if rec.track == "video" else AUDIO_SAMPLES
        if rec.kind == "screen":
            ticks = VIDEO_CLOCK / self.options.screen_fps

        audio = rec.track == "audio"

        def count(data: bytes, timestamp: int) -> None:
            # audio counts 20 ms frames: a 60 ms packet is three
            frames = max(1, opus_packet_samples(data) // AUDIO_SAMPLES) if audio else 1
            rec.record_encoded(timestamp, ticks, time.time(), len(data), frames)

        return count

    async def _consume(self, track: MediaStreamTrack, rec: _Received) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                arrived = time.time()
                if not isinstance(frame, VideoFrame):
                    continue
                code = read_frame_code(luma(frame))
                size, rec.pending_bytes = rec.pending_bytes, 0
                if code is None:
                    rec.unreadable += 1
                    continue
                rec.record_code(*code, arrived, size)

    # documents -----------------------------------------------------------------

    async def upload(self, path: str | Path, content_type: str | None = None) -> dict[str, Any]:
        """Upload a document to the room; returns the server's document JSON."""
        if self._session is None:
            raise BotError("not started")
        p = Path(path)
        ctype = content_type or _guess_type(p)
        form = aiohttp.FormData()
        form.add_field(
            "file", await asyncio.to_thread(p.read_bytes), filename=p.name, content_type=ctype
        )
        async with self._session.post(
            f"{self.url}/api/rooms/{self.room}/documents", data=form, headers=self.auth_headers()
        ) as resp:
            if resp.status != 200:
                raise BotError(f"upload refused: {resp.status} {await resp.text()}")
            doc: dict[str, Any] = await resp.json()
            return doc

    async def download(self, document: dict[str, Any]) -> bytes:
        if self._session is None:
            raise BotError("not started")
        async with self._session.get(
            self.url + str(document["url"]), headers=self.auth_headers()
        ) as resp:
            resp.raise_for_status()
            return await resp.read()

    def auth_headers(self) -> dict[str, str]:
        """The session token as an ``Authorization`` header (after joining)."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    # report --------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        streams = [r.report() for r in self.received.values()]
        video = [r for r in self.received.values() if r.track == "video"]
        audio = [r for r in self.received.values() if r.track == "audio"]
        latencies = [x for r in video for x in r.stats.latencies]
        sent = {
            "video_frames_sent": sum(t.frames_sent for t in (self.camera, self.screen) if t),
            "audio_frames_sent": self.tone.frames_sent if self.tone else 0,
            # seconds a cap of 0 held the track paused (the key-aware adaptation's last tier)
            "camera_paused_s": round(getattr(self.camera, "paused_s", 0.0), 1),
            "screen_paused_s": round(getattr(self.screen, "paused_s", 0.0), 1),
        }
        totals: dict[str, Any] = {
            **sent,
            "video_frames_received": sum(r.stats.frames for r in video),
            "audio_frames_received": sum(r.stats.frames for r in audio),
            "video_frames_lost": sum(r.stats.lost for r in video),
            "audio_frames_lost": sum(r.stats.lost for r in audio),
            "unreadable_frames": sum(r.unreadable for r in video),
            "bitrate_bps": round(sum(r.stats.bitrate() for r in self.received.values())),
        }
        if latencies:
            agg = StreamStats(latencies=latencies)
            totals["latency_ms_p50"] = round(1000 * agg.latency_percentile(50), 1)
            totals["latency_ms_p95"] = round(1000 * agg.latency_percentile(95), 1)
        return {
            "id": self.id,
            "name": self.name,
            "room": self.room,
            "camera": "pre-encoded VP8 replay" if self.options.pre_encoded else "live VP8",
            "bitrates": self.bitrates,
            "streams": streams,
            "totals": totals,
            "errors": self.errors,
        }


def _set_receive_buffer(pc: RTCPeerConnection, size: int) -> int:
    """SO_RCVBUF of every UDP socket ICE gathered for ``pc`` (up to the system's
    ``net.core.rmem_max``); how many sockets were set."""
    done = 0
    for transceiver in pc.getTransceivers():
        ice = transceiver.receiver.transport.transport
        for protocol in getattr(getattr(ice, "_connection", None), "_protocols", []):
            sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
                done += 1
    return done


def _send_audio_level(sender: RTCRtpSender, track: ReplayAudioTrack) -> None:
    """Put the replayed tone's audio level in each packet's RFC 6464 header
    extension, as a browser does (aiortc computes it only for frames it encodes)."""

    def with_level(frame: Any) -> Any:
        if frame.audio_level is None:
            frame.audio_level = track.level
        return frame

    hooks.wrap_next_encoded_frame(sender, with_level)


def _guess_type(path: Path) -> str:
    return {
        ".pdf": "application/pdf",
        ".html": "text/html",
        ".htm": "text/html",
        ".png": "image/png",
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
        ".txt": "text/plain",
    }.get(path.suffix.lower(), "application/octet-stream")
