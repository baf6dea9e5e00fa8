"""The browser client in a real browser: Debian's headless Chromium through Playwright.

Every test drives the real page served by a real in-process
:class:`~qkdmeet.conference.server.ConferenceServer` over HTTPS (its self-signed
certificate), with Chromium's fake camera, microphone and screen
(``--use-fake-device-for-media-stream`` also fakes ``getDisplayMedia``; the
``--auto-select-desktop-capture-source`` flag picks the "Entire screen" source
without a picker). Nothing is mocked between the page and the server: media
goes through the server's forwarding, documents through its HTTP API.

The tests wait for conditions with timeouts (Playwright's auto-retrying
assertions, or :func:`wait_until` polling the page); no assertion depends on
how long something took.

One server and one browser are shared by the module (Chromium is heavy on a
2-core machine); each test uses its own room and its own browser contexts,
which its fixture closes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import pytest_asyncio

try:
    from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_PLAYWRIGHT = False
else:
    HAVE_PLAYWRIGHT = True

CHROMIUM = Path(os.environ.get("QKDMEET_CHROMIUM", "/usr/bin/chromium"))

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not HAVE_PLAYWRIGHT, reason="playwright (python) is not installed"),
    pytest.mark.skipif(
        not CHROMIUM.exists() and shutil.which(str(CHROMIUM)) is None,
        reason=f"{CHROMIUM} is missing (apt-get install chromium)",
    ),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(120),
]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--auto-select-desktop-capture-source=Entire screen",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

TIMEOUT_MS = 30_000  # for any single condition: joining, ICE, first frames
if HAVE_PLAYWRIGHT:
    expect.set_options(timeout=TIMEOUT_MS)  # Playwright's default (5 s) is tight on 2 cores
FRAMES_MORE = 10  # frames decoded between two samples to count as "still flowing"


# --------------------------------------------------------------------------- fixtures


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    from qkdmeet.conference.config import ServerConfig
    from qkdmeet.conference.server import ConferenceServer

    state_dir = tmp_path_factory.mktemp("conference")
    srv = ConferenceServer(ServerConfig(host="127.0.0.1", port=0, state_dir=state_dir))
    await srv.start()
    from qkdmeet.conference.admin import AdminClient

    ADMIN[:] = [AdminClient(srv.config.admin_path)]
    try:
        yield srv
    finally:
        await srv.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


Join = Callable[..., Awaitable["Page"]]
ADMIN: list[Any] = []  # the module server's admin client (diagnostics)


def room_urls(server: Any, room: str) -> dict[str, str]:
    """The invite and moderator URLs of a test's room, created on first use."""
    cache: dict[str, dict[str, str]] = server.__dict__.setdefault("_test_urls", {})
    if room not in cache:
        cache[room] = server.create_room(room)
    return cache[room]


@pytest_asyncio.fixture(loop_scope="module")
async def join(browser: Browser, server: Any) -> AsyncIterator[Join]:
    """``await join(room, name)``: a page that has joined ``room`` (unless ``refused``)."""
    contexts: list[BrowserContext] = []

    async def _join(
        room: str,
        name: str,
        *,
        media: bool = True,
        camera: bool = True,
        form: bool = False,
        refused: bool = False,
        role: str = "invite",
        fragment: str | None = None,
        strict_csp: bool = False,
    ) -> Page:
        # Playwright's wait_for_function evaluates strings in the page, which the
        # server's Content-Security-Policy forbids (no eval): the tests bypass it,
        # except with ``strict_csp`` (the policy's own test), which only polls with
        # page.evaluate (DevTools, not subject to the page's policy).
        context = await browser.new_context(
            ignore_https_errors=True,
            viewport={"width": 1280, "height": 800},
            bypass_csp=not strict_csp,
        )
        contexts.append(context)
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        params = {"room": room, "name": name}
        if not media:
            params |= {"camera": "0", "microphone": "0"}
        elif not camera:
            params |= {"camera": "0"}
        if fragment is None:
            fragment = room_urls(server, room)[f"{role}_url"].split("#", 1)[1]
        if form:  # through the join form, as a user does
            await page.goto(f"{server.url}/?{urlencode(params)}#{fragment}")
            await page.get_by_role("textbox", name="Room", exact=True).fill(room)
            await page.get_by_role("textbox", name="Your name").fill(name)
            await page.get_by_role("button", name="Join").click()
        else:
            await page.goto(f"{server.url}/?{urlencode(params | {'autojoin': '1'})}#{fragment}")
        await wait_until(
            lambda: page.evaluate(
                "() => ['joined', 'closed'].includes(window.qkdmeet?.state.phase)"
                " || (window.qkdmeet?.state.phase === 'idle'"
                " && window.qkdmeet.state.errors.length > 0)"
            ),
            f"{name} to join or be refused",
        )
        joined = await state(page)
        if not refused:
            assert joined["phase"] == "joined", f"{name} could not join: {joined['errors']}"
        return page

    try:
        yield _join
    finally:
        for context in contexts:
            await context.close()


def room_name() -> str:
    return f"room-{secrets.token_hex(4)}"


# --------------------------------------------------------------------------- helpers


async def wait_until(
    probe: Callable[[], Awaitable[Any]],
    what: str,
    within_s: float = TIMEOUT_MS / 1000,
    page: Page | None = None,
) -> Any:
    """Poll ``probe`` until it returns a truthy value; fail with ``what`` on timeout.

    With ``page``, the failure message carries that page's streams and RTP counters,
    and the server's view of the page's room (forwarding counters).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            detail = ""
            if page is not None:
                page_state = await state(page)
                try:
                    room = await ADMIN[0].get(f"/api/rooms/{page_state['room']}")
                except Exception as exc:
                    room = repr(exc)
                detail = json.dumps(
                    {
                        "state": page_state,
                        "stats": await page.evaluate("qkdmeet.stats()"),
                        "server_room": room,
                    }
                )
            pytest.fail(f"timed out waiting for {what} (last value {value!r}) {detail}")
        await asyncio.sleep(0.25)


async def state(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate("JSON.parse(JSON.stringify(window.qkdmeet.state))")
    return result


async def received(page: Page, sender_id: str, stream_kind: str, media: str) -> dict[str, int]:
    """Summed inbound-rtp counters of ``media`` in the subscription to a sender's stream set."""
    stats: dict[str, Any] = await page.evaluate("window.qkdmeet.stats()")
    total = {"framesDecoded": 0, "packetsReceived": 0, "frameWidth": 0, "subscriptions": 0}
    for pc in stats.values():
        if pc["role"] != "subscribe" or pc["from"] != sender_id or pc["kind"] != stream_kind:
            continue
        total["subscriptions"] += 1
        for rtp in pc["inbound"]:
            if rtp["kind"] == media:
                total["framesDecoded"] += rtp["framesDecoded"]
                total["packetsReceived"] += rtp["packetsReceived"]
                total["frameWidth"] = max(total["frameWidth"], rtp["frameWidth"])
    return total


async def assert_flowing(
    page: Page, sender_id: str, stream_kind: str, more: int = FRAMES_MORE
) -> None:
    """Video frames of a sender's stream set are decoded, and more keep being decoded."""
    what = f"{stream_kind} video from {sender_id}"

    async def decoded() -> int:
        return (await received(page, sender_id, stream_kind, "video"))["framesDecoded"]

    first = await wait_until(decoded, f"first decoded frames of {what}", page=page)
    await wait_until(
        lambda: _more_than(decoded, first + more),
        f"{what} to keep decoding past {first}",
        page=page,
    )


async def assert_audio_flowing(page: Page, sender_id: str) -> None:
    async def packets() -> int:
        return (await received(page, sender_id, "camera", "audio"))["packetsReceived"]

    first = await wait_until(packets, f"audio packets from {sender_id}", page=page)
    await wait_until(
        lambda: _more_than(packets, first + 20), f"audio from {sender_id} to continue", page=page
    )


async def _more_than(probe: Callable[[], Awaitable[int]], threshold: int) -> bool:
    return await probe() > threshold


async def post_json(server: Any, path: str, body: Any) -> dict[str, Any]:
    """POST to the operator's admin interface (its Unix socket)."""
    from qkdmeet.conference.admin import AdminClient

    result: dict[str, Any] = await AdminClient(server.config.admin_path).post(path, body)
    return result


def png_bytes(width: int = 16, height: int = 8) -> bytes:
    """A small valid PNG (RGB gradient), so the page's <img> really decodes it."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 15, y * 30, 128))
        for y in range(height)
    )

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- tests


async def test_camera_audio_and_screen_share_flow_between_two_browsers(join: Join) -> None:
    room = room_name()
    alice = await join(room, "Dr. Alice", form=True)
    bob = await join(room, "Dr. Bob")
    alice_id = (await state(alice))["id"]
    bob_id = (await state(bob))["id"]

    # Both see each other in the participant list and as a video tile.
    await expect(alice.locator("#people li")).to_have_count(2)
    await expect(bob.locator("#people")).to_contain_text("Dr. Alice")
    await expect(bob.locator(f'#grid figure[data-participant="{alice_id}"]')).to_contain_text(
        "Dr. Alice"
    )

    # Camera video and audio go both ways through the server.
    await assert_flowing(bob, alice_id, "camera")
    await assert_flowing(alice, bob_id, "camera")
    await assert_audio_flowing(bob, alice_id)

    # Alice shares her (fake) screen with the button; Bob gets it on the stage.
    await alice.get_by_role("button", name="Share screen").click()
    await expect(alice.get_by_role("button", name="Stop sharing")).to_be_visible()
    await assert_flowing(bob, alice_id, "screen")
    stage_video = bob.locator("#stage video")
    await expect(bob.locator("#stage")).to_contain_text("Dr. Alice is presenting")
    await wait_until(
        lambda: stage_video.evaluate("v => v.videoWidth > 0 && v.readyState >= 2"),
        "the screen share to render on Bob's stage",
    )
    screen = await received(bob, alice_id, "screen", "video")
    camera = await received(bob, alice_id, "camera", "video")
    assert screen["frameWidth"] > 0 and camera["frameWidth"] > 0
    await expect(bob.locator(f'#people li[data-participant="{alice_id}"]')).to_contain_text(
        "presenting"
    )

    # Stopping the share removes it from Bob's stage (server sends unsubscribe).
    await alice.get_by_role("button", name="Stop sharing").click()
    await expect(bob.locator("#stage video")).to_have_count(0)
    await expect(bob.locator("#stage")).to_be_hidden()
    assert (await received(bob, alice_id, "screen", "video"))["subscriptions"] == 0

    # Muting the microphone shows at the other end.
    await alice.get_by_role("button", name="Mute microphone").click()
    await expect(bob.locator(f'#people li[data-participant="{alice_id}"]')).to_contain_text(
        "microphone off"
    )

    # Bob leaves: his tile and subscription disappear at Alice's; her camera still flows
    # to a newcomer.
    await bob.get_by_role("button", name="Leave").click()
    await expect(alice.locator("#people li")).to_have_count(1)
    await expect(alice.locator(f'#grid figure[data-participant="{bob_id}"]')).to_have_count(0)
    carol = await join(room, "Dr. Carol", media=False)
    await assert_flowing(carol, alice_id, "camera")


async def test_a_participant_without_camera_is_heard_and_shown_as_a_card(join: Join) -> None:
    room = room_name()
    alice = await join(room, "Alice Example", camera=False)  # microphone only
    bob = await join(room, "Bob", media=False)
    alice_id = (await state(alice))["id"]
    await assert_audio_flowing(bob, alice_id)
    await assert_flowing(bob, alice_id, "camera", more=2)  # the initials card, 2 frames/s
    await expect(alice.get_by_role("button", name="Stop camera")).to_be_disabled()
    await expect(alice.get_by_role("button", name="Mute microphone")).to_be_enabled()


async def test_chat_message_reaches_the_other_participant(join: Join) -> None:
    room = room_name()
    alice = await join(room, "Alice", media=False)
    bob = await join(room, "Bob", media=False)
    text = f"Variant of uncertain significance in BRCA2 <b>not bold</b> {secrets.token_hex(3)}"

    await alice.get_by_label("Message").fill(text)
    await alice.get_by_role("button", name="Send").click()

    last = bob.locator("#chat-log li").last
    await expect(last.locator(".chat-text")).to_have_text(text)  # as text, not as HTML
    await expect(last.locator(".chat-name")).to_have_text("Alice")
    await expect(alice.locator("#chat-log li").last.locator(".chat-text")).to_have_text(text)
    assert await alice.get_by_label("Message").input_value() == ""
    assert (await state(bob))["chat"][-1]["text"] == text


async def test_document_upload_is_downloaded_byte_identical_and_viewable(join: Join) -> None:
    room = room_name()
    alice = await join(room, "Institute", media=False)
    bob = await join(room, "Hospital", media=False)

    # A "PDF" with every byte value in it, so any text-mode mangling would show.
    report = b"%PDF-1.4\n" + bytes(range(256)) * 64 + secrets.token_bytes(200_003) + b"\n%%EOF\n"
    await alice.locator("#doc-file").set_input_files(
        files=[{"name": "genomic-analysis.pdf", "mimeType": "application/pdf", "buffer": report}]
    )
    await alice.get_by_role("button", name="Share", exact=True).click()

    link = bob.get_by_role("link", name="Download genomic-analysis.pdf")
    await expect(link).to_be_visible()
    await expect(bob.locator("#docs li").first).to_contain_text("from Institute")
    async with bob.expect_download() as info:
        await link.click()
    download = await info.value
    assert download.suggested_filename == "genomic-analysis.pdf"
    downloaded = await asyncio.to_thread(Path(await download.path()).read_bytes)
    assert hashlib.sha256(downloaded).hexdigest() == hashlib.sha256(report).hexdigest()

    # An HTML report is shown in the page (in a sandboxed frame), an image as <img>.
    html = "<html><body><h1>Tumour board: case 17</h1><p>BRCA2 c.5946delT</p></body></html>"
    await alice.locator("#doc-file").set_input_files(
        files=[{"name": "case-17.html", "mimeType": "text/html", "buffer": html.encode()}]
    )
    await alice.get_by_role("button", name="Share", exact=True).click()
    await bob.get_by_role("button", name="View case-17.html").click()
    await expect(bob.get_by_role("dialog", name="case-17.html")).to_be_visible()
    frame = bob.frame_locator("#viewer-body iframe")
    await expect(frame.locator("h1")).to_have_text("Tumour board: case 17")
    assert await bob.locator("#viewer-body iframe").get_attribute("sandbox") == ""
    await bob.get_by_role("button", name="Close").click()
    await expect(bob.locator("#viewer")).to_be_hidden()
    await expect(bob.get_by_role("button", name="View case-17.html")).to_be_focused()

    await alice.locator("#doc-file").set_input_files(
        files=[{"name": "pedigree.png", "mimeType": "image/png", "buffer": png_bytes()}]
    )
    await alice.get_by_role("button", name="Share", exact=True).click()
    await bob.get_by_role("button", name="View pedigree.png").click()
    image = bob.locator("#viewer-body img")
    await wait_until(
        lambda: image.evaluate("img => img.complete && img.naturalWidth === 16"),
        "the PNG to be decoded in the viewer",
    )

    # A late joiner gets the room's documents in its `joined` message.
    carol = await join(room, "Late", media=False)
    await expect(carol.locator("#docs li")).to_have_count(3)


async def test_refused_upload_is_reported_in_the_status_bar(join: Join) -> None:
    alice = await join(room_name(), "Alice", media=False)
    await alice.locator("#doc-file").set_input_files(
        files=[{"name": "tool.exe", "mimeType": "application/x-msdownload", "buffer": b"MZ\x90"}]
    )
    await alice.get_by_role("button", name="Share", exact=True).click()
    status = alice.locator("#status")
    await expect(status).to_have_attribute("data-level", "error")
    await expect(status).to_contain_text("415")
    await expect(alice.locator("#docs li")).to_have_count(0)


async def test_refused_join_is_reported_and_the_form_comes_back(join: Join) -> None:
    page = await join(room_name(), "x" * 65, media=False, refused=True)  # server limit: 64
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-level", "error")
    await expect(status).to_contain_text("Cannot join")
    await expect(status).to_contain_text("64")
    await expect(page.get_by_role("button", name="Join")).to_be_enabled()
    await expect(page.locator("#call-view")).to_be_hidden()
    assert (await state(page))["phase"] == "idle"


async def test_a_dropped_signalling_connection_rejoins_and_media_resumes(
    join: Join, server: Any
) -> None:
    room = room_name()
    alice = await join(room, "Alice")
    bob = await join(room, "Bob", media=False)
    old_id = (await state(alice))["id"]
    await assert_flowing(bob, old_id, "camera")
    await alice.get_by_role("button", name="Mute microphone").click()

    # The server loses Alice's socket (as when the VPN stalls or the server restarts).
    await server.rooms[room].sessions[old_id].ws.close()

    await alice.wait_for_function(
        f"qkdmeet.state.phase === 'joined' && qkdmeet.state.id !== {old_id!r}"
    )
    new_id = (await state(alice))["id"]
    await expect(bob.locator(f'#people li[data-participant="{old_id}"]')).to_have_count(0)
    await expect(bob.locator("#people li")).to_have_count(2)
    await assert_flowing(bob, new_id, "camera")
    # Her camera and her mute state came back with her.
    await expect(bob.locator(f'#people li[data-participant="{new_id}"]')).to_contain_text(
        "microphone off"
    )
    await expect(alice.get_by_role("button", name="Unmute microphone")).to_be_visible()
    assert (await state(alice))["phase"] == "joined"


async def test_a_failed_publish_connection_is_published_again(join: Join, server: Any) -> None:
    room = room_name()
    alice = await join(room, "Alice")
    bob = await join(room, "Bob", media=False)
    alice_id = (await state(alice))["id"]
    await assert_flowing(bob, alice_id, "camera")

    # The server's end of Alice's camera connection dies without a word (no
    # signalling): her browser sees ICE consent expire (~20 s), the connection fail,
    # and publishes the camera again on a new connection.
    publication = server.rooms[room].sessions[alice_id].publications["camera"]
    await publication.pc.close()
    await alice.wait_for_function(
        "Object.entries(qkdmeet.state.streams).some(([name, s]) =>"
        " name !== 'camera' && s.role === 'publish' && s.kind === 'camera'"
        " && s.connectionState === 'connected')",
        timeout=60_000,
    )
    assert "camera" not in server.rooms[room].sessions[alice_id].publications  # withdrawn
    await expect(bob.locator("#people li")).to_have_count(2)

    async def resubscribed() -> bool:
        stats = await bob.evaluate("qkdmeet.stats()")
        return any(n.startswith(f"sub-{alice_id}-camera-") for n in stats)

    await wait_until(resubscribed, "Bob to subscribe to the republished camera", page=bob)
    await assert_flowing(bob, alice_id, "camera")


async def test_link_indicator_shows_posted_protection_status(join: Join, server: Any) -> None:
    room = room_name()
    alice = await join(room, "Alice", media=False)
    indicator = alice.locator("#link-indicator")

    await post_json(
        server,
        "/api/link",
        {
            "protected": True,
            "key_buffered_bytes": 12_500_000,
            "sustainable_bps": 2_400_000,
            "qber": 0.018,
            "alarm": None,
        },
    )
    await expect(indicator).to_have_attribute("data-level", "green")
    await expect(indicator).to_contain_text("QKD-protected: OTP")
    await expect(indicator).to_contain_text("key buffer 12.5 MB")
    await expect(indicator).to_contain_text("QBER 1.8 %")
    await expect(alice.locator("#link-alarm")).to_be_hidden()

    # A participant who joins later gets the current status with `joined`.
    bob = await join(room, "Bob", media=False)
    await expect(bob.locator("#link-indicator")).to_contain_text("key buffer 12.5 MB")

    alarm = "QBER above 11 %: key generation stopped (possible eavesdropper)"
    await post_json(
        server,
        "/api/link",
        {"protected": True, "key_buffered_bytes": 300_000, "qber": 0.13, "alarm": alarm},
    )
    await expect(indicator).to_have_attribute("data-level", "red")
    await expect(alice.locator("#link-alarm")).to_have_text(alarm)
    await expect(bob.locator("#link-indicator")).to_have_attribute("data-level", "red")

    # A VPN gateway's budget as it is (vpn/gateway.py): little key left at this rate.
    budget = {
        "gateway": "a",
        "key_buffered_bytes": 2_000_000,
        "sustainable_payload_bps": 950_000.0,
        "seconds_of_key_at_consumption": 20.0,
        "drops_no_key": 0,
    }
    await post_json(server, "/api/link", budget)
    await expect(indicator).to_have_attribute("data-level", "amber")
    await expect(indicator).to_contain_text("sustainable 950 kb/s")
    await expect(indicator).to_contain_text("20 s of key left")
    await expect(alice.locator("#link-alarm")).to_be_hidden()

    await post_json(server, "/api/link", {"protected": False, "alarm": "no key: link down"})
    await expect(indicator).to_contain_text("NOT QKD-protected")
    await expect(indicator).to_have_attribute("data-level", "red")


async def test_bitrate_cap_from_the_server_reaches_the_senders(join: Join, server: Any) -> None:
    room = room_name()
    alice = await join(room, "Alice")
    alice_id = (await state(alice))["id"]

    async def video_cap() -> int | None:
        stats = await alice.evaluate("window.qkdmeet.stats()")
        caps = [
            c["maxBitrate"]
            for pc in stats.values()
            if pc["role"] == "publish" and pc["kind"] == "camera"
            for c in pc["maxBitrates"]
            if c["kind"] == "video"
        ]
        return caps[0] if caps else None

    default = await wait_until(video_cap, "the camera sender's default cap")
    assert default == (await state(alice))["bitrates"]["camera"]

    await post_json(server, f"/api/rooms/{room}/participants/{alice_id}/cap", {"bps": 250_000})
    await wait_until(
        lambda: _equals(video_cap, 250_000), "the camera sender to follow the 250 kb/s cap"
    )
    await expect(alice.locator("#bitrate-label")).to_contain_text("camera 250 kb/s")

    await post_json(server, f"/api/rooms/{room}/participants/{alice_id}/cap", {"bps": None})
    await wait_until(lambda: _equals(video_cap, default), "the cap to be lifted")

    # the adaptation's last tier: a camera cap of 0 stops the camera's encoding
    async def camera_active() -> bool | None:
        stats = await alice.evaluate("window.qkdmeet.stats()")
        flags = [c["active"] for pc in stats.values()
                 if pc["role"] == "publish" and pc["kind"] == "camera"
                 for c in pc["maxBitrates"] if c["kind"] == "video"]
        return flags[0] if flags else None

    async def frames_encoded() -> int:
        stats = await alice.evaluate("window.qkdmeet.stats()")
        return sum(o["framesEncoded"] for pc in stats.values()
                   if pc["role"] == "publish" and pc["kind"] == "camera"
                   for o in pc["outbound"] if o["kind"] == "video")

    async def encoding() -> bool:
        return await frames_encoded() > 0

    # a loaded machine may not have connected the publisher yet: pause a camera that encodes
    await wait_until(encoding, "the camera to encode frames")
    await post_json(server, f"/api/rooms/{room}/cap", {"bps": None, "camera_bps": 0})
    await wait_until(lambda: _equals(camera_active, False), "the camera encoding to stop")
    await expect(alice.locator("#bitrate-label")).to_contain_text("camera paused")
    await asyncio.sleep(0.5)
    held = await frames_encoded()
    assert held > 0
    await asyncio.sleep(1.5)
    assert await frames_encoded() <= held + 1  # paused (one frame may be in flight)
    await post_json(server, f"/api/rooms/{room}/cap", {"bps": None, "camera_bps": None})
    await wait_until(lambda: _equals(camera_active, True), "the camera encoding to resume")


async def _equals(probe: Callable[[], Awaitable[Any]], expected: Any) -> bool:
    return bool(await probe() == expected)


async def test_browser_and_headless_bot_exchange_media_and_chat(join: Join, server: Any) -> None:
    """The Python bot's aiortc VP8 plays in Chromium, and Chromium's VP8 reaches the bot."""
    from qkdmeet.conference.bot import BotOptions, ConferenceBot

    room = room_name()
    options = BotOptions(
        width=320,
        height=240,
        fps=10,
        screen=True,
        screen_width=640,
        screen_height=360,
        screen_fps=5,
        decode_limit=0,  # count the browser's frames from RTP, no decoding in Python
        verify_tls=False,
    )
    bot = ConferenceBot(room_urls(server, room)["invite_url"], None, "Slide bot", options)
    await bot.start()
    try:
        page = await join(room, "Browser")
        page_id = (await state(page))["id"]

        await assert_flowing(page, bot.id, "camera")
        await assert_flowing(page, bot.id, "screen")
        await expect(page.locator("#stage")).to_contain_text("Slide bot is presenting")
        await assert_audio_flowing(page, bot.id)

        def bot_frames() -> int:
            rec = bot.received.get(f"{page_id}:camera:video")
            return rec.stats.frames if rec is not None else 0

        first = await wait_until(_now(bot_frames), "the bot to receive the browser's camera")
        await wait_until(
            _now(lambda: bot_frames() > first + FRAMES_MORE), "the browser's camera to keep coming"
        )

        await page.get_by_label("Message").fill("hello bot")
        await page.get_by_role("button", name="Send").click()
        message = await bot.wait_for("chat", text="hello bot")
        assert message["from"] == page_id and message["name"] == "Browser"
        await bot.chat("hello browser")
        await expect(page.locator("#chat-log li").last).to_contain_text("hello browser")
    finally:
        await bot.stop()
    await expect(page.locator(f'#grid figure[data-participant="{bot.id}"]')).to_have_count(0)
    await expect(page.locator("#stage")).to_be_hidden()


def _now(value: Callable[[], Any]) -> Callable[[], Awaitable[Any]]:
    """A synchronous probe as the coroutine :func:`wait_until` polls."""

    async def probe() -> Any:
        return value()

    return probe


# --------------------------------------------------------------------------- security

XSS_NAME = '<img src=x onerror="window.__xss=1">'
FILE_XSS = "<img src=x onerror=window.__xss=4>"  # a browser sends '"' in a file name as %22


async def test_an_xss_payload_name_is_shown_as_text_and_csp_forbids_inline_script(
    join: Join, server: Any
) -> None:
    room = room_name()
    mallory = await join(room, XSS_NAME, media=False, strict_csp=True)
    alice = await join(room, "Alice", media=False, strict_csp=True)
    # as text in the list of participants, the tile's caption and the chat
    entry = alice.locator("#people li").filter(has_text="onerror")
    await expect(entry.locator(".person-name")).to_have_text(XSS_NAME)
    await expect(alice.locator("#people img")).to_have_count(0)
    await expect(alice.locator("#grid img")).to_have_count(0)
    await mallory.get_by_label("Message").fill(f"{XSS_NAME}<script>window.__xss=2</script>")
    await mallory.get_by_role("button", name="Send").click()
    await expect(alice.locator("#chat-log li").last.locator(".chat-name")).to_have_text(XSS_NAME)
    await mallory.locator("#doc-file").set_input_files(
        files=[{"name": f"{FILE_XSS}.txt", "mimeType": "text/plain", "buffer": b"report"}]
    )
    await mallory.get_by_role("button", name="Share", exact=True).click()
    await expect(alice.locator("#docs .doc-name")).to_have_text(f"{FILE_XSS}.txt")
    await expect(alice.locator("#docs img")).to_have_count(0)
    assert await alice.evaluate("window.__xss") is None
    # the page is served with a policy that forbids inline script
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/", ssl=False) as resp,
    ):
        policy = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy and "frame-ancestors 'none'" in policy
    injected = await alice.evaluate(
        """() => new Promise((resolve) => {
             document.addEventListener("securitypolicyviolation",
               (e) => resolve(e.violatedDirective), { once: true });
             const s = document.createElement("script");
             s.textContent = "window.__xss = 3";
             document.body.append(s);
             setTimeout(() => resolve(null), 2000);
           })"""
    )
    assert injected is not None and injected.startswith("script-src")
    assert await alice.evaluate("window.__xss") is None


async def test_without_the_invite_the_page_cannot_join(join: Join, server: Any) -> None:
    room = room_name()
    alice = await join(room, "Alice", media=False)
    for fragment in ("invite=not-the-secret", ""):
        page = await join(room, "Outsider", media=False, refused=True, fragment=fragment)
        if fragment:
            status = page.locator("#status")
            await expect(status).to_contain_text("Cannot join")
            await expect(status).to_contain_text("invalid invite")
        assert (await state(page))["phase"] == "idle"
        await expect(page.locator("#call-view")).to_be_hidden()
    await expect(alice.locator("#people li")).to_have_count(1)  # nobody came in


async def test_documents_are_for_the_room_and_only_a_moderator_removes(
    join: Join, server: Any
) -> None:
    room, other = room_name(), room_name()
    chair = await join(room, "Chair", media=False, role="moderator")
    bob = await join(room, "Bob", media=False)
    eve = await join(other, "Eve", media=False)  # a participant of another room
    assert (await state(chair))["moderator"] and not (await state(bob))["moderator"]
    await bob.locator("#doc-file").set_input_files(
        files=[{"name": "case.txt", "mimeType": "text/plain", "buffer": b"patient 17"}]
    )
    await bob.get_by_role("button", name="Share", exact=True).click()
    await expect(chair.locator("#docs li")).to_have_count(1)
    url = (await state(chair))["documents"][0]["url"]
    fetch = "async (url) => (await fetch(url)).status"
    assert await eve.evaluate(fetch, url) == 401  # no session token
    assert await chair.evaluate(fetch, url) == 401  # the page's own fetch needs its token
    # (with a session token of another room it is 404: test_security.py, the bot)
    # the moderator's controls: only on the moderator's page
    await expect(bob.locator("#btn-lock")).to_be_hidden()
    await expect(bob.get_by_role("button", name="Remove Chair")).to_have_count(0)
    await chair.get_by_role("button", name="Remove Bob").click()
    await bob.wait_for_function("qkdmeet.state.phase === 'closed'")
    await expect(bob.locator("#status")).to_contain_text("removed")
    await expect(chair.locator("#people li")).to_have_count(1)
    await chair.get_by_role("button", name="Lock room").click()
    await chair.wait_for_function("qkdmeet.state.locked === true")
    late = await join(room, "Late", media=False, refused=True)
    await expect(late.locator("#status")).to_contain_text("locked")
