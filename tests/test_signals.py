"""``qkdmeet.signals``: the one SIGTERM/SIGINT helper of every daemon."""

from __future__ import annotations

import asyncio
import os
import signal

from qkdmeet.signals import STOP_SIGNALS, on_stop_signals, wait_for_stop_signal


def _remove_handlers() -> None:
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.remove_signal_handler(sig)


async def test_each_stop_signal_runs_the_callback_until_removed() -> None:
    calls: list[int] = []
    remove = on_stop_signals(lambda: calls.append(1))
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            os.kill(os.getpid(), sig)
            await asyncio.sleep(0.05)
        assert len(calls) == 2
    finally:
        remove()
    assert not any(asyncio.get_running_loop().remove_signal_handler(s) for s in STOP_SIGNALS)


async def test_wait_returns_on_the_signal_and_a_second_one_is_still_caught() -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
    try:
        async with asyncio.timeout(5):
            await wait_for_stop_signal()
        os.kill(os.getpid(), signal.SIGINT)  # during the daemon's cleanup: no KeyboardInterrupt
        await asyncio.sleep(0.05)
    finally:
        _remove_handlers()
