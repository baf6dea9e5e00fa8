"""Issue 13: only invited participants get in, only the operator steers.

Each test has the outsider (no credentials, a participant of another room, a
participant without the moderator right, a cross-site page) refused, and the
legitimate participant still served.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from qkdmeet.conference.access import FailureLimiter, RoomRegistry, parse_invite, secret_hash
from qkdmeet.conference.admin import AdminClient, AdminError
from qkdmeet.conference.bot import BotError, ConferenceBot
from qkdmeet.conference.config import ServerConfig
from qkdmeet.conference.server import ConferenceServer

from .conftest import SMALL, MakeBot, admin, room_urls


def http(**headers: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False), headers=headers)


async def raw_join(
    server: ConferenceServer, room: str, secret: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """One WebSocket join with ``secret``; the server's first answer."""
    async with (
        http() as s,
        s.ws_connect(server.url.replace("https", "wss") + "/ws", headers=headers or {}) as ws,
    ):
        await ws.send_str(json.dumps({"type": "join", "room": room, "name": "X",
                                      "secret": secret}))
        msg = await ws.receive(timeout=10)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return {"type": "socket-closed"}
        answer: dict[str, Any] = json.loads(msg.data)
        return answer


def secret(server: ConferenceServer, room: str = "ward", role: str = "invite") -> str:
    found = parse_invite(room_urls(server, room)[f"{role}_url"]).secret
    assert found is not None
    return found


# --------------------------------------------------------------------------- 1: rooms, invites


def test_secrets_are_long_stored_hashed_and_can_expire_or_be_revoked(tmp_path: Path) -> None:
    reg = RoomRegistry(tmp_path / "rooms.json")
    invite = reg.create("board", expires_in_s=60)
    assert len(invite.invite) >= 32 and invite.invite != invite.moderator  # >= 192 bits
    text = (tmp_path / "rooms.json").read_text()
    assert invite.invite not in text and invite.moderator not in text
    assert secret_hash(invite.invite) in text
    assert stat.S_IMODE((tmp_path / "rooms.json").stat().st_mode) == 0o600
    again = RoomRegistry(tmp_path / "rooms.json")  # survives a restart
    assert again.authorise("board", invite.invite) == "invite"
    assert again.authorise("board", invite.moderator) == "moderator"
    assert again.authorise("board", invite.invite[:-1]) is None
    assert again.authorise("nowhere", invite.invite) is None
    record = again.get("board")
    assert record.role_of(invite.invite, now=time.time() + 61) is None  # expired
    again.revoke("board")
    assert again.authorise("board", invite.invite) is None
    fresh = again.rotate("board")
    assert again.authorise("board", fresh.invite) == "invite"
    assert again.authorise("board", invite.invite) is None  # the old link is dead
    with pytest.raises(ValueError):
        again.create("../etc")


async def test_no_room_without_the_operator_and_no_entry_without_its_invite(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    a = await make_bot("A")  # the invited participant
    # a join no longer creates a room
    assert (await raw_join(server, "made-up", "x"))["reason"] == (
        "join: unknown room or invalid invite"
    )
    assert "made-up" not in server.rooms
    # a wrong secret gets the same answer as an unknown room
    assert (await raw_join(server, "ward", "x" * 32))["reason"] == (
        "join: unknown room or invalid invite"
    )
    # another room's invite does not open this room
    assert (await raw_join(server, "ward", secret(server, "icu")))["type"] == "error"
    assert list(server.rooms["ward"].sessions) == [a.id]
    # a bot with a wrong invite is refused
    bad = ConferenceBot(server.url + "/?room=ward#invite=wrong", None, "B", SMALL)
    with pytest.raises(BotError, match="invalid invite"):
        await bad.start(wait_s=10)
    # revoked: no new join; the admin can issue new links
    await admin(server).post("/api/rooms/ward/revoke", {})
    assert (await raw_join(server, "ward", secret(server)))["type"] == "error"
    urls = await admin(server).post("/api/rooms/ward/invite", {})
    joined = await raw_join(server, "ward", parse_invite(urls["invite_url"]).secret or "")
    assert joined["type"] == "joined" and not joined["moderator"]


async def test_serve_prints_its_rooms_links_and_the_bot_joins_with_one(tmp_path: Path) -> None:
    from qkdmeet.conference.config import RoomSpec

    config = ServerConfig(port=0, state_dir=tmp_path / "s", rooms=[RoomSpec("board")])
    srv = ConferenceServer(config)
    await srv.start()
    try:
        [urls] = srv.invites
        assert urls["room"] == "board" and urls["invite_url"].startswith(srv.url)
        assert "#invite=" in urls["invite_url"] and "#moderator=" in urls["moderator_url"]
        bot = ConferenceBot(urls["invite_url"], None, "A", SMALL)
        await bot.start()
        try:
            assert bot.room == "board" and bot.token and not bot.moderator
        finally:
            await bot.stop()
    finally:
        await srv.stop()
    # at the next start the configuration's room gets fresh links: the old are dead
    srv = ConferenceServer(config)
    await srv.start()
    try:
        old = parse_invite(urls["invite_url"]).secret or ""
        assert srv.registry.authorise("board", old) is None
        assert srv.invites[0]["invite_url"] != urls["invite_url"]
    finally:
        await srv.stop()


# --------------------------------------------------------------------------- 2: sessions


async def test_every_http_request_needs_the_session_of_a_member(
    server: ConferenceServer, make_bot: MakeBot, tmp_path: Path
) -> None:
    a = await make_bot("A")
    other = await make_bot("Eve", room="icu")  # a participant of another room
    doc_path = tmp_path / "report.txt"
    doc_path.write_text("patient 17")
    doc = await a.upload(doc_path)
    assert doc["from"] == a.id
    url = server.url + doc["url"]
    async with http() as s:
        for path in ("/api/rooms", "/api/rooms/ward", "/api/room", doc["url"]):
            async with s.get(server.url + path) as r:
                assert r.status in (401, 404), path  # no token: nothing
        async with s.get(url, headers={"Authorization": "Bearer " + "x" * 43}) as r:
            assert r.status == 401
        # no listing of all rooms on the participant port, even with a token
        async with s.get(server.url + "/api/rooms", headers=a.auth_headers()) as r:
            assert r.status == 404
        async with s.get(url, headers=other.auth_headers()) as r:
            assert r.status == 404  # another room's document does not exist for Eve
        async with s.get(server.url + "/api/rooms/ward", headers=other.auth_headers()) as r:
            assert r.status == 403
        form = aiohttp.FormData()
        form.add_field("file", b"forged", filename="x.txt", content_type="text/plain")
        async with s.post(server.url + "/api/rooms/ward/documents", data=form,
                          headers=other.auth_headers()) as r:
            assert r.status == 403
        # a client-chosen sender is ignored: the document is the session's
        form = aiohttp.FormData()
        form.add_field("participant", other.id)
        form.add_field("file", b"mine", filename="y.txt", content_type="text/plain")
        async with s.post(server.url + "/api/rooms/ward/documents", data=form,
                          headers={**a.auth_headers(), "X-Participant": "p99"}) as r:
            assert r.status == 200 and (await r.json())["from"] == a.id
        async with s.get(url, headers=a.auth_headers()) as r:  # the member still gets it
            assert r.status == 200 and await r.read() == b"patient 17"
            assert r.headers["Content-Disposition"].startswith("attachment")
            assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert [d["id"] for d in other.documents] == []
    # the token dies with the session
    token = a.auth_headers()
    await a.stop()
    async with http() as s, s.get(url, headers=token) as r:
        assert r.status == 401


# --------------------------------------------------------------------------- 3: documents


async def test_room_quotas_retention_and_deletion_on_close(tmp_path: Path) -> None:
    srv = ConferenceServer(ServerConfig(port=0, state_dir=tmp_path / "s", max_documents=2,
                                        max_room_bytes=3000, retention_s=3600))
    await srv.start()
    try:
        urls = srv.create_room("board")
        bot = ConferenceBot(urls["invite_url"], None, "A", SMALL)
        await bot.start()
        p = tmp_path / "r.txt"
        p.write_bytes(b"x" * 2000)
        first = await bot.upload(p)
        with pytest.raises(BotError, match="413"):  # 2000 + 2000 > 3000 bytes
            await bot.upload(p)
        p.write_bytes(b"y" * 500)
        await bot.upload(p)
        with pytest.raises(BotError, match="413"):  # the third document
            await bot.upload(p)
        uploads = srv.config.uploads
        assert (uploads / first["id"]).exists()
        # retention: gone (file and metadata) once past its room's retention
        gone = await srv.sweep_documents(now=time.time() + 3601)
        assert len(gone) == 2 and first["id"] in gone and not (uploads / first["id"]).exists()
        assert not (uploads / f"{first['id']}.json").exists()
        await bot.wait_for("document_removed", id=first["id"])
        p.write_bytes(b"z" * 100)
        last = await bot.upload(p)
        # closing the room: the participant out, the files deleted, the links dead
        result = await AdminClient(srv.config.admin_path).close_room("board")
        assert result["closed"] and result["documents_deleted"] == 1
        await bot.wait_for("closed")
        assert not (uploads / last["id"]).exists() and list(uploads.iterdir()) == []
        assert srv.registry.authorise("board", parse_invite(urls["invite_url"]).secret or "") \
            is None
        await bot.stop()
    finally:
        await srv.stop()


# --------------------------------------------------------------------------- 4: control plane


async def test_the_control_plane_is_only_on_the_admin_socket(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    a = await make_bot("A")
    async with http(**a.auth_headers()) as s:
        for path, body in (("/api/rooms/ward/cap", {"bps": 0}),
                           (f"/api/rooms/ward/participants/{a.id}/cap", {"bps": 0}),
                           ("/api/link", {"protected": True}),
                           ("/api/rooms", {"name": "mine"})):
            async with s.post(server.url + path, json=body) as r:
                assert r.status == 404, path  # not on the participant port
    assert server.rooms["ward"].room.cap is None and server.link is None
    assert "mine" not in server.rooms
    # the admin socket: the owner only (mode 0600, peer uid checked)
    sock = server.config.admin_path
    assert stat.S_ISSOCK(sock.stat().st_mode) and stat.S_IMODE(sock.stat().st_mode) == 0o600
    ops = admin(server)
    await ops.post("/api/rooms/ward/cap", {"bps": 200_000})
    await a.wait_for("bitrate", camera=200_000)
    # JSON endpoints want application/json (no cross-site text/plain "simple request")
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as s,
        s.post("http://admin/api/link", data='{"protected": true}',
               headers={"Content-Type": "text/plain"}) as r,
    ):
        assert r.status == 415
    assert server.link is None


async def test_the_admin_socket_refuses_another_user(server: ConferenceServer) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to act as another user")
    import shutil
    import subprocess

    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 to run as another user")
    # a plain socket client (stdlib only), run as 'nobody'
    code = ("import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n s.connect(sys.argv[1])\n"
            " s.sendall(b'GET /api/rooms HTTP/1.0\\r\\n\\r\\n')\n"
            " print(s.recv(100))\n"
            "except OSError as e:\n print('REFUSED', e)\n")
    out = await asyncio.to_thread(
        subprocess.run, [python, "-c", code, str(server.config.admin_path)],
        capture_output=True, text=True, timeout=60, user=65534, cwd="/")
    assert "REFUSED" in out.stdout or " 403 " in out.stdout, out
    assert " 200 " not in out.stdout


async def test_websocket_from_another_origin_is_refused(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    await make_bot("A")
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await raw_join(server, "ward", secret(server), {"Origin": "https://evil.example"})
    assert info.value.status == 403 and server.counters["refused_origins"] == 1
    own = server.url  # the server's own pages may
    assert (await raw_join(server, "ward", secret(server), {"Origin": own}))["type"] == "joined"


# --------------------------------------------------------------------------- 6: moderators


async def test_moderator_rights_come_only_with_the_moderator_link(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    chair = await make_bot("Chair", moderator=True)
    bob = await make_bot("Bob")
    carol = await make_bot("Carol")
    assert chair.moderator and not bob.moderator
    await bob.send_raw(json.dumps({"type": "remove", "id": carol.id}))
    assert "only a moderator" in (await bob.wait_for("error"))["reason"]
    await bob.send_raw(json.dumps({"type": "lock", "locked": True}))
    await bob.wait_for("error", reason="lock: only a moderator may do this")
    assert carol.id in server.rooms["ward"].sessions and not server.rooms["ward"].locked
    await chair.send_raw(json.dumps({"type": "remove", "id": carol.id}))
    await carol.wait_for("removed")
    await bob.wait_for("participant_left", id=carol.id)
    await chair.send_raw(json.dumps({"type": "lock", "locked": True}))
    await bob.wait_for("locked", locked=True)
    assert "locked" in (await raw_join(server, "ward", secret(server)))["reason"]
    moderator = await raw_join(server, "ward", secret(server, role="moderator"))
    assert moderator["type"] == "joined" and moderator["moderator"]


# --------------------------------------------------------------------------- 7: bad input


async def test_failed_joins_are_bounded_per_source(tmp_path: Path) -> None:
    srv = ConferenceServer(ServerConfig(port=0, state_dir=tmp_path / "s", max_failed_joins=3))
    await srv.start()
    try:
        urls = srv.create_room("board")
        for _ in range(3):
            assert (await raw_join(srv, "board", "guess"))["reason"].startswith("join: unknown")
        # from now on even the right invite is refused from this source, for a minute
        answer = await raw_join(srv, "board", parse_invite(urls["invite_url"]).secret or "")
        assert "too many failed joins" in answer["reason"]
        assert srv.counters["failed_joins"] == 3 and srv.counters["throttled"] == 1
    finally:
        await srv.stop()
    limiter = FailureLimiter(2, window_s=60)
    limiter.fail("a", now=0)
    limiter.fail("a", now=1)
    assert limiter.blocked("a", now=2) and not limiter.blocked("b", now=2)
    assert not limiter.blocked("a", now=61)  # the window slid past


async def test_a_message_flood_is_dropped_and_counted(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    a, b = await make_bot("A"), await make_bot("B")
    for i in range(400):
        await a.send_raw(json.dumps({"type": "chat", "text": f"spam {i}"}))
    await a.wait_for("error", reason="too many messages: dropped")
    assert server.counters["flood_drops"] > 0
    await b.chat("still works")
    await a.wait_for("chat", text="still works")


async def test_admin_errors_are_clear(server: ConferenceServer) -> None:
    ops = admin(server)
    with pytest.raises(AdminError) as info:
        await ops.create_room("bad name!")
    assert info.value.status == 400
    urls = await ops.create_room("board")
    with pytest.raises(AdminError) as info:
        await ops.create_room("board")
    assert info.value.status == 400 and "exists" in str(info.value)
    listing = await ops.get("/api/rooms")
    text = json.dumps(listing)
    assert parse_invite(urls["invite_url"]).secret not in text and "hash" not in text
