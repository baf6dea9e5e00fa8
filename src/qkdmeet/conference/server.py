"""The conference server: HTTPS, WebSocket signalling, forwarding, documents, caps.

Two aiohttp applications. The *participant* one (HTTPS on ``host:port``)
serves the browser app (``web/``), the signalling WebSocket (``/ws``, protocol
in ``PROTOCOL.md``) and the participants' HTTP API, every request of which is
authenticated by the session token its WebSocket got at ``join`` and answered
for that participant's room only. The *admin* one (HTTP on a Unix socket of
mode 0600, peers checked by uid) is the operator's control plane: rooms and
their invites, the key-budget caps, the link indicator, full room state.
Rooms exist only when the operator creates them (``access.py``). Media runs
over one server-side RTCPeerConnection per published stream set (a
:class:`Publication`) and one per (subscriber, publication) pair (a
:class:`Subscription`); the media path is ``forwarding.py``.

Lifecycle of a participant (a :class:`Session`, one per WebSocket)::

    connected --join--> joined --leave / socket closed--> gone
                          | publish: answer, then a subscribe offer to everyone else
                          | unpublish: unsubscribe to everyone else

Meeting controls (``PROTOCOL.md``): the participant list's state (mutes,
hands) rides on ``joined``/``participant_joined``; the room's active speaker
comes from the RFC 6464 audio levels of the publishers' packets
(``speaker.py``, no decoding); a moderator's ``mute_participant`` holds that
kind of the target's camera in its forwarders until the target unmutes.

Every bad message is answered with an ``error`` and the socket stays open;
a vanished participant is cleaned up exactly like one that left. Background
work (subscription offers, connection-state handlers) is owned by the server
and cancelled by :meth:`ConferenceServer.stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import socket
import stat
import struct
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from qkdmeet.conference import aiortc_hooks as hooks
from qkdmeet.conference import validation
from qkdmeet.conference.access import (
    AccessError,
    FailureLimiter,
    RoomRecord,
    RoomRegistry,
    new_token,
)
from qkdmeet.conference.config import ServerConfig
from qkdmeet.conference.documents import Document, DocumentError, DocumentStore, check_type
from qkdmeet.conference.documents import clean_name as clean_document_name
from qkdmeet.conference.forwarding import Forwarder, PackOnlyEncoder, install_packer
from qkdmeet.conference.room import DEFAULT_BITRATES, Participant, Room, RoomError
from qkdmeet.conference.signalling import (
    MAX_MESSAGE_BYTES,
    Message,
    SignallingError,
    encode,
    error_message,
    error_of,
    parse_message,
)
from qkdmeet.conference.speaker import SpeakerDetector, tap_audio_level

logger = logging.getLogger(__name__)

VIDEO_CODEC = "video/VP8"
AUDIO_CODEC = "audio/opus"
#: The participant pages may load scripts, styles and media from the server only;
#: no inline script, no eval, no plugins, not framed by another site.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; frame-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
#: Messages a participant may send in a burst, and per second after it.
MESSAGE_BURST = 100
MESSAGES_PER_S = 50.0
#: WebSockets open at once, in all and from one source address (beyond: 503 / 429).
MAX_CONNECTIONS = 512
MAX_CONNECTIONS_PER_SOURCE = 32
#: Messages waiting to be sent to one WebSocket; a client that reads slower than
#: that is cut off (its queue would otherwise grow without bound).
MAX_PENDING_SENDS = 64
#: Seconds between two sweeps for documents past their room's retention.
RETENTION_SWEEP_S = 5.0
_PLACEHOLDER = (
    "<!doctype html><title>qkdmeet conference</title>"
    "<p>The browser app is not installed (conference/web/ is missing).</p>"
)


class ServerState(enum.Enum):
    NEW = "new"
    STARTED = "started"
    STOPPED = "stopped"


def rtc_configuration() -> RTCConfiguration:
    """No STUN/TURN: host candidates only (the sites are routed through the VPN)."""
    return RTCConfiguration(iceServers=[])


def pin_codecs(transceiver: Any) -> None:
    """Keep only VP8 (and its RTX) for video, Opus for audio, on a negotiated transceiver."""
    wanted = VIDEO_CODEC if transceiver.kind == "video" else AUDIO_CODEC
    negotiated = hooks.codecs(transceiver)
    main = [c for c in negotiated if c.mimeType.lower() == wanted.lower()]
    if not main:
        raise SignallingError(
            f"publish: {transceiver.kind} must be {wanted.split('/')[1]}", "bad_sdp"
        )
    pts = {c.payloadType for c in main}
    rtx = [
        c
        for c in negotiated
        if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") in pts
    ]
    hooks.set_codecs(transceiver, main + rtx)


def codec_preferences(kind: str) -> list[Any]:
    wanted = VIDEO_CODEC if kind == "video" else AUDIO_CODEC
    caps = RTCRtpSender.getCapabilities(kind).codecs
    return [c for c in caps if c.mimeType.lower() in (wanted.lower(), f"{kind}/rtx")]


@dataclass(eq=False)
class Publication:
    owner: Session
    pc_name: str
    kind: str  # camera | screen
    pc: RTCPeerConnection
    forwarders: dict[str, Forwarder]
    active: bool = True

    def stats(self) -> dict[str, Any]:
        return {
            "from": self.owner.id,
            "pc": self.pc_name,
            "kind": self.kind,
            "tracks": {k: f.stats() for k, f in self.forwarders.items()},
        }


@dataclass(eq=False)
class Subscription:
    owner: Session
    publication: Publication
    pc_name: str
    pc: RTCPeerConnection
    packers: list[PackOnlyEncoder]


@dataclass(eq=False)
class Session:
    ws: web.WebSocketResponse
    source: str = ""
    room: RoomState | None = None
    participant: Participant | None = None
    token: str | None = None  # issued at join; authenticates this session's HTTP requests
    moderator: bool = False  # joined with the moderator link
    publications: dict[str, Publication] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    closed: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _allowance: float = MESSAGE_BURST
    _allowance_at: float = field(default_factory=time.monotonic)
    _flood_reported: float = 0.0
    _waiting: int = 0  # sends queued on _lock
    _closer: asyncio.Task[Any] | None = None

    def take_message(self) -> bool:
        """Token bucket: False when this session floods (the message is dropped)."""
        now = time.monotonic()
        self._allowance = min(
            MESSAGE_BURST, self._allowance + (now - self._allowance_at) * MESSAGES_PER_S
        )
        self._allowance_at = now
        if self._allowance < 1.0:
            return False
        self._allowance -= 1.0
        return True

    @property
    def id(self) -> str:
        return self.participant.id if self.participant else ""

    async def send(self, text: str) -> None:
        if self.closed or self.ws.closed:
            return
        if self._waiting >= MAX_PENDING_SENDS:  # a slow consumer: bounded, then cut off
            self.closed = True
            self._closer = asyncio.ensure_future(self.ws.close())
            return
        self._waiting += 1
        try:
            async with self._lock:
                if not self.closed:
                    await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            self.closed = True
        finally:
            self._waiting -= 1


@dataclass(eq=False)
class RoomState:
    room: Room
    record: RoomRecord
    sessions: dict[str, Session] = field(default_factory=dict)
    locked: bool = False  # a moderator locked it: no one else joins
    speaker: SpeakerDetector = field(default_factory=SpeakerDetector)

    def publications(self) -> list[Publication]:
        return [p for s in self.sessions.values() for p in s.publications.values() if p.active]

    async def broadcast(self, text: str, exclude: Session | None = None) -> None:
        await asyncio.gather(*(s.send(text) for s in self.sessions.values() if s is not exclude))


class ConferenceServer:
    """The conference server. ``await start()``, then ``port``/``url``; ``await stop()``."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig(port=0)
        self.state = ServerState.NEW
        self.rooms: dict[str, RoomState] = {}
        self.link: dict[str, Any] | None = None
        self.documents = DocumentStore(self.config.uploads, self.config.max_upload_bytes)
        self.registry = RoomRegistry(self.config.state_dir / "rooms.json")
        #: URLs of the rooms whose secrets were minted at this start (config rooms)
        self.invites: list[dict[str, str]] = []
        self.join_failures = FailureLimiter(self.config.max_failed_joins)
        self._tokens: dict[str, Session] = {}
        self._sessions: set[Session] = set()
        self._per_source: dict[str, int] = {}  # open WebSockets per source address
        self._tasks: set[asyncio.Task[Any]] = set()
        self._packed_closed = {"frames": 0, "packets": 0}  # of subscriptions since closed
        self._runner: web.AppRunner | None = None
        self._admin_runner: web.AppRunner | None = None
        self._port = 0
        self.counters = {
            "bad_messages": 0,
            "vanished": 0,
            "publications": 0,
            "subscriptions": 0,
            "failed_joins": 0,
            "throttled": 0,
            "flood_drops": 0,
            "refused_origins": 0,
            "unauthenticated": 0,
            "refused_connections": 0,
        }

    # lifecycle -----------------------------------------------------------------

    def _set_state(self, state: ServerState) -> None:
        logger.info("conference server %s -> %s", self.state.value, state.value)
        self.state = state

    async def start(self) -> None:
        if self.state is not ServerState.NEW:
            raise RuntimeError(f"cannot start a server in state {self.state.value}")
        # 1. the participants' application and its routes
        app = web.Application(
            client_max_size=self.config.max_upload_bytes + 64 * 1024,
            middlewares=[_security_headers],
        )
        app.router.add_get("/ws", self._ws_handler)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/api/room", self._api_my_room)
        app.router.add_get("/api/rooms/{room}", self._api_my_room)
        app.router.add_post("/api/rooms/{room}/documents", self._api_upload)
        app.router.add_get("/api/documents/{doc}", self._api_download)
        app.router.add_route("*", "/api/{path:.*}", self._api_none)
        app.router.add_get("/", self._static)
        app.router.add_get("/{path:.+}", self._static)
        # 2. the rooms: those of the registry, then the configuration's (fresh secrets)
        for name in list(self.registry.rooms):
            self._room_state(self.registry.rooms[name])
        # 3. TLS (self-signed on first run when no certificate is configured)
        ssl_context = self.config.ssl_context()
        # 4. listen
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.config.host, self.config.port, ssl_context=ssl_context
        )
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self._port = sockets[0].getsockname()[1] if sockets else self.config.port
        try:
            await self._start_admin()
        except BaseException:
            await self._runner.cleanup()
            raise
        for spec in self.config.rooms:
            self.invites.append(
                self.create_room(
                    spec.name,
                    replace=True,
                    expires_in_s=spec.expires_in_s,
                    retention_s=spec.retention_s,
                    max_documents=spec.max_documents,
                    max_document_bytes=spec.max_document_bytes,
                )
            )
        # documents of rooms that no longer exist go
        for doc in list(self.documents._docs.values()):
            if doc.room not in self.rooms:
                self.documents.delete(doc.id)
        self._spawn(self._retention_loop())
        self._set_state(ServerState.STARTED)

    async def _start_admin(self) -> None:
        """The admin interface: HTTP on a Unix socket only its owner (or root) may use."""
        path = self.config.admin_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()  # a stale socket of an earlier run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(path))
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        app = web.Application(middlewares=[_admin_guard])
        r = app.router
        r.add_get("/healthz", self._healthz)
        r.add_get("/api/rooms", self._api_rooms)
        r.add_post("/api/rooms", self._api_create_room)
        r.add_get("/api/rooms/{room}", self._api_room)
        r.add_delete("/api/rooms/{room}", self._api_close_room)
        r.add_post("/api/rooms/{room}/invite", self._api_rotate)
        r.add_post("/api/rooms/{room}/revoke", self._api_revoke)
        r.add_post("/api/rooms/{room}/cap", self._api_room_cap)
        r.add_post("/api/rooms/{room}/participants/{pid}/cap", self._api_participant_cap)
        r.add_post("/api/link", self._api_link)
        self._admin_runner = web.AppRunner(app, access_log=None)
        await self._admin_runner.setup()
        await web.SockSite(self._admin_runner, sock).start()

    async def stop(self) -> None:
        if self.state is not ServerState.STARTED:
            self._set_state(ServerState.STOPPED)
            return
        self._set_state(ServerState.STOPPED)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(self._leave(s) for s in list(self._sessions)))
        await asyncio.gather(*(s.ws.close() for s in list(self._sessions)), return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
            with contextlib.suppress(OSError):
                self.config.admin_path.unlink()

    # rooms -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The base of invite URLs (``public_url``, else :attr:`url`)."""
        return (self.config.public_url or self.url).rstrip("/")

    def create_room(self, name: str, *, replace: bool = False, **limits: Any) -> dict[str, str]:
        """Create a room (or, with ``replace``, re-key it): its invite and moderator URLs."""
        invite = self.registry.create(name, replace=replace, **limits)
        record = self.registry.get(name)
        state = self.rooms.get(name)
        if state is None:
            self._room_state(record)
        else:
            state.record = record
        return invite.urls(self.base_url)

    def _room_state(self, record: RoomRecord) -> RoomState:
        state = self.rooms[record.name] = RoomState(Room(record.name), record)
        return state

    async def close_room(self, name: str) -> list[str]:
        """Close a room: everyone out, its documents deleted, its invites gone."""
        state = self.rooms.pop(name, None)
        if state is None:
            raise AccessError(f"no room {name!r}")
        self.registry.remove(name)
        text = encode("closed", reason="the room was closed by the operator")
        for session in list(state.sessions.values()):
            await session.send(text)
            await self._leave(session)
            session.closed = True
            await session.ws.close()
        return self.documents.delete_room(name)

    def _retention(self, state: RoomState) -> float | None:
        r = state.record.retention_s
        return r if r is not None else self.config.retention_s

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(RETENTION_SWEEP_S)
            await self.sweep_documents()

    async def sweep_documents(self, now: float | None = None) -> list[str]:
        """Delete the documents past their room's retention; the IDs deleted."""
        retention = {name: self._retention(s) for name, s in self.rooms.items()}
        gone = self.documents.expired(retention, time.time() if now is None else now)
        for doc in gone:
            self.documents.delete(doc.id)
            state = self.rooms.get(doc.room)
            if state is not None:
                await state.broadcast(encode("document_removed", id=doc.id))
        return [d.id for d in gone]

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls else "http"
        host = "127.0.0.1" if self.config.host in ("0.0.0.0", "") else self.config.host
        return f"{scheme}://{host}:{self._port}"

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("conference task failed", exc_info=task.exception())

    # signalling ----------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        # Accept larger frames than MAX_MESSAGE_BYTES so that an oversize
        # message gets a protocol error instead of a closed socket.
        if not self._origin_ok(request):
            self.counters["refused_origins"] += 1
            raise web.HTTPForbidden(text="WebSocket from another origin refused")
        source = request.remote or ""
        if len(self._sessions) >= MAX_CONNECTIONS:
            self.counters["refused_connections"] += 1
            raise web.HTTPServiceUnavailable(text="too many connections")
        if self._per_source.get(source, 0) >= MAX_CONNECTIONS_PER_SOURCE:
            self.counters["refused_connections"] += 1
            raise web.HTTPTooManyRequests(text="too many connections from this address")
        ws = web.WebSocketResponse(max_msg_size=4 * MAX_MESSAGE_BYTES, heartbeat=20)
        await ws.prepare(request)
        session = Session(ws, source=source)
        self._sessions.add(session)
        self._per_source[source] = self._per_source.get(source, 0) + 1
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._on_text(session, msg.data)
                elif msg.type == WSMsgType.BINARY:
                    self.counters["bad_messages"] += 1
                    await session.send(
                        error_message("binary messages are not part of the protocol", "binary")
                    )
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            if session.participant is not None and not session.closed:
                self.counters["vanished"] += 1
            await self._leave(session)
            self._sessions.discard(session)
            left = self._per_source.pop(source, 1) - 1
            if left > 0:
                self._per_source[source] = left
        return ws

    def _origin_ok(self, request: web.Request) -> bool:
        """A browser's WebSocket must come from this server's own pages (or a
        configured origin); a client without ``Origin`` (the bot) still needs
        an invite to join."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        scheme = "https" if self.config.tls else "http"
        allowed = {f"{scheme}://{request.host}", *self.config.allowed_origins}
        if self.config.public_url:
            allowed.add(self.config.public_url.rstrip("/"))
        return origin.rstrip("/") in allowed

    async def _on_text(self, session: Session, raw: str) -> None:
        if not session.take_message():
            self.counters["flood_drops"] += 1
            now = time.monotonic()
            if now - session._flood_reported >= 1.0:
                session._flood_reported = now
                await session.send(error_message("too many messages: dropped", "flood"))
            return
        msg: Message | None = None
        try:
            msg = parse_message(raw)
            await self._dispatch(session, msg)
        except SignallingError as exc:
            self.counters["bad_messages"] += 1
            await session.send(error_of(exc))
        except RoomError as exc:  # authored texts (room.py), no exception detail in them
            self.counters["bad_messages"] += 1
            await session.send(error_message(str(exc), "invalid_field"))
        except Exception as exc:  # anything else: answer with a fixed text, keep the room
            self.counters["bad_messages"] += 1
            logger.info("signalling message failed: %r", exc)
            kind = msg.type if msg is not None else "message"
            await session.send(error_message(f"{kind}: could not be carried out", "failed"))

    async def _dispatch(self, session: Session, msg: Message) -> None:
        f = msg.fields
        if msg.type == "join":
            await self._join(session, f["room"], f["name"], f["secret"])
            return
        if session.participant is None or session.room is None:
            raise SignallingError(f"{msg.type}: join a room first", "not_joined")
        if msg.type == "publish":
            await self._publish(session, f["pc"], f["kind"], f["sdp"])
        elif msg.type == "unpublish":
            pub = session.publications.get(f["pc"])
            if pub is None:
                raise SignallingError("unpublish: no such published pc", "unknown_pc")
            await self._unpublish(pub)
        elif msg.type == "answer":
            sub = session.subscriptions.get(f["pc"])
            if sub is None:
                raise SignallingError("answer: no such subscription pc", "unknown_pc")
            try:
                await sub.pc.setRemoteDescription(RTCSessionDescription(f["sdp"], "answer"))
            except Exception:  # aiortc's SDP parser: its message stays in the log
                logger.info("answer: SDP refused", exc_info=True)
                raise SignallingError("answer: the SDP answer is not usable", "bad_sdp") from None
        elif msg.type == "chat":
            p = session.participant
            text = encode("chat", **{"from": p.id}, name=p.name, text=f["text"], ts=time.time())
            await session.room.broadcast(text)
        elif msg.type == "mute":
            p = session.participant
            p.muted[f["kind"]] = f["muted"]
            if not f["muted"] and p.held[f["kind"]]:  # unmuting lifts a moderator's mute
                p.held[f["kind"]] = False
                self._apply_holds(session)
            await session.room.broadcast(
                encode("mute", id=session.id, kind=f["kind"], muted=f["muted"])
            )
        elif msg.type == "hand":
            p = session.participant
            if f["raised"] != (p.hand is not None):
                p.hand = time.time() if f["raised"] else None
                await session.room.broadcast(
                    encode("hand", id=session.id, raised=f["raised"], at=p.hand)
                )
        elif msg.type == "leave":
            await self._leave(session)
            session.closed = True
            await session.ws.close()
        elif msg.type in ("remove", "lock", "mute_participant"):
            await self._moderate(session, msg)

    async def _moderate(self, session: Session, msg: Message) -> None:
        """A moderator's control; the right comes only from the moderator link."""
        state = session.room
        assert state is not None
        if not session.moderator:
            raise SignallingError(f"{msg.type}: only a moderator may do this", "forbidden")
        if msg.type == "lock":
            state.locked = msg.fields["locked"]
            await state.broadcast(encode("locked", locked=state.locked, by=session.id))
            return
        target = state.sessions.get(msg.fields["id"])
        if target is None or target is session or target.participant is None:
            raise SignallingError(f"{msg.type}: no such other participant", "invalid_field")
        if msg.type == "mute_participant":
            # enforced here (nothing of that kind is forwarded), obeyed by the
            # target's client, lifted only by the target unmuting itself
            kind = msg.fields["kind"]
            target.participant.muted[kind] = target.participant.held[kind] = True
            self._apply_holds(target)
            await state.broadcast(
                encode("mute", id=target.id, kind=kind, muted=True, by=session.id)
            )
            return
        await target.send(encode("removed", by=session.id))
        await self._leave(target)
        target.closed = True
        await target.ws.close()

    async def _join(self, session: Session, room_name: str, name: str, secret: str) -> None:
        if session.participant is not None:
            raise SignallingError("join: already joined")
        if self.join_failures.blocked(session.source):
            self.counters["throttled"] += 1
            await session.send(
                error_message("join: too many failed joins; try again later", "throttled")
            )
            session.closed = True
            await session.ws.close()
            return
        role = self.registry.authorise(room_name, secret)
        state = self.rooms.get(room_name)
        if role is None or state is None:
            self.join_failures.fail(session.source)
            self.counters["failed_joins"] += 1
            # the same answer for an unknown room and a wrong, expired or revoked secret
            raise SignallingError("join: unknown room or invalid invite", "join_refused")
        moderator = role == "moderator"
        if state.locked and not moderator:
            raise SignallingError(f"join: room {room_name!r} is locked", "locked")
        if len(state.sessions) >= self.config.max_participants:
            raise SignallingError(f"join: room {room_name!r} is full", "full")
        participant = state.room.join(name)
        session.room, session.participant, session.moderator = state, participant, moderator
        session.token = new_token()
        self._tokens[session.token] = session
        others = [s for s in state.sessions.values()]
        state.sessions[participant.id] = session
        await session.send(
            encode(
                "joined",
                id=participant.id,
                room=room_name,
                token=session.token,
                moderator=moderator,
                locked=state.locked,
                participants=[
                    {**s.participant.public(), "moderator": s.moderator}
                    for s in others
                    if s.participant
                ],
                speaker=state.speaker.speaker,
                bitrates=self._bitrates(state, participant.id),
                documents=[d.to_json() for d in self.documents.in_room(room_name)],
                link=self.link,
            )
        )
        await state.broadcast(
            encode("participant_joined", **participant.public(), moderator=moderator),
            exclude=session,
        )
        for pub in state.publications():
            if pub.owner is not session:
                self._spawn(self._subscribe(session, pub))

    def _bitrates(self, state: RoomState, participant_id: str) -> dict[str, int]:
        return {k: state.room.effective_bitrate(participant_id, k) for k in DEFAULT_BITRATES}

    async def _leave(self, session: Session) -> None:
        state, participant = session.room, session.participant
        if state is None or participant is None:
            return
        session.room = None
        if session.token is not None:
            self._tokens.pop(session.token, None)
            session.token = None
        for pub in list(session.publications.values()):
            await self._unpublish(pub)
        for sub in list(session.subscriptions.values()):
            await self._close_subscription(sub, notify=False)
        state.sessions.pop(participant.id, None)
        state.room.leave(participant.id)
        await state.broadcast(encode("participant_left", id=participant.id))
        if state.speaker.forget(participant.id):
            await state.broadcast(encode("speaker", id=None))

    # media ---------------------------------------------------------------------

    async def _publish(self, session: Session, pc_name: str, kind: str, sdp: str) -> None:
        if pc_name in session.publications:
            raise SignallingError("publish: that pc is already published", "invalid_field")
        pc = RTCPeerConnection(rtc_configuration())
        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            except Exception:  # aiortc's SDP parser: its message stays in the log
                logger.info("publish: SDP refused", exc_info=True)
                raise SignallingError("publish: the SDP offer is not usable", "bad_sdp") from None
            forwarders: dict[str, Forwarder] = {}
            for transceiver in pc.getTransceivers():
                if transceiver.kind in forwarders:
                    raise SignallingError(f"publish: more than one {transceiver.kind} track")
                pin_codecs(transceiver)
                forwarders[transceiver.kind] = Forwarder(transceiver.kind, transceiver.receiver)
                if transceiver.kind == "audio":
                    tap_audio_level(
                        transceiver.receiver,
                        lambda vad, level: self._on_audio_level(session, level),
                    )
            if "video" not in forwarders:
                raise SignallingError("publish: a stream set needs a video track")
            if kind == "screen" and "audio" in forwarders:
                raise SignallingError("publish: a screen share carries video only")
            await pc.setLocalDescription(await pc.createAnswer())
        except BaseException:
            await pc.close()
            raise
        pub = Publication(session, pc_name, kind, pc, forwarders)
        session.publications[pc_name] = pub
        self._apply_holds(session)
        self.counters["publications"] += 1
        pc.on("connectionstatechange", lambda: self._on_pc_state(pc, publication=pub))
        await session.send(encode("answer", pc=pc_name, sdp=pc.localDescription.sdp))
        assert session.room is not None
        for other in list(session.room.sessions.values()):
            if other is not session:
                self._spawn(self._subscribe(other, pub))

    def _apply_holds(self, session: Session) -> None:
        """Hold (or release) the tracks of the session's camera a moderator muted."""
        if session.participant is None:
            return
        for pub in session.publications.values():
            if pub.kind != "camera":
                continue  # a moderator's mute is of the microphone and camera
            for kind, fwd in pub.forwarders.items():
                fwd.hold(session.participant.held[kind])

    def _on_audio_level(self, session: Session, level: int) -> None:
        """One audio packet's RFC 6464 level from a publisher: the room's active speaker."""
        p, state = session.participant, session.room
        if p is None or state is None or p.muted["audio"]:
            return  # a muted microphone does not take the floor
        speaker = state.speaker.observe(p.id, level)
        if speaker is not None:
            self._spawn(state.broadcast(encode("speaker", id=speaker)))

    async def _unpublish(self, pub: Publication) -> None:
        if not pub.active:
            return
        pub.active = False
        pub.owner.publications.pop(pub.pc_name, None)
        for fwd in pub.forwarders.values():
            fwd.stop()
        subs = [
            sub
            for s in list(self._sessions)
            for sub in list(s.subscriptions.values())
            if sub.publication is pub
        ]
        await asyncio.gather(*(self._close_subscription(sub, notify=True) for sub in subs))
        await pub.pc.close()

    async def _subscribe(self, subscriber: Session, pub: Publication) -> None:
        pc_name = f"sub-{pub.owner.id}-{pub.pc_name}"
        if pc_name in subscriber.subscriptions or not pub.active:
            return
        pc = RTCPeerConnection(rtc_configuration())
        packers = []
        for kind in ("audio", "video"):
            fwd = pub.forwarders.get(kind)
            if fwd is None:
                continue
            transceiver = pc.addTransceiver(fwd.subscribe(), direction="sendonly")
            transceiver.setCodecPreferences(codec_preferences(kind))
            packers.append(install_packer(transceiver.sender, fwd))
        sub = Subscription(subscriber, pub, pc_name, pc, packers)
        subscriber.subscriptions[pc_name] = sub
        try:
            await pc.setLocalDescription(await pc.createOffer())
        except BaseException:
            await self._close_subscription(sub, notify=False)
            raise
        if not pub.active or subscriber.closed or subscriber.room is None:
            await self._close_subscription(sub, notify=False)
            return
        self.counters["subscriptions"] += 1
        pc.on("connectionstatechange", lambda: self._on_pc_state(pc, subscription=sub))
        assert pub.owner.participant is not None
        await subscriber.send(
            encode(
                "subscribe",
                pc=pc_name,
                **{"from": pub.owner.id},
                name=pub.owner.participant.name,
                kind=pub.kind,
                sdp=pc.localDescription.sdp,
            )
        )

    async def _close_subscription(self, sub: Subscription, notify: bool) -> None:
        if sub.owner.subscriptions.pop(sub.pc_name, None) is None:
            return
        for packer in sub.packers:  # the server-wide totals outlive the subscription
            self._packed_closed["frames"] += packer.packed_frames
            self._packed_closed["packets"] += packer.packed_packets
        for sender in sub.pc.getSenders():
            if sender.track is not None:
                sender.track.stop()
        if notify:
            await sub.owner.send(encode("unsubscribe", pc=sub.pc_name))
        await sub.pc.close()

    def _on_pc_state(
        self,
        pc: RTCPeerConnection,
        publication: Publication | None = None,
        subscription: Subscription | None = None,
    ) -> None:
        if pc.connectionState != "failed":
            return
        logger.info("peer connection failed; closing it")
        if publication is not None:
            self._spawn(self._unpublish(publication))
        if subscription is not None:
            self._spawn(self._close_subscription(subscription, notify=True))

    # HTTP API: participants ------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "state": self.state.value})

    def _authenticate(self, request: web.Request) -> Session:
        """The joined session whose token the request carries (401/429 otherwise)."""
        source = request.remote or ""
        if self.join_failures.blocked(source):
            self.counters["throttled"] += 1
            raise web.HTTPTooManyRequests(text="too many failed attempts; try again later")
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        session = self._tokens.get(token) if token else None
        if session is None or session.room is None or session.participant is None:
            self.counters["unauthenticated"] += 1
            if token:  # a wrong token is a failed attempt; no token at all is not
                self.join_failures.fail(source)
            raise web.HTTPUnauthorized(
                text="a session token is required (join the room first)",
                headers={"WWW-Authenticate": 'Bearer realm="qkdmeet"'},
            )
        return session

    def _member_room(self, request: web.Request) -> tuple[Session, RoomState]:
        session = self._authenticate(request)
        state = session.room
        assert state is not None
        wanted = request.match_info.get("room")
        if wanted is not None and wanted != state.room.name:
            raise web.HTTPForbidden(text="you are not a member of that room")
        return session, state

    def _member_json(self, state: RoomState) -> dict[str, Any]:
        """What a participant may see of its own room."""
        return {
            "room": state.room.name,
            "locked": state.locked,
            "participants": [
                {**s.participant.public(), "moderator": s.moderator}
                for s in state.sessions.values()
                if s.participant is not None
            ],
            "speaker": state.speaker.speaker,
            "documents": [d.to_json() for d in self.documents.in_room(state.room.name)],
        }

    async def _api_my_room(self, request: web.Request) -> web.Response:
        _, state = self._member_room(request)
        return web.json_response(self._member_json(state))

    async def _api_none(self, request: web.Request) -> web.Response:
        raise web.HTTPNotFound(text="no such API on the participant port")

    async def _api_upload(self, request: web.Request) -> web.Response:
        session, state = self._member_room(request)
        try:
            doc = await self._receive_upload(request, state, session)
        except DocumentError as exc:
            raise _http_error(exc) from None
        await state.broadcast(encode("document", document=doc.to_json()))
        return web.json_response(doc.to_json())

    def _quota(self, state: RoomState) -> tuple[int, int]:
        """The room's (documents, bytes) limits."""
        rec = state.record
        count = rec.max_documents if rec.max_documents is not None else self.config.max_documents
        total = (
            rec.max_document_bytes
            if rec.max_document_bytes is not None
            else self.config.max_room_bytes
        )
        return count, total

    async def _receive_upload(
        self, request: web.Request, state: RoomState, session: Session
    ) -> Document:
        max_count, max_total = self._quota(state)
        count, used = self.documents.usage(state.room.name)
        if count >= max_count:
            raise DocumentError(413, f"the room holds its quota of {max_count} documents")
        room_left = max_total - used
        limit = min(self.config.max_upload_bytes, room_left)
        if request.content_length is not None and request.content_length > limit + 64 * 1024:
            raise DocumentError(413, _too_large(limit, room_left, self.config.max_upload_bytes))
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError, HttpProcessingError):
            raise DocumentError(400, "expected multipart/form-data") from None
        doc: Document | None = None
        try:
            while True:
                part = await reader.next()
                if part is None:
                    break
                name = getattr(part, "name", None)
                if name == "file" and doc is None:
                    doc = await self._store_part(part, state, limit, room_left)
                else:  # other fields (a client-chosen sender, ...) are read and ignored
                    await part.release()  # type: ignore[union-attr]
        except DocumentError:
            if doc is not None:
                self.documents.path(doc.id).unlink(missing_ok=True)
            raise
        except (ValueError, AssertionError, RuntimeError, HttpProcessingError):
            # e.g. a NUL byte or another control character in a part's headers
            # (its file name): refused, with a fixed text
            if doc is not None:
                self.documents.path(doc.id).unlink(missing_ok=True)
            raise DocumentError(400, "malformed multipart body") from None
        if doc is None:
            raise DocumentError(400, "multipart field 'file' missing")
        if session.room is not state or state.room.name not in self.rooms:
            self.documents.path(doc.id).unlink(missing_ok=True)
            raise DocumentError(400, "the session left the room during the upload")
        # the sender is the session's participant, never a client-chosen ID
        doc = Document(
            doc.id, doc.name, doc.size, doc.content_type, doc.room, session.id, time.time()
        )
        self.documents.commit(doc)
        return doc

    async def _store_part(
        self, part: Any, state: RoomState, limit: int, room_left: int
    ) -> Document:
        doc_id = self.documents.new_id()
        path = self.documents.path(doc_id)
        size = 0
        ctype: str | None = None
        try:
            with path.open("wb") as out:
                while chunk := await part.read_chunk(64 * 1024):
                    if ctype is None:
                        ctype = check_type(part.headers.get("Content-Type"), chunk[:64])
                    size += len(chunk)
                    if size > limit:
                        raise DocumentError(
                            413, _too_large(limit, room_left, self.config.max_upload_bytes)
                        )
                    out.write(chunk)
            if ctype is None:
                raise DocumentError(400, "empty file")
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Document(
            doc_id, clean_document_name(part.filename), size, ctype, state.room.name, ""
        )

    async def _api_download(self, request: web.Request) -> web.StreamResponse:
        _, state = self._member_room(request)
        try:
            doc = self.documents.get(request.match_info["doc"])
            path = self.documents.path(doc.id)
        except DocumentError as exc:
            raise _http_error(exc) from None
        if doc.room != state.room.name:  # another room's document does not exist here
            raise web.HTTPNotFound(text=f"no document {doc.id!r}")
        return web.FileResponse(
            path,
            headers={
                "Content-Type": doc.content_type,
                "Content-Disposition": f'attachment; filename="{doc.name}"',
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )

    async def _static(self, request: web.Request) -> web.StreamResponse:
        rel = validation.static_path(request.match_info.get("path", "") or "index.html")
        if rel is None:  # NUL bytes, overlong or odd names never reach the file system
            raise web.HTTPNotFound()
        web_dir = self.config.web_dir.resolve()
        try:
            path = (web_dir / rel).resolve()
            is_file = path.is_relative_to(web_dir) and path.is_file()
        except (OSError, ValueError):
            raise web.HTTPNotFound() from None
        if is_file:
            return web.FileResponse(path)
        if rel == "index.html":
            return web.Response(text=_PLACEHOLDER, content_type="text/html")
        raise web.HTTPNotFound()

    # HTTP API: the operator's admin interface (Unix socket) ---------------------------

    def _room_json(self, state: RoomState) -> dict[str, Any]:
        return {
            "room": state.room.name,
            "cap": state.room.cap,
            "audio_cap": state.room.audio_cap,
            "camera_cap": state.room.camera_cap,
            "locked": state.locked,
            "speaker": state.speaker.speaker,
            "speaker_changes": state.speaker.changes,
            "access": state.record.public(),
            "participants": [
                {
                    "id": s.id,
                    "name": s.participant.name,
                    "cap": s.participant.cap,
                    "muted": s.participant.muted,
                    "held": s.participant.held,
                    "hand": s.participant.hand is not None,
                    "moderator": s.moderator,
                    "source": s.source,
                    "bitrates": self._bitrates(state, s.id),
                    "subscriptions": len(s.subscriptions),
                }
                for s in state.sessions.values()
                if s.participant is not None
            ],
            "streams": [p.stats() for p in state.publications()],
            "documents": [d.to_json() for d in self.documents.in_room(state.room.name)],
        }

    def _admin_room(self, request: web.Request) -> RoomState:
        state = self.rooms.get(request.match_info["room"])
        if state is None:
            raise web.HTTPNotFound(text="no such room")
        return state

    async def _api_rooms(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "rooms": [self._room_json(s) for s in self.rooms.values()],
                "counters": self.counters,
                "server_encoders": self.server_encode_count(),
            }
        )

    async def _api_room(self, request: web.Request) -> web.Response:
        return web.json_response(self._room_json(self._admin_room(request)))

    async def _api_create_room(self, request: web.Request) -> web.Response:
        body: validation.CreateRoom = await _json_body(request, "create_room")
        options = {
            k: getattr(body, k)
            for k in ("expires_in_s", "retention_s", "max_documents", "max_document_bytes")
            if getattr(body, k) is not None
        }
        try:
            urls = self.create_room(body.name, **options)
        except AccessError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        return web.json_response(urls)

    async def _api_close_room(self, request: web.Request) -> web.Response:
        state = self._admin_room(request)
        deleted = await self.close_room(state.room.name)
        return web.json_response({"room": state.room.name, "closed": True,
                                  "documents_deleted": len(deleted)})

    async def _api_rotate(self, request: web.Request) -> web.Response:
        state = self._admin_room(request)
        invite = self.registry.rotate(state.room.name)
        return web.json_response(invite.urls(self.base_url))

    async def _api_revoke(self, request: web.Request) -> web.Response:
        state = self._admin_room(request)
        self.registry.revoke(state.room.name)
        return web.json_response({"room": state.room.name, "revoked": True})

    async def _read_cap(self, request: web.Request) -> dict[str, Any]:
        """The cap request's JSON object, which has at least ``"bps"`` (only the
        fields given: ``audio_bps``/``camera_bps`` change only when present)."""
        body: validation.RoomCap = await _json_body(
            request, "room_cap", 'body must be JSON {"bps": int|null}'
        )
        return {
            k: getattr(body, k)
            for k in ("bps", "audio_bps", "camera_bps")
            if getattr(body, k) is not msgspec.UNSET
        }

    async def _api_room_cap(self, request: web.Request) -> web.Response:
        """``{"bps": int|null}``: the room's video cap (0 pauses video); optional
        ``"audio_bps": int|null`` and ``"camera_bps": int|null`` (0 pauses the
        cameras only) set or lift the room's audio and camera caps with it."""
        body = await self._read_cap(request)
        bps = body["bps"]
        state = self._admin_room(request)
        try:
            if "audio_bps" in body or "camera_bps" in body:
                state.room.set_room_caps(bps, body.get("audio_bps"), body.get("camera_bps"))
            else:
                state.room.set_room_cap(bps)
        except RoomError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        await self._send_bitrates(state, list(state.sessions.values()))
        return web.json_response(self._room_json(state))

    async def _api_participant_cap(self, request: web.Request) -> web.Response:
        bps = (await self._read_cap(request))["bps"]
        state = self.rooms.get(request.match_info["room"])
        pid = request.match_info["pid"]
        if state is None or pid not in state.sessions:
            raise web.HTTPNotFound(text="no such room or participant")
        try:
            state.room.set_participant_cap(pid, bps)
        except RoomError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        await self._send_bitrates(state, [state.sessions[pid]])
        return web.json_response(self._room_json(state))

    async def _send_bitrates(self, state: RoomState, sessions: list[Session]) -> None:
        await asyncio.gather(
            *(s.send(encode("bitrate", **self._bitrates(state, s.id))) for s in sessions if s.id)
        )

    async def _api_link(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = await _json_body(request, "object")
        self.link = body
        text = encode("link", link=body)
        await asyncio.gather(*(s.send(text) for s in list(self._sessions) if s.participant))
        return web.json_response({"link": body})

    # instrumentation -----------------------------------------------------------

    def server_encode_count(self) -> dict[str, int]:
        """Frames the server's subscriber senders (live now) packed, frames and RTP
        packets packed since the start (closed subscriptions too), and frames it
        encoded (always 0)."""
        packers = [
            p for s in self._sessions for sub in s.subscriptions.values() for p in sub.packers
        ]
        return {
            "senders": len(packers),
            "frames_packed": sum(p.packed_frames for p in packers),
            "frames_packed_total": self._packed_closed["frames"]
            + sum(p.packed_frames for p in packers),
            "packets_packed": self._packed_closed["packets"]
            + sum(p.packed_packets for p in packers),
            "frames_encoded": sum(p.encode_attempts for p in packers),
        }


def _too_large(limit: int, room_left: int, per_upload: int) -> str:
    if room_left < per_upload:
        return f"upload larger than the {limit} bytes left in the room's quota"
    return f"upload larger than {limit} bytes"


async def _json_body(request: web.Request, schema: str, what: str | None = None) -> Any:
    """The request's body decoded by the validation layer's ``schema``; 415 unless
    sent as ``application/json``, 413 beyond its size, 400 (with a fixed text and the
    reason code in ``X-Reason``) when it does not fit."""
    try:
        if request.content_type != "application/json":
            raise validation.Invalid("unsupported_media_type")
        if (request.content_length or 0) > validation.MAX_BODY_BYTES:
            raise validation.Invalid("too_large")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise validation.Invalid("too_large") from None
        return validation.decode(raw, validation.DECODERS[schema])
    except validation.Invalid as exc:
        text = what if what is not None and exc.reason == "schema" else exc.text
        headers = {"X-Reason": exc.reason}
        if exc.status == 413:
            raise web.HTTPRequestEntityTooLarge(
                max_size=validation.MAX_BODY_BYTES, actual_size=len(text), text=text,
                headers=headers,
            ) from None
        if exc.status == 415:
            raise web.HTTPUnsupportedMediaType(text=text, headers=headers) from None
        raise web.HTTPBadRequest(text=text, headers=headers) from None


@web.middleware
async def _security_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        for k, v in SECURITY_HEADERS.items():
            exc.headers.setdefault(k, v)
        raise
    if not response.prepared:  # a WebSocket is prepared (its headers sent) already
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
    return response


@web.middleware
async def _admin_guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Only the server's own user (or root) may use the admin socket (SO_PEERCRED),
    on top of the socket file's 0600 mode."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    uid: int | None = None
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
    if uid is None or uid not in (0, os.getuid()):
        raise web.HTTPForbidden(text="the admin interface is the operator's")
    response: web.StreamResponse = await handler(request)
    return response


def _http_error(exc: DocumentError) -> web.HTTPException:
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        404: web.HTTPNotFound,
        415: web.HTTPUnsupportedMediaType,
    }
    if exc.status == 413:
        return web.HTTPRequestEntityTooLarge(max_size=0, actual_size=0, text=str(exc))
    return classes.get(exc.status, web.HTTPBadRequest)(text=str(exc))


__all__ = ["ConferenceServer", "ServerConfig", "ServerState"]
