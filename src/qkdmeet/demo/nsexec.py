"""HTTP(S) requests from the demo process into the testbed's namespaces.

The demo runs in the host's network namespace; the KMEs, gateways and the
conference server listen inside ``<prefix>gwa``/``gwb``/``lana``. Each
:class:`NamespaceHttp` owns one worker thread that has joined a namespace
with ``setns(2)`` (a thread's network namespace is its own, the rest of the
process is unaffected); every request of that client runs on that thread, so
its sockets are created inside the namespace. Requests are blocking
``urllib`` calls wrapped for asyncio with ``run_in_executor``.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import ssl
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from qkdmeet.errors import DemoError

_CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"


class NamespaceError(DemoError, RuntimeError):
    """Joining a namespace or a request inside it failed."""


def _join(ns: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NamespaceError(f"setns into {ns}: {os.strerror(err)}")
    finally:
        os.close(fd)


class NamespaceHttp:
    """JSON over HTTP(S) from inside namespace ``ns`` (``None``: the host's)."""

    def __init__(self, ns: str | None, *, ssl_context: ssl.SSLContext | None = None,
                 timeout: float = 5.0) -> None:
        self.ns = ns
        self._ssl = ssl_context
        self._timeout = timeout
        init = (lambda: _join(ns)) if ns else None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"ns-{ns or 'host'}",
                                        initializer=init)

    def _request(self, method: str, url: str, body: Any) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self._timeout, context=self._ssl) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise NamespaceError(f"{method} {url}: HTTP {exc.code}") from exc
        except (OSError, ValueError) as exc:
            raise NamespaceError(f"{method} {url}: {exc}") from exc
        try:
            return json.loads(raw) if raw else None
        except json.JSONDecodeError as exc:
            raise NamespaceError(f"{method} {url}: not JSON") from exc

    async def get(self, url: str) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._request, "GET", url, None)

    async def post(self, url: str, body: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._request, "POST", url, body)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
