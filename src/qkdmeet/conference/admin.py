"""A client of the conference server's admin interface (HTTP on its Unix socket).

Used by ``qkdmeet conference room ...``, the demo's key-aware adaptation (caps,
link indicator) and the benchmark. The socket's file mode (0600) and the
server's peer-credential check decide who may use it; nothing here carries a
secret.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from pathlib import Path
from typing import Any

from qkdmeet.errors import ConferenceError


class AdminError(ConferenceError, RuntimeError):
    """The admin interface refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def admin_request(
    socket_path: str | Path,
    method: str,
    path: str,
    body: Any | None = None,
    timeout: float = 10.0,
) -> Any:
    """One JSON request to the admin socket; the decoded JSON answer."""
    conn = _UnixConnection(str(socket_path), timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    except OSError as exc:
        raise AdminError(f"admin socket {socket_path}: {exc}") from exc
    finally:
        conn.close()
    if resp.status != 200:
        text = raw.decode(errors="replace").strip()
        raise AdminError(f"{method} {path}: HTTP {resp.status} {text}", resp.status)
    return json.loads(raw) if raw else None


class AdminClient:
    """Async access to one server's admin socket (requests run on a thread)."""

    def __init__(self, socket_path: str | Path, timeout: float = 10.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout

    async def request(self, method: str, path: str, body: Any | None = None) -> Any:
        return await asyncio.to_thread(
            admin_request, self.socket_path, method, path, body, self.timeout
        )

    async def get(self, path: str) -> Any:
        return await self.request("GET", path)

    async def post(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body)

    async def create_room(self, name: str, **options: Any) -> dict[str, str]:
        result: dict[str, str] = await self.post("/api/rooms", {"name": name, **options})
        return result

    async def close_room(self, name: str) -> Any:
        return await self.request("DELETE", f"/api/rooms/{name}")
