"""Stopping a daemon on SIGTERM or SIGINT, written once for every ``qkdmeet`` daemon.

:func:`on_stop_signals` runs a callback on each signal; :func:`wait_for_stop_signal`
waits for the first one. The handlers stay installed after the wait, until
the caller removes them or its event loop closes, so a second signal during
the daemon's own cleanup does not take the default action (which would kill
it half way through).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

#: The signals that ask a daemon to stop cleanly.
STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)


def on_stop_signals(callback: Callable[[], object]) -> Callable[[], None]:
    """Run ``callback`` in the running loop on every SIGINT and SIGTERM.

    Returns what removes the handlers again. Where the loop cannot take signal
    handlers (not the main thread, not Unix), nothing is installed.
    """
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, callback)
            installed.append(sig)

    def remove() -> None:
        for sig in installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    return remove


async def wait_for_stop_signal() -> None:
    """Wait for the first SIGTERM or SIGINT.

    To wait at most a while, put it under ``asyncio.timeout`` (and suppress the
    ``TimeoutError``); to stop also on an event of the daemon's own, install
    :func:`on_stop_signals` with ``event.set`` instead and wait on the event.
    """
    stop = asyncio.Event()
    on_stop_signals(stop.set)
    await stop.wait()
