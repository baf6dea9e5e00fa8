"""Fixtures: an in-process conference server over HTTPS (self-signed) and bots."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from qkdmeet.conference.bot import BotOptions, ConferenceBot
from qkdmeet.conference.config import ServerConfig
from qkdmeet.conference.server import ConferenceServer

SMALL = BotOptions(width=320, height=240, fps=15, verify_tls=False)
MakeBot = Callable[..., Awaitable[ConferenceBot]]


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

    async def make(name: str, room: str = "ward", options: BotOptions = SMALL) -> ConferenceBot:
        bot = ConferenceBot(server.url, room, name, options)
        bots.append(bot)
        await bot.start()
        return bot

    yield make
    for bot in bots:
        await bot.stop()
