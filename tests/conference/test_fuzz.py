"""Property-based fuzzing of the conference server: WebSocket signalling messages,
request paths, uploads and the admin API's JSON bodies (Hypothesis).

Invariants after every case: no 5xx; WebSocket errors carry a stable ``code``
from the protocol's list and a fixed text, never an exception's; the server
still answers ``/healthz`` and the participant API, and the fuzzing socket is
still joined. Each run is bounded (``max_examples``, ``deadline``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from qkdmeet.conference import server as server_mod
from qkdmeet.conference import signalling
from qkdmeet.conference.config import ServerConfig
from qkdmeet.conference.server import ConferenceServer
from tests.bgloop import BackgroundLoop

pytestmark = pytest.mark.timeout(180)

FUZZ = settings(
    max_examples=100,
    deadline=3000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
CODES = set(signalling.ERROR_CODES)
#: Words that only an exception's text would put into a reply.
LEAKS = ("Error", "Traceback", "line ", "column", "char ", "assert", "Exceeds the limit")
SENTINEL = json.dumps({"type": "unpublish", "pc": "__sentinel__"})


def _is_unpublish(payload: str | bytes) -> bool:
    try:
        return signalling.parse_message(payload).type == "unpublish"
    except signalling.SignallingError:
        return False


@dataclass
class Harness:
    bg: BackgroundLoop
    server: ConferenceServer
    http: aiohttp.ClientSession
    admin: aiohttp.ClientSession
    secret: str
    ws: aiohttp.ClientWebSocketResponse | None = None
    token: str = ""

    @property
    def url(self) -> str:
        return self.server.url

    async def join(self) -> None:
        if self.ws is not None and not self.ws.closed:
            return
        self.ws = await self.http.ws_connect(self.url + "/ws")
        await self.ws.send_str(json.dumps({"type": "join", "room": "ward", "name": "fuzz",
                                           "secret": self.secret}))
        while True:
            msg = json.loads((await self.ws.receive(timeout=10)).data)
            if msg["type"] == "joined":
                self.token = msg["token"]
                return

    async def _exchange(self, payload: str | bytes) -> list[dict[str, Any]]:
        """Send one message, then a sentinel; every reply up to the sentinel's error."""
        await self.join()
        assert self.ws is not None
        # replies a loaded server sent late for an earlier case are not this one's
        while True:
            try:
                late = await self.ws.receive(timeout=0.05)
            except TimeoutError:
                break
            if late.type != aiohttp.WSMsgType.TEXT:
                break
        if self.ws.closed:
            await self.join()
        if isinstance(payload, bytes):
            await self.ws.send_bytes(payload)
        else:
            await self.ws.send_str(payload)
        if self.ws.closed:
            return []
        await self.ws.send_str(SENTINEL)
        # a fuzzed "unpublish" gets the sentinel's answer too: wait for both
        pending = 1 + _is_unpublish(payload)
        replies: list[dict[str, Any]] = []
        while True:
            msg = await self.ws.receive(timeout=10)
            if msg.type != aiohttp.WSMsgType.TEXT:  # closed by a "leave"
                replies.append({"type": "_closed", "ws": str(msg.type), "data": msg.data})
                return replies
            data = json.loads(msg.data)
            replies.append(data)
            if data.get("type") == "error" and data.get("reason", "").startswith("unpublish:"):
                pending -= 1
                if not pending:
                    return replies

    def exchange(self, payload: str | bytes) -> list[dict[str, Any]]:
        replies = self.bg.run(self._exchange(payload))
        for r in replies:
            if r.get("type") == "error":
                assert r.get("code") in CODES, r
                assert not any(w in r["reason"] for w in LEAKS), r
        return replies

    async def _http(self, session: aiohttp.ClientSession, method: str, url: URL | str,
                    **kw: Any) -> tuple[int, bytes]:
        async with session.request(method, url, **kw) as r:
            return r.status, await r.read()

    def http_request(self, method: str, url: URL | str, **kw: Any) -> tuple[int, bytes]:
        status, body = self.bg.run(self._http(self.http, method, url, **kw))
        assert status < 500, (method, url, status, body[:200])
        return status, body

    def admin_request(self, method: str, path: str, **kw: Any) -> tuple[int, bytes]:
        status, body = self.bg.run(self._http(self.admin, method, "http://admin" + path, **kw))
        assert status < 500, (method, path, kw, status, body[:200])
        return status, body

    def check(self) -> None:
        assert self.http_request("GET", self.url + "/healthz")[0] == 200
        self.bg.run(self.join())
        status, _ = self.http_request(
            "GET", self.url + "/api/room", headers={"Authorization": f"Bearer {self.token}"}
        )
        assert status == 200
        assert self.server.state is server_mod.ServerState.STARTED


@pytest.fixture(scope="module")
def conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    # this socket sends thousands of messages: lift the flood limit for the run
    old = server_mod.MESSAGE_BURST, server_mod.MESSAGES_PER_S
    server_mod.MESSAGE_BURST, server_mod.MESSAGES_PER_S = 10**9, 10**9
    bg = BackgroundLoop()
    tmp: Path = tmp_path_factory.mktemp("conf-fuzz")
    srv = ConferenceServer(ServerConfig(port=0, state_dir=tmp / "state",
                                        max_upload_bytes=64 * 1024))

    async def start() -> tuple[aiohttp.ClientSession, aiohttp.ClientSession, str]:
        await srv.start()
        urls = srv.create_room("ward")
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False))
        admin = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(srv.config.admin_path))
        )
        return http, admin, urls["invite_url"].split("#invite=")[1]

    http, admin, secret = bg.run(start())
    h = Harness(bg, srv, http, admin, secret)
    bg.run(h.join())
    yield h

    async def stop() -> None:
        if h.ws is not None:
            await h.ws.close()
        await http.close()
        await admin.close()
        await srv.stop()

    bg.run(stop())
    bg.close()
    server_mod.MESSAGE_BURST, server_mod.MESSAGES_PER_S = old
    assert not srv._sessions, "sessions left after stop"


# -- strategies ----------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False), st.text(max_size=30),
    st.sampled_from(["²", "١", "256 ", "\x00", "v=0\r\nm=video 9 UDP 96\r\n"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10,
)
#: message types of the protocol but "leave" (which ends the socket; tested apart)
types = st.sampled_from(["join", "publish", "unpublish", "answer", "chat", "mute", "remove",
                         "lock", "mute_participant", "hand", "offer", "", "JOIN"])
field_names = st.sampled_from(["room", "name", "secret", "pc", "kind", "sdp", "text", "muted",
                               "id", "locked", "raised"])
messages = st.builds(
    lambda t, f: {"type": t, **f}, types, st.dictionaries(field_names, values, max_size=4)
)
deep = st.integers(min_value=1, max_value=3000).flatmap(
    lambda n: st.sampled_from(["[" * n + "]" * n, '{"type":"chat","text":' + "[" * n + "]" * n
                               + "}", '{"a":' * n + "1" + "}" * n])
)
sdp_lines = st.lists(
    st.sampled_from(["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
                     "m=video 9 UDP/TLS/RTP/SAVPF 96",
                     "a=rtpmap:96 VP8/90000", "a=ice-ufrag:x", "a=fingerprint:sha-256 00",
                     "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=setup:actpass", "c=IN IP4 0.0.0.0",
                     "a=mid:0", "a=sendonly", "m=application 9 x 5000"]) | st.text(max_size=30),
    max_size=14,
).map(lambda lines: "\r\n".join(lines) + "\r\n")
sdp_messages = st.builds(
    lambda t, kind, sdp: {"type": t, "pc": "cam", "kind": kind, "sdp": sdp},
    st.sampled_from(["publish", "answer"]), st.sampled_from(["camera", "screen"]), sdp_lines,
)


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


ws_payloads = st.one_of(
    messages.map(dump), values.map(dump), deep, sdp_messages.map(dump),
    st.text(max_size=60), st.binary(max_size=40),
)


# -- the properties ------------------------------------------------------------------


@FUZZ
@given(payload=ws_payloads)
def test_websocket_messages(conf: Harness, payload: str | bytes) -> None:
    conf.exchange(payload)
    conf.check()


def test_leave_and_oversize(conf: Harness) -> None:
    replies = conf.exchange("x" * (signalling.MAX_MESSAGE_BYTES + 1))
    assert replies and replies[0]["code"] == "too_large"
    conf.exchange(json.dumps({"type": "leave"}))
    conf.check()  # rejoins


@FUZZ
@given(path=st.one_of(
    st.text(max_size=60).map(lambda s: quote(s, safe="/")),
    st.integers(1, 9000).map(lambda n: "a" * n),
    st.integers(1, 3000).map(lambda n: "a/" * n),
    st.sampled_from(["%00", "a%00b", "..%2f..%2fetc%2fpasswd", "%2e%2e/%2e%2e/x", "index.html%00",
                     "%C0%AE%C0%AE/", "app.js/..", "./index.html", "web/../../x"]),
))
def test_static_paths(conf: Harness, path: str) -> None:
    status, _ = conf.http_request("GET", URL(conf.url + "/" + path, encoded=True))
    assert status in (200, 400, 404, 414), status
    conf.check()


@FUZZ
@given(filename=st.binary(max_size=300), content=st.binary(max_size=200),
       ctype=st.sampled_from([b"text/plain", b"application/pdf", b"image/png", b"x/y", b"",
                              b"text/plain\x00"]))
def test_uploads(conf: Harness, filename: bytes, content: bytes, ctype: bytes) -> None:
    body = (b"--BND\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename
            + b"\"\r\nContent-Type: " + ctype + b"\r\n\r\n" + content + b"\r\n--BND--\r\n")
    status, reply = conf.http_request(
        "POST", conf.url + "/api/rooms/ward/documents", data=body,
        headers={"Authorization": f"Bearer {conf.token}",
                 "Content-Type": "multipart/form-data; boundary=BND"},
    )
    assert status in (200, 400, 413, 415), status
    if status == 200:
        doc = json.loads(reply)
        assert "\x00" not in doc["name"] and "/" not in doc["name"]
        conf.server.documents.delete(doc["id"])
    conf.check()


@FUZZ
@given(
    path=st.sampled_from(["/api/rooms", "/api/rooms/ward/cap",
                          "/api/rooms/ward/participants/p1/cap", "/api/rooms/nope/cap",
                          "/api/link"]),
    body=st.one_of(
        st.fixed_dictionaries({}, optional={
            "name": st.one_of(st.from_regex(r"fz[a-z0-9]{1,8}", fullmatch=True), values),
            "expires_in_s": values, "retention_s": values, "max_documents": values,
            "max_document_bytes": values, "bps": values, "audio_bps": values,
            "camera_bps": values,
        }).map(dump),
        values.map(dump), deep, st.text(max_size=40),
        st.integers(1, 6000).map(lambda n: '{"bps": ' + "9" * n + "}"),
        st.integers(1, 6000).map(lambda n: '{"name": "fzbig", "max_documents": ' + "9" * n + "}"),
    ),
    ctype=st.sampled_from(["application/json", "text/plain"]),
)
def test_admin_bodies(conf: Harness, path: str, body: str, ctype: str) -> None:
    status, _ = conf.admin_request("POST", path, data=body.encode("utf-8", "surrogatepass"),
                                   headers={"Content-Type": ctype})
    assert status in (200, 400, 404, 413, 415), status
    if ctype != "application/json":
        assert status == 415
    conf.bg.run(asyncio.sleep(0))
    conf.check()
