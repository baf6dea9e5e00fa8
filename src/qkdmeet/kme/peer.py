"""KME-to-KME coordination: one shared pool, one allocation authority.

Both KMEs of a link hold the same key stream. The pool is not split between
the two directions: whichever master asks takes the next range. One KME of the
pair (``authority = true``) is the only one that ever allocates ranges; it does
so in a single SQLite transaction that advances its cursor, and the event loop
serialises those transactions, so two allocations never overlap, whatever the
timing of the requests from the two sites.

* A master at the authority's site: allocate; send ``hold`` to the peer, which
  stores the keys for its slave (committed) and acknowledges; then spend the
  range and deliver to the master.
* A master at the other site: its KME sends ``reserve`` to the authority, which
  allocates, stores the keys for its own slave (committed) and returns the
  range and key IDs; the asking KME spends the range and delivers.

Why nothing is delivered twice: a range exists only once, from the one
cursor; each KME additionally refuses to spend a range that overlaps one it
spent (``spent`` table, same transaction), so even a replayed or duplicated
peer message cannot hand the same bytes out again. Keys reach a master only
after the slave's KME has committed them, so slaves always find the master's
keys. A crash between commit and reply loses that range (it is spent at one
side), never duplicates it. The peer channel is HTTPS with mutual TLS and the
peer is recognised by its KME certificate.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp

from qkdmeet.errors import KmeError
from qkdmeet.kme.store import KeyStore, Reservation, StoreError
from qkdmeet.kme.types import Key


class PeerError(KmeError):
    """The peer KME could not be reached or refused the request."""


def reservation_to_json(res: Reservation) -> dict[str, Any]:
    return {
        "start": res.start,
        "size": res.size,
        "key_IDs": [str(k) for k in res.key_ids],
        "master": res.master,
        "slave": res.slave,
    }


#: The stable reason of a malformed reservation (the peer gets this, never exception text).
BAD_RESERVATION = (
    "bad reservation: start and size are integers, key_IDs a list of UUIDs, master and "
    "slave strings"
)


#: Keys in one reservation at most, and the largest stream position a peer may name.
MAX_RESERVATION_KEYS = 1024
MAX_STREAM_POSITION = 1 << 62


def _count(value: Any, lo: int) -> int:
    """An exact JSON integer in ``[lo, MAX_STREAM_POSITION]`` (no bool, float or string)."""
    if type(value) is not int or not lo <= value <= MAX_STREAM_POSITION:
        raise ValueError
    return value


def reservation_from_json(data: Any) -> Reservation:
    """The reservation a peer sent; :class:`PeerError` with :data:`BAD_RESERVATION`
    for anything else (exact integers in range, at most :data:`MAX_RESERVATION_KEYS`
    key IDs, strings for the SAE IDs)."""
    try:
        ids, master, slave = data["key_IDs"], data["master"], data["slave"]
        if not (isinstance(ids, list) and 0 < len(ids) <= MAX_RESERVATION_KEYS
                and all(isinstance(k, str) and len(k) <= 64 for k in ids)
                and isinstance(master, str) and isinstance(slave, str)):  # fmt: skip
            raise ValueError
        return Reservation(
            start=_count(data["start"], 0),
            size=_count(data["size"], 1),
            key_ids=tuple(uuid.UUID(k) for k in ids),
            master=master,
            slave=slave,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise PeerError(BAD_RESERVATION) from None  # never the exception's text


async def wait_for_stream(store: KeyStore, stop: int, wait_s: float = 3.0) -> None:
    """Wait until this KME has received the link's key up to ``stop`` (blocks lag a little)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while store.stream_end < stop:
        if loop.time() > deadline:
            raise StoreError("key range not yet received from the link")
        await asyncio.sleep(0.01)


class Coordinator:
    """Allocates keys for local masters, through or as the authority."""

    def __init__(
        self,
        store: KeyStore,
        session: aiohttp.ClientSession,
        peer_url: str,
        *,
        authority: bool,
    ) -> None:
        self.store = store
        self.session = session
        self.peer_url = peer_url.rstrip("/")
        self.authority = authority
        self._pending: list[tuple[Reservation, asyncio.Future[None]]] = []

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            async with self.session.post(self.peer_url + path, json=body) as resp:
                if resp.status != 200:
                    raise PeerError(f"peer answered {resp.status}: {await resp.text()}")
                return await resp.json()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PeerError(f"peer KME unreachable: {exc}") from exc

    async def keys_for_master(
        self, master: str, slave: str, number: int, size_bytes: int
    ) -> list[Key]:
        if self.authority:
            res = self.allocate(master, slave, number, size_bytes)
            await self._post("/peer/v1/hold", reservation_to_json(res))
        else:
            body = {"master": master, "slave": slave, "number": number, "size": size_bytes}
            res = reservation_from_json(await self._post("/peer/v1/reserve", body))
            await wait_for_stream(self.store, res.stop)
        return self.store.take_for_master(res)

    def allocate(self, master: str, slave: str, number: int, size_bytes: int) -> Reservation:
        start = self.store.allocate(number * size_bytes)
        ids = tuple(uuid.uuid4() for _ in range(number))
        return Reservation(start, size_bytes, ids, master, slave)

    async def on_reserve(
        self, master: str, slave: str, number: int, size_bytes: int
    ) -> Reservation:
        """Authority side of ``reserve``: allocate and hold the keys for the local slave."""
        if not self.authority:
            raise PeerError("this KME is not the allocation authority")
        ids = tuple(uuid.uuid4() for _ in range(number))
        return self.store.allocate_and_hold(size_bytes, ids, master, slave)

    async def on_hold(self, res: Reservation) -> None:
        """Store the keys for the local slave; concurrent holds share one commit.

        The first caller of a tick collects the holds that arrive while it yields
        once, commits them together and wakes the others; if the batch fails,
        each reservation is retried on its own so one bad range fails alone.
        """
        await wait_for_stream(self.store, res.stop)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((res, fut))
        if len(self._pending) == 1:
            try:
                await asyncio.sleep(0)
            finally:  # flush even if this handler is cancelled: the others wait on it
                self._flush()
        await fut

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        try:
            self.store.hold_for_slave(*(r for r, _ in batch))
            for _, f in batch:
                f.set_result(None)
        except StoreError:
            for r, f in batch:
                try:
                    self.store.hold_for_slave(r)
                    f.set_result(None)
                except StoreError as exc:
                    f.set_exception(exc)
