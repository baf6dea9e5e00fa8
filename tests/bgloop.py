"""An event loop in a thread, for Hypothesis tests (sync) against servers that run on it.

Hypothesis drives synchronous test functions; the daemons under test (KME pair,
conference server) are asyncio servers. :class:`BackgroundLoop` runs them on a
loop of its own thread and :meth:`BackgroundLoop.run` executes one coroutine
there, waiting for its result with a timeout (a hang fails the test).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
