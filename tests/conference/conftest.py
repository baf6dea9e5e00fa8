"""Fixtures: an in-process conference server over HTTPS (self-signed) and bots.

Rooms exist only when the operator creates them: :func:`room_urls` creates a
test's room on the server (as ``qkdmeet conference room create`` does over the
admin socket) and returns its invite and moderator URLs; bots join with the
invite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from qkdmeet.conference.admin import AdminClient
from qkdmeet.conference.bot import BotOptions, ConferenceBot
from qkdmeet.conference.config import ServerConfig
from qkdmeet.conference.server import ConferenceServer

SMALL = BotOptions(width=320, height=240, fps=15, verify_tls=False)
MakeBot = Callable[..., Awaitable[ConferenceBot]]


def room_urls(server: ConferenceServer, room: str, **limits: Any) -> dict[str, str]:
    """The invite and moderator URLs of ``room``, created on first use."""
    cache: dict[str, dict[str, str]] = server.__dict__.setdefault("_test_urls", {})
    if room not in cache:
        cache[room] = server.create_room(room, **limits)
    return cache[room]


def admin(server: ConferenceServer) -> AdminClient:
    return AdminClient(server.config.admin_path)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ConferenceServer]:
    srv = ConferenceServer(
        ServerConfig(port=0, state_dir=tmp_path / "state", max_upload_bytes=64 * 1024)
    )
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def make_bot(server: ConferenceServer) -> AsyncIterator[MakeBot]:
    bots: list[ConferenceBot] = []

    async def make(
        name: str, room: str = "ward", options: BotOptions = SMALL, *, moderator: bool = False
    ) -> ConferenceBot:
        urls = room_urls(server, room)
        bot = ConferenceBot(urls["moderator_url" if moderator else "invite_url"], None, name,
                            options)
        bots.append(bot)
        await bot.start()
        return bot

    yield make
    for bot in bots:
        await bot.stop()
