"""``qkdmeet conference serve``, ``room`` (the operator's rooms) and ``bot``.

``serve`` prints one JSON line when it listens: ``{"url", "port", "admin_socket",
"rooms": [{"room", "invite_url", "moderator_url"}]}`` with the links of the
rooms it created at this start (``[[room]]`` tables and ``--room``). ``room
create|list|show|rotate|revoke|close`` talk to a running server over its admin
socket (``--admin-socket``, or ``<state_dir>/admin.sock``).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from qkdmeet.conference.access import AccessError
from qkdmeet.conference.admin import AdminError, admin_request
from qkdmeet.conference.bot import BotError, BotOptions, ConferenceBot
from qkdmeet.conference.config import DEFAULT_PORT, ConfigError, RoomSpec, ServerConfig
from qkdmeet.conference.server import ConferenceServer
from qkdmeet.signals import wait_for_stop_signal


def register(subparsers: Any) -> None:
    conf = subparsers.add_parser("conference", help="video conference server and headless bot")
    sub = conf.add_subparsers(dest="conference_command", metavar="COMMAND", required=True)

    serve = sub.add_parser("serve", help="run the conference server (HTTPS + WebSocket)")
    serve.add_argument("--config", type=Path, help="TOML configuration file")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT}; 0 = any)")
    serve.add_argument("--cert", type=Path, help="TLS certificate (PEM)")
    serve.add_argument("--key", type=Path, help="TLS private key (PEM)")
    serve.add_argument("--state-dir", type=Path, help="self-signed certificate and uploads")
    serve.add_argument("--no-tls", action="store_true", help="serve plain HTTP")
    serve.add_argument(
        "--room",
        action="append",
        default=[],
        metavar="NAME",
        help="serve this room (repeatable; its invite and moderator URLs are printed)",
    )
    serve.add_argument("--admin-socket", type=Path, help="admin Unix socket (mode 0600)")
    serve.set_defaults(func=_serve)

    room = sub.add_parser("room", help="the operator's rooms on a running server (admin socket)")
    room_sub = room.add_subparsers(dest="room_command", metavar="ACTION", required=True)
    for action, text in (
        ("create", "create a room; prints its invite and moderator URLs (shown once)"),
        ("list", "list the rooms"),
        ("show", "a room's state (participants, caps, documents)"),
        ("rotate", "new invite and moderator URLs (the old ones stop working)"),
        ("revoke", "refuse the room's invite and moderator links from now on"),
        ("close", "close a room: participants out, its documents deleted"),
    ):
        p = room_sub.add_parser(action, help=text)
        if action != "list":
            p.add_argument("name")
        p.add_argument("--admin-socket", type=Path, help="the server's admin socket")
        p.add_argument(
            "--state-dir", type=Path, default=Path("conference-state"),
            help="the server's state dir (its admin.sock), when --admin-socket is not given",
        )
        if action == "create":
            p.add_argument("--expires-in", type=float, metavar="SECONDS",
                           help="the links expire after this long")
            p.add_argument("--retention", type=float, metavar="SECONDS",
                           help="documents deleted this long after upload")
            p.add_argument("--max-documents", type=int)
            p.add_argument("--max-document-bytes", type=int)
        p.set_defaults(func=_room, room_action=action)

    bot = sub.add_parser("bot", help="join a room with synthetic media and measure what arrives")
    bot.add_argument(
        "--url",
        required=True,
        help="the room's invite URL (https://host:port/?room=R#invite=SECRET)",
    )
    bot.add_argument("--room", help="the room (default: the invite's)")
    bot.add_argument("--name", required=True)
    bot.add_argument("--seconds", type=float, default=10.0, help="time in the room")
    bot.add_argument("--warmup", type=float, default=0.0, help="seconds not measured first")
    bot.add_argument("--width", type=int, default=640)
    bot.add_argument("--height", type=int, default=480)
    bot.add_argument("--fps", type=float, default=15.0)
    bot.add_argument("--no-audio", action="store_true")
    bot.add_argument("--screen", action="store_true", help="also share synthetic slides")
    bot.add_argument("--screen-fps", type=float, default=5.0)
    bot.add_argument("--upload", type=Path, help="upload this document after joining")
    bot.add_argument("--decode-limit", type=int, help="decode at most N video streams")
    bot.add_argument(
        "--pre-encoded",
        action="store_true",
        help="replay a VP8 clip encoded once at start-up as the camera (load tests)",
    )
    bot.add_argument("--clip", type=Path, help="with --pre-encoded: load/store the clip here")
    bot.add_argument(
        "--socket-buffer", type=int, metavar="BYTES",
        help="receive buffer of each subscription's UDP socket (load tests)",
    )
    bot.add_argument("--json", action="store_true", help="print the report as JSON")
    bot.add_argument("--insecure", action="store_true", help="accept any TLS certificate")
    bot.set_defaults(func=_bot)


async def _serve(args: argparse.Namespace) -> int:
    overrides = {
        "host": args.host,
        "port": args.port,
        "cert": args.cert,
        "key": args.key,
        "state_dir": args.state_dir,
        "tls": False if args.no_tls else None,
        "admin_socket": args.admin_socket,
    }
    try:
        if args.config is not None:
            config = ServerConfig.load(args.config, **overrides)
        else:
            config = ServerConfig.from_dict({}, **overrides)
        if args.room:
            config = dataclasses.replace(
                config, rooms=[*config.rooms, *(RoomSpec(name) for name in args.room)]
            )
        server = ConferenceServer(config)
        await server.start()
    except (ConfigError, AccessError, OSError) as exc:
        print(f"qkdmeet conference serve: {exc}", file=sys.stderr)
        return 2
    line = {
        "url": server.url,
        "port": server.port,
        "admin_socket": str(config.admin_path),
        "rooms": server.invites,
    }
    print(json.dumps(line), flush=True)
    try:
        await wait_for_stop_signal()
    finally:
        await server.stop()
    return 0


async def _room(args: argparse.Namespace) -> int:
    sock = args.admin_socket or args.state_dir / "admin.sock"
    action = args.room_action
    try:
        if action == "create":
            options = {
                k: v
                for k, v in (
                    ("expires_in_s", args.expires_in),
                    ("retention_s", args.retention),
                    ("max_documents", args.max_documents),
                    ("max_document_bytes", args.max_document_bytes),
                )
                if v is not None
            }
            result = await asyncio.to_thread(
                admin_request, sock, "POST", "/api/rooms", {"name": args.name, **options}
            )
        elif action == "list":
            rooms = await asyncio.to_thread(admin_request, sock, "GET", "/api/rooms")
            result = {"rooms": [
                {"room": r["room"], "participants": len(r["participants"]),
                 "documents": len(r["documents"]), **r["access"]}
                for r in rooms["rooms"]
            ]}
        elif action == "show":
            result = await asyncio.to_thread(admin_request, sock, "GET", f"/api/rooms/{args.name}")
        elif action == "close":
            result = await asyncio.to_thread(
                admin_request, sock, "DELETE", f"/api/rooms/{args.name}"
            )
        else:  # rotate | revoke
            path = f"/api/rooms/{args.name}/{'invite' if action == 'rotate' else 'revoke'}"
            result = await asyncio.to_thread(admin_request, sock, "POST", path, {})
    except AdminError as exc:
        print(f"qkdmeet conference room {action}: {exc}", file=sys.stderr)
        return 2 if exc.status in (400, 404) else 1
    print(json.dumps(result))
    return 0


async def _bot(args: argparse.Namespace) -> int:
    options = BotOptions(
        width=args.width,
        height=args.height,
        fps=args.fps,
        audio=not args.no_audio,
        screen=args.screen,
        screen_fps=args.screen_fps,
        decode_limit=args.decode_limit,
        verify_tls=not args.insecure,
        pre_encoded=args.pre_encoded,
        clip_path=args.clip,
        socket_buffer=args.socket_buffer,
    )
    try:
        bot = ConferenceBot(args.url, args.room, args.name, options)
    except ValueError as exc:
        print(f"qkdmeet conference bot: {exc}", file=sys.stderr)
        return 2
    try:
        await bot.start()
        if args.upload is not None:
            await bot.upload(args.upload)
        if args.warmup > 0:
            await bot.run(args.warmup)
            bot.reset_stats()
        await bot.run(args.seconds)
    except (BotError, ConnectionError, TimeoutError, OSError) as exc:
        print(f"qkdmeet conference bot: {exc or type(exc).__name__}", file=sys.stderr)
        await bot.stop()
        return 1
    report = bot.report()
    if args.json:  # before stopping: the report is out even if the shutdown hangs
        print(json.dumps(report), flush=True)
    await bot.stop()
    if not args.json:
        t = report["totals"]
        print(
            f"{bot.name} in {bot.room}: {t['video_frames_received']} video frames, "
            f"{t['audio_frames_received']} audio frames, {t['video_frames_lost']} lost, "
            f"latency p95 {t.get('latency_ms_p95', 'n/a')} ms"
        )
    return 0
