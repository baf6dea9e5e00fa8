"""Tasks of the link's ends: stopped for good (:func:`cancel_and_wait`), their
failures logged (:func:`log_task_end`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from qkdmeet.qkd.classical import (
    ChannelClosed,
)

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` and wait until it has ended (cancelling again if it swallowed one)."""
    if task is None or task is asyncio.current_task():
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()


def log_task_end(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, ChannelClosed):
        log.error("QKD link task %s stopped: %s", task.get_name(), exc, exc_info=exc)
