import asyncio
import json
from typing import Any

import aiohttp
import pytest

from qkdmeet.conference.admin import AdminError
from qkdmeet.conference.bot import ConferenceBot
from qkdmeet.conference.forwarding import PackOnlyEncoder
from qkdmeet.conference.server import ConferenceServer
from qkdmeet.conference.signalling import MAX_MESSAGE_BYTES

from .conftest import MakeBot, admin, room_urls


def secret_of(server: ConferenceServer, room: str = "ward", role: str = "invite") -> str:
    return room_urls(server, room)[f"{role}_url"].split(f"#{role}=")[1]


#: The admin interface's routes over its Unix socket (see :func:`_admin_http`).
ADMIN = "http://admin"


def _admin_http(server: ConferenceServer) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.UnixConnector(path=str(server.config.admin_path))
    )


async def until(predicate: Any, wait_s: float = 20.0) -> None:
    """Wait until predicate() holds (a deadline against hanging, not a timing check)."""
    async with asyncio.timeout(wait_s):
        while not predicate():  # noqa: ASYNC110 - polling media counters
            await asyncio.sleep(0.05)


def video_from(bot: ConferenceBot, publisher: ConferenceBot, kind: str = "camera") -> Any:
    return bot.received.get(f"{publisher.id}:{kind}:video")


def frames(bot: ConferenceBot, publisher: ConferenceBot, track: str = "video") -> int:
    rec = bot.received.get(f"{publisher.id}:camera:{track}")
    return rec.stats.frames if rec else 0


async def test_bots_exchange_video_and_audio_through_forwarding_only(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    a, b = await make_bot("Dr A"), await make_bot("Dr B")
    await until(lambda: frames(a, b) >= 30 and frames(b, a) >= 30)
    await until(lambda: frames(a, b, "audio") >= 50 and frames(b, a, "audio") >= 50)
    for rx, tx in ((a, b), (b, a)):
        rec = video_from(rx, tx)
        # frame counters are consecutive: nothing lost or reordered on the way
        assert rec.stats.lost == 0 and rec.stats.reordered == 0 and rec.unreadable == 0
        assert rec.stats.last_counter < tx.camera.frames_sent
        assert rx.report()["totals"]["latency_ms_p50"] >= 0
    # the server packed frames for each receiver and never encoded or decoded one
    enc = server.server_encode_count()
    assert enc["senders"] == 4 and enc["frames_packed"] > 0 and enc["frames_encoded"] == 0
    state = server.rooms["ward"]
    for session in state.sessions.values():
        for sub in session.subscriptions.values():
            for sender in sub.pc.getSenders():
                assert isinstance(sender._RTCRtpSender__encoder, PackOnlyEncoder)
        for pub in session.publications.values():
            for fwd in pub.forwarders.values():
                assert fwd.frames_in > 0
            for transceiver in pub.pc.getTransceivers():
                assert transceiver.receiver.track._queue.empty()  # nothing decoded


async def test_late_joiner_starts_at_a_requested_keyframe(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    a, b = await make_bot("A"), await make_bot("B")
    await until(lambda: frames(b, a) >= 20)
    fwd = server.rooms["ward"].sessions[a.id].publications["camera"].forwarders["video"]
    requests_before = fwd.keyframe_requests
    c = await make_bot("C")
    await until(lambda: frames(c, a) >= 10 and frames(c, b) >= 10)
    assert fwd.keyframe_requests > requests_before
    assert video_from(c, a).unreadable == 0 and video_from(c, a).stats.lost == 0
    # C's first frame is a late one: it joined mid-stream
    assert video_from(c, a).stats.last_counter > 20


async def test_participant_vanishing_mid_call(server: ConferenceServer, make_bot: MakeBot) -> None:
    a, b = await make_bot("A"), await make_bot("B")
    c = await make_bot("C")
    await until(lambda: frames(a, c) >= 5 and frames(a, b) >= 5)
    await c.drop()  # socket gone, no leave
    await a.wait_for("participant_left", id=c.id)
    await a.wait_for("unsubscribe", pc=f"sub-{c.id}-camera")
    assert server.counters["vanished"] == 1
    assert set(server.rooms["ward"].sessions) == {a.id, b.id}
    seen = frames(a, b)
    await until(lambda: frames(a, b) >= seen + 15 and frames(b, a) >= 15)
    await b.chat("still here")
    await a.wait_for("chat", text="still here")


async def test_malformed_signalling_gets_errors_and_the_socket_stays_open(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    a = await make_bot("A")
    ssl_ctx = a._ssl()
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(server.url.replace("https", "wss") + "/ws", ssl=ssl_ctx) as ws,
    ):

        async def reply(payload: str | bytes) -> dict[str, Any]:
            if isinstance(payload, bytes):
                await ws.send_bytes(payload)
            else:
                await ws.send_str(payload)
            while True:
                msg = json.loads((await ws.receive(timeout=10)).data)
                assert isinstance(msg, dict)
                if msg.get("type") != "speaker":  # A's tone takes the floor meanwhile
                    return msg

        bad = [
            "{not json",
            "[1]",
            json.dumps({"type": "teleport"}),
            json.dumps({"type": "join", "room": 5, "name": "x"}),
            json.dumps({"type": "chat", "text": "hi"}),  # before join
            "x" * (MAX_MESSAGE_BYTES + 10),
            b"\x00\x01",
        ]
        for payload in bad:
            msg = await reply(payload)
            assert msg["type"] == "error" and msg["reason"]
        joined = await reply(
            json.dumps({"type": "join", "room": "ward", "name": "M", "secret": secret_of(server)})
        )
        assert joined["type"] == "joined" and joined["participants"] == [
            {"id": a.id, "name": "A", "moderator": False, "hand": False, "hand_at": None,
             "muted": {"audio": False, "video": False}}
        ]
        # drain the subscribe offer for A's camera, then send bad media messages
        sub = await ws.receive_json(timeout=10)
        while sub["type"] == "speaker":
            sub = await ws.receive_json(timeout=10)
        assert sub["type"] == "subscribe" and sub["from"] == a.id
        for payload in [
            {"type": "publish", "pc": "cam", "kind": "camera", "sdp": "v=0 garbage"},
            {"type": "answer", "pc": "nope", "sdp": "v=0"},
            {"type": "unpublish", "pc": "nope"},
            {"type": "join", "room": "other", "name": "M", "secret": "x"},
        ]:
            msg = await reply(json.dumps(payload))
            assert msg["type"] == "error", payload
    await a.wait_for("participant_left")
    assert server.counters["bad_messages"] >= 11
    await a.chat("room works")
    await a.wait_for("chat", text="room works")


async def test_chat_mute_link_and_room_api(server: ConferenceServer, make_bot: MakeBot) -> None:
    a, b = await make_bot("A"), await make_bot("B")
    await a.chat("genomic report is up")
    msg = await b.wait_for("chat", text="genomic report is up")
    assert msg["from"] == a.id and msg["name"] == "A" and isinstance(msg["ts"], float)
    await a.mute("audio", True)
    await b.wait_for("mute", id=a.id, kind="audio", muted=True)
    ops = admin(server)
    link = {"protected": True, "key_buffered_bytes": 123456, "alarm": None}
    await ops.post("/api/link", link)
    with pytest.raises(AdminError) as refused:
        await ops.post("/api/link", [])
    assert refused.value.status == 400
    room = await ops.get("/api/rooms/ward")
    assert {p["name"] for p in room["participants"]} == {"A", "B"}
    assert [p["muted"]["audio"] for p in room["participants"] if p["id"] == a.id] == [True]
    with pytest.raises(AdminError) as refused:
        await ops.get("/api/rooms/none")
    assert refused.value.status == 404
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as http:
        # a participant sees its own room (by its session token)
        async with http.get(server.url + "/api/room", headers=b.auth_headers()) as r:
            mine = await r.json()
        assert {p["name"] for p in mine["participants"]} == {"A", "B"}
        assert "streams" not in mine and "cap" not in mine
        async with http.get(server.url + "/healthz") as r:
            assert (await r.json())["status"] == "ok"
        async with http.get(server.url + "/") as r:
            assert r.status == 200 and "html" in r.headers["Content-Type"]
        async with http.get(server.url + "/../../etc/passwd") as r:
            assert r.status == 404
    assert (await a.wait_for("link"))["link"] == link
    late = await make_bot("C")
    assert late.messages[0]["link"] == link


async def test_caps_api_drives_the_bots_encoders(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    a, b = await make_bot("A"), await make_bot("B")
    async with _admin_http(server) as http:
        async with http.post(ADMIN + "/api/rooms/ward/cap", json={"bps": 200_000}) as r:
            assert r.status == 200
        for bot in (a, b):
            msg = await bot.wait_for("bitrate", camera=200_000)
            assert msg["screen"] == 200_000 and msg["audio"] == 40_000
            await until(lambda bot=bot: bot.bitrates["camera"] == 200_000)
            assert bot.video_encoders["camera"].target_bitrate <= 200_000
        url = f"{ADMIN}/api/rooms/ward/participants/{a.id}/cap"
        async with http.post(url, json={"bps": 100_000}) as r:
            assert r.status == 200
        await a.wait_for("bitrate", camera=100_000)
        assert a.video_encoders["camera"].target_bitrate <= 100_000
        assert b.bitrates["camera"] == 200_000
        for bad in ({"bps": "fast"}, {"bps": 10}, {"rate": 1}):
            async with http.post(url, json=bad) as r:
                assert r.status == 400
        async with http.post(
            ADMIN + "/api/rooms/ward/participants/p99/cap", json={"bps": None}
        ) as r:
            assert r.status == 404
        async with http.post(ADMIN + "/api/rooms/ward/cap", json={"bps": None}) as r:
            assert r.status == 200
        await b.wait_for("bitrate", camera=800_000)
        # the lean audio tier of the key-aware adaptation reaches the Opus encoders
        room_cap = ADMIN + "/api/rooms/ward/cap"
        async with http.post(room_cap, json={"bps": 30_000, "audio_bps": 16_000}) as r:
            assert r.status == 200 and (await r.json())["audio_cap"] == 16_000
        for bot in (a, b):
            await bot.wait_for("bitrate", audio=16_000)
            await until(lambda bot=bot: bot.audio_encoder is not None
                        and bot.audio_encoder.cap == 16_000)
        async with http.post(room_cap, json={"bps": None, "audio_bps": 100}) as r:
            assert r.status == 400
        async with http.get(ADMIN + "/api/rooms") as r:  # a refused request changes nothing
            ward = next(x for x in (await r.json())["rooms"] if x["room"] == "ward")
            assert ward["cap"] == 30_000 and ward["audio_cap"] == 16_000
        async with http.post(room_cap, json={"bps": None, "audio_bps": None}) as r:
            assert r.status == 200 and (await r.json())["audio_cap"] is None
        await b.wait_for("bitrate", audio=40_000)


@pytest.mark.parametrize("size", [1000, 60 * 1024])
async def test_document_upload_and_byte_identical_download(
    server: ConferenceServer, make_bot: MakeBot, tmp_path: Any, size: int
) -> None:
    a, b = await make_bot("A"), await make_bot("B")
    body = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * (size // 256)
    path = tmp_path / "genome report.png"
    path.write_bytes(body)
    doc = await a.upload(path)
    assert doc["size"] == len(body) and doc["from"] == a.id and doc["content_type"] == "image/png"
    note = await b.wait_for("document")
    assert note["document"]["id"] == doc["id"]
    assert await b.download(note["document"]) == body
    late = await make_bot("C")
    assert [d["id"] for d in late.documents] == [doc["id"]]


async def test_bad_uploads_are_refused(server: ConferenceServer, make_bot: MakeBot) -> None:
    a = await make_bot("A")
    url = server.url + "/api/rooms/ward/documents"

    def form(data: bytes, ctype: str) -> aiohttp.FormData:
        f = aiohttp.FormData()
        f.add_field("file", data, filename="x", content_type=ctype)
        return f

    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=False), headers=a.auth_headers()
    ) as http:
        cases = [
            (form(b"%PDF-" + b"0" * (70 * 1024), "application/pdf"), 413),
            (form(b"MZ\x90\x00", "application/x-msdownload"), 415),
            (form(b"not a png", "image/png"), 415),
            (form(b"", "text/plain"), 400),
            (b"just bytes", 400),
        ]
        for data, status in cases:
            async with http.post(url, data=data) as r:
                assert r.status == status, (status, await r.text())
        async with http.post(
            server.url + "/api/rooms/nowhere/documents", data=form(b"hi", "text/plain")
        ) as r:
            assert r.status == 403  # not A's room
        async with http.get(server.url + "/api/documents/" + "0" * 24) as r:
            assert r.status == 404
        async with http.get(server.url + "/api/documents/..%2f..%2fetc") as r:
            assert r.status == 404
        async with http.get(server.url + "/api/room") as r:
            assert (await r.json())["documents"] == []


async def test_a_zero_cap_pauses_the_cameras_and_lifting_it_resumes_them(
    server: ConferenceServer, make_bot: MakeBot
) -> None:
    a, b = await make_bot("A"), await make_bot("B")
    assert a.camera is not None
    await until(lambda: a.camera is not None and a.camera.frames_sent > 5)
    room_cap = ADMIN + "/api/rooms/ward/cap"
    async with _admin_http(server) as http:
        async with http.post(room_cap, json={"bps": None, "audio_bps": 16_000,
                                             "camera_bps": 0}) as r:
            assert r.status == 200 and (await r.json())["camera_cap"] == 0
        msg = await a.wait_for("bitrate", camera=0)
        assert msg["screen"] > 0 and msg["audio"] == 16_000  # screen and audio go on
        await until(lambda: a.camera is not None and a.camera.paused)
        await asyncio.sleep(0.2)
        held = a.camera.frames_sent
        tone = a.tone.frames_sent if a.tone else 0
        await asyncio.sleep(1.0)
        assert a.camera.frames_sent == held  # paused: not one frame
        assert a.tone is not None and a.tone.frames_sent > tone + 20  # audio continues
        async with http.post(room_cap, json={"bps": None, "audio_bps": None,
                                             "camera_bps": None}) as r:
            assert r.status == 200
        await a.wait_for("bitrate", camera=800_000)
        await until(lambda: a.camera is not None and a.camera.frames_sent > held + 10)
        assert a.camera.paused_s >= 1.0
        # B keeps receiving A's camera after the pause, without a frame counted lost
        cams = [r for r in b.received.values() if r.track == "video"]
        assert cams
        before = sum(r.stats.frames for r in cams)
        await until(lambda: sum(r.stats.frames for r in cams) > before + 5)
        assert sum(r.stats.lost for r in cams) == 0  # the counter resumed where it stopped
        for bad in ({"bps": None, "camera_bps": 10}, {"bps": None, "audio_bps": 0}):
            async with http.post(room_cap, json=bad) as r:
                assert r.status == 400
