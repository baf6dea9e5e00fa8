"""Async ETSI GS QKD 014 client (an SAE's side), over mutual TLS.

:class:`EtsiClient` implements :class:`qkdmeet.kme.types.KeySupplier` against
any conforming KME; :class:`KeyPrefetcher` keeps master key buffered for a
generic SAE (the VPN gateway keeps its own buffer:
:class:`qkdmeet.vpn.keystream.SenderKeyStream`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from yarl import URL

from qkdmeet.errors import ConfigError
from qkdmeet.errors import KmeError as KmeError  # the layer's base: catches every EtsiError
from qkdmeet.kme import tls
from qkdmeet.kme.types import Key, KeyStatus


class EtsiError(KmeError):
    """Any failure of an ETSI 014 request to a KME."""


class KmeUnauthorized(EtsiError):
    """401: the KME refused this SAE for this request."""


class KmeBadRequest(EtsiError):
    """400 with the standard's Error body."""

    def __init__(self, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class KeysNotFound(KmeBadRequest):
    """400 ``one or more keys specified are not found on KME``."""


class KmeUnavailable(EtsiError):
    """503 or the KME cannot be reached (after retries)."""


def _parse_keys(data: Any) -> list[Key]:
    try:
        return [
            Key(uuid.UUID(k["key_ID"]), base64.b64decode(k["key"], validate=True))
            for k in data["keys"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise EtsiError(f"malformed key container: {exc}") from exc


class EtsiClient:
    def __init__(
        self,
        kme_url: str,
        *,
        cert_file: str | Path,
        key_file: str | Path,
        ca_file: str | Path,
        timeout: float = 10.0,
        retries: int = 3,
    ) -> None:
        url = URL(kme_url)
        if url.scheme not in ("https", "http") or not url.host:
            raise ConfigError(
                f"KME URL {kme_url!r} is not https://HOST:PORT",
                hint="give the KME's address as its config serves it, e.g. https://127.0.0.1:8443",
            )
        self.url = kme_url.rstrip("/")
        self.base = self.url + "/api/v1/keys/"
        self._ctx = tls.client_context(cert_file, key_file, ca_file)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.retries = retries
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EtsiClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ctx), timeout=self._timeout
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, **kw: Any) -> Any:
        if self._session is None:
            raise EtsiError("EtsiClient used outside 'async with'")
        delay = 0.1
        last = ""
        unreachable = False
        for attempt in range(self.retries + 1):
            try:
                async with self._session.request(method, self.base + path, **kw) as resp:
                    if resp.status == 200:
                        return await resp.json(content_type=None)
                    if resp.status == 401:
                        raise KmeUnauthorized(
                            "401 Unauthorized",
                            hint="the KME takes this SAE's certificate (of its CA) and "
                            "pairs it only with an SAE of the other site",
                        )
                    try:
                        body = await resp.json(content_type=None)
                    except ValueError:
                        body = {}
                    msg = str(body.get("message", "")) if isinstance(body, dict) else ""
                    details = body.get("details") if isinstance(body, dict) else None
                    if resp.status == 400:
                        cls = KeysNotFound if "not found" in msg else KmeBadRequest
                        raise cls(msg or "400 Bad Request", details)
                    if resp.status != 503:
                        raise EtsiError(f"HTTP {resp.status}: {msg}")
                    last, unreachable = f"503: {msg}", False
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                last, unreachable = f"connection: {exc or type(exc).__name__}", True
            if attempt < self.retries:
                await asyncio.sleep(delay)
                delay *= 2
        if unreachable:
            raise KmeUnavailable(
                f"the KME at {self.url} is not reachable ({last})",
                hint="check that it runs and listens there, and that the URL names it",
            )
        raise KmeUnavailable(
            f"the KME at {self.url} has no key for this request ({last})",
            hint="try again once its link has delivered key (or its peer KME is back)",
        )

    async def status(self, slave_sae_id: str) -> KeyStatus:
        d = await self._request("GET", f"{slave_sae_id}/status")
        try:
            return KeyStatus(
                d["source_KME_ID"],
                d["target_KME_ID"],
                d["master_SAE_ID"],
                d["slave_SAE_ID"],
                int(d["key_size"]),
                int(d["stored_key_count"]),
                int(d["max_key_count"]),
                int(d["max_key_per_request"]),
                int(d["max_key_size"]),
                int(d["min_key_size"]),
                int(d.get("max_SAE_ID_count", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EtsiError(f"malformed status: {exc}") from exc

    async def enc_keys(self, slave_sae_id: str, number: int, size_bits: int) -> list[Key]:
        body = {"number": number, "size": size_bits}
        return _parse_keys(await self._request("POST", f"{slave_sae_id}/enc_keys", json=body))

    async def dec_keys(self, master_sae_id: str, key_ids: Sequence[uuid.UUID]) -> list[Key]:
        body = {"key_IDs": [{"key_ID": str(k)} for k in key_ids]}
        return _parse_keys(await self._request("POST", f"{master_sae_id}/dec_keys", json=body))


class KeyPrefetcher:
    """Keeps at least ``target_bits`` of master key for one slave SAE buffered.

    ``start()`` launches the owned background task, ``stop()`` cancels and awaits
    it; ``take(n)`` waits for ``n`` keys.
    """

    def __init__(
        self,
        client: EtsiClient,
        slave_sae_id: str,
        *,
        target_bits: int,
        size_bits: int = 256,
        batch: int = 128,
        poll: float = 0.05,
    ) -> None:
        self.client = client
        self.slave = slave_sae_id
        self.target_bits = target_bits
        self.size_bits = size_bits
        self.batch = batch
        self.poll = poll
        self.errors = 0
        self._keys: deque[Key] = deque()
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def buffered_bits(self) -> int:
        return len(self._keys) * self.size_bits

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"prefetch-{self.slave}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            if self.buffered_bits < self.target_bits:
                try:
                    keys = await self.client.enc_keys(self.slave, self.batch, self.size_bits)
                    self._keys.extend(keys)
                    self._changed.set()
                    continue
                except EtsiError:
                    self.errors += 1
            await asyncio.sleep(self.poll)

    async def take(self, n: int) -> list[Key]:
        while len(self._keys) < n:
            self._changed.clear()
            await self._changed.wait()
        return [self._keys.popleft() for _ in range(n)]
