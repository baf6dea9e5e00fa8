"""Meeting controls in a real browser: participant list, hands, active speaker, moderator.

The same set-up as ``test_browser.py`` (its fixtures and helpers: one in-process
server over HTTPS and one headless Chromium for the module, fake camera and
microphone; the fake microphone beeps, and Chromium puts each packet's RFC 6464
audio level in its RTP header extension, from which the server picks the
active speaker).
"""

from __future__ import annotations

from typing import Any

from . import test_browser as _browser
from .test_browser import HAVE_PLAYWRIGHT, Join, room_name, state, wait_until

if HAVE_PLAYWRIGHT:
    from playwright.async_api import Page, expect

# the browser tests' fixtures (a module's server and Chromium, ``join``) and marks
server, browser, join = _browser.server, _browser.browser, _browser.join
pytestmark = _browser.pytestmark


def entry(page: Page, participant: str) -> Any:
    return page.locator(f'#people li[data-participant="{participant}"]')


def tile(page: Page, participant: str) -> Any:
    return page.locator(f'#grid figure[data-participant="{participant}"]')


async def test_the_list_shows_microphone_and_camera_state_and_raised_hands(join: Join) -> None:
    room = room_name()
    alice = await join(room, "Alice")  # camera and microphone
    bob = await join(room, "Bob", media=False)  # neither
    carol = await join(room, "Carol", camera=False)  # microphone only
    ids = {name: (await state(page))["id"] for name, page in
           (("alice", alice), ("bob", bob), ("carol", carol))}

    await expect(alice.locator("#people li")).to_have_count(3)
    for page in (alice, bob):
        await expect(entry(page, ids["bob"])).to_have_attribute("data-microphone", "off")
        await expect(entry(page, ids["bob"])).to_have_attribute("data-camera", "off")
        await expect(entry(page, ids["carol"])).to_have_attribute("data-microphone", "on")
        await expect(entry(page, ids["carol"])).to_have_attribute("data-camera", "off")
        await expect(entry(page, ids["alice"])).to_have_attribute("data-microphone", "on")
        await expect(entry(page, ids["alice"])).to_have_attribute("data-camera", "on")
    await expect(entry(alice, ids["bob"])).to_contain_text("Bob")
    await expect(entry(alice, ids["bob"])).to_contain_text("microphone off")
    await expect(entry(alice, ids["alice"])).to_contain_text("camera on")
    # a camera that is off shows the participant's initials in its tile
    await expect(tile(alice, ids["carol"]).locator(".tile-avatar")).to_be_visible()
    await expect(tile(alice, ids["carol"]).locator(".tile-avatar")).to_have_text("C")

    # Alice stops her camera: everyone's list says so
    await alice.get_by_role("button", name="Stop camera").click()
    await expect(entry(bob, ids["alice"])).to_have_attribute("data-camera", "off")
    await expect(entry(carol, ids["alice"])).to_contain_text("camera off")

    # Carol raises her hand: the others see it, at the top of their list
    await carol.get_by_role("button", name="Raise hand").click()
    await expect(carol.get_by_role("button", name="Lower hand")).to_be_visible()
    for page in (alice, bob):
        await expect(entry(page, ids["carol"])).to_have_attribute("data-hand", "raised")
        await expect(entry(page, ids["carol"])).to_contain_text("hand raised")
        await expect(page.locator("#people li").first).to_have_attribute(
            "data-participant", ids["carol"]
        )
    # a late joiner sees the raised hand and the camera that is off
    dave = await join(room, "Dave", media=False)
    await expect(entry(dave, ids["carol"])).to_have_attribute("data-hand", "raised")
    await expect(entry(dave, ids["alice"])).to_have_attribute("data-camera", "off")
    # and it comes down again
    await carol.get_by_role("button", name="Lower hand").click()
    await expect(entry(alice, ids["carol"])).to_have_attribute("data-hand", "")
    await expect(entry(dave, ids["carol"])).not_to_contain_text("hand raised")


async def test_the_active_speaker_is_highlighted_and_put_first(join: Join, server: Any) -> None:
    room = room_name()
    alice = await join(room, "Alice")
    bob = await join(room, "Bob")
    carol = await join(room, "Carol", media=False)  # listens
    alice_id, bob_id = (await state(alice))["id"], (await state(bob))["id"]
    await bob.get_by_role("button", name="Mute microphone").click()

    async def speaker_is(page: Page, who: str) -> bool:
        return bool((await state(page))["speaker"] == who)

    await wait_until(lambda: speaker_is(carol, alice_id), "Alice as the active speaker",
                     page=carol)
    assert server.rooms[room].speaker.speaker == alice_id  # from the audio levels alone
    await expect(tile(carol, alice_id)).to_have_class("tile tile-speaker")
    await expect(entry(carol, alice_id)).to_have_attribute("data-speaking", "true")
    await expect(entry(carol, alice_id)).to_contain_text("speaking")
    await expect(tile(carol, bob_id)).not_to_have_class("tile-speaker")

    async def speaker_first_and_larger(page: Page, speaker: str, other: str) -> bool:
        big = await tile(page, speaker).bounding_box()
        small = await tile(page, other).bounding_box()
        if big is None or small is None:
            return False
        first = (big["y"], big["x"]) <= (small["y"], small["x"])
        return first and big["width"] > 1.5 * small["width"]

    await wait_until(lambda: speaker_first_and_larger(carol, alice_id, bob_id),
                     "Alice's tile first and larger")

    # the floor changes hands
    await alice.get_by_role("button", name="Mute microphone").click()
    await bob.get_by_role("button", name="Unmute microphone").click()
    await wait_until(lambda: speaker_is(carol, bob_id), "Bob as the active speaker", page=carol)
    await wait_until(lambda: speaker_is(alice, bob_id), "Alice's page to follow")
    await expect(tile(carol, bob_id)).to_have_class("tile tile-speaker")
    await expect(tile(carol, alice_id)).not_to_have_class("tile-speaker")
    # Bob's tile came after Alice's: it moves ahead of hers
    await wait_until(lambda: speaker_first_and_larger(carol, bob_id, alice_id),
                     "Bob's tile first and larger")


async def test_a_moderator_mutes_a_participant_whose_page_obeys(join: Join, server: Any) -> None:
    room = room_name()
    chair = await join(room, "Chair", media=False, role="moderator")
    bob = await join(room, "Bob")
    bob_id = (await state(bob))["id"]
    await expect(entry(chair, bob_id)).to_have_attribute("data-microphone", "on")

    await chair.get_by_role("button", name="Mute microphone of Bob").click()
    await expect(entry(chair, bob_id)).to_have_attribute("data-microphone", "off")
    await expect(chair.get_by_role("button", name="Mute microphone of Bob")).to_be_disabled()
    # Bob's page obeys: its microphone track is off, and it says who did it
    await expect(bob.get_by_role("button", name="Unmute microphone")).to_be_visible()
    await expect(bob.locator("#status")).to_contain_text("Chair (moderator) turned your "
                                                        "microphone off")
    assert await bob.evaluate("qkdmeet.state.muted.audio") is True
    # the server forwards none of it meanwhile
    bob_session = server.rooms[room].sessions[bob_id]
    assert bob_session.participant.held["audio"]

    async def camera_held() -> bool:
        pub = bob_session.publications.get("camera")
        return bool(pub is not None and pub.forwarders["video"].held)

    await chair.get_by_role("button", name="Stop camera of Bob").click()
    await expect(entry(chair, bob_id)).to_have_attribute("data-camera", "off")
    await expect(bob.get_by_role("button", name="Start camera")).to_be_visible()
    await expect(tile(chair, bob_id).locator(".tile-avatar")).to_be_visible()
    await wait_until(camera_held, "the server to hold Bob's camera")
    tracks = await bob.evaluate(
        "() => [...document.querySelector('.tile-self video').srcObject.getTracks()]"
        ".map((t) => [t.kind, t.enabled])"
    )
    assert sorted(tracks) == [["audio", False], ["video", False]]

    # Bob unmutes himself: the others hear him again
    await bob.get_by_role("button", name="Unmute microphone").click()
    await expect(entry(chair, bob_id)).to_have_attribute("data-microphone", "on")
    assert not bob_session.participant.held["audio"]


async def test_a_participant_who_is_not_a_moderator_is_refused(join: Join, server: Any) -> None:
    room = room_name()
    chair = await join(room, "Chair", role="moderator")
    bob = await join(room, "Bob", media=False)
    chair_id = (await state(chair))["id"]
    # Bob's page offers no moderator controls ...
    await expect(bob.locator("#people li")).to_have_count(2)
    await expect(bob.locator("#btn-lock")).to_be_hidden()
    await expect(bob.get_by_role("button", name="Mute microphone of Chair")).to_have_count(0)
    await expect(chair.get_by_role("button", name="Mute microphone of Bob")).to_be_visible()
    # ... and the server refuses them when his page sends them anyway
    await bob.evaluate(f"qkdmeet.muteParticipant({chair_id!r}, 'audio')")
    await expect(bob.locator("#status")).to_contain_text(
        "mute_participant: only a moderator may do this"
    )
    await bob.evaluate("qkdmeet.setLocked(true)")
    await expect(bob.locator("#status")).to_contain_text("lock: only a moderator may do this")
    await bob.evaluate(f"qkdmeet.removeParticipant({chair_id!r})")
    await expect(bob.locator("#status")).to_contain_text("remove: only a moderator may do this")
    assert not server.rooms[room].locked and chair_id in server.rooms[room].sessions
    await expect(entry(bob, chair_id)).to_have_attribute("data-microphone", "on")
    assert await chair.evaluate("qkdmeet.state.muted.audio") is False
    assert (await state(chair))["phase"] == "joined"
    # the moderator locks the room: everyone sees it locked
    await chair.get_by_role("button", name="Lock room").click()
    await expect(bob.locator("#lock-label")).to_be_visible()
    await expect(chair.get_by_role("button", name="Unlock room")).to_be_visible()
