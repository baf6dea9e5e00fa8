"""The KME-to-KME API: ``POST /peer/v1/reserve`` and ``POST /peer/v1/hold``.

Only the peer KME's certificate may call it (role ``kme`` *and* the peer's
ID, :meth:`PeerRoutes.is_peer`); the work is the coordinator's
(:class:`qkdmeet.kme.peer.Coordinator`: ``on_reserve`` at the allocation
authority, ``on_hold`` at the other KME).
"""

from __future__ import annotations

from aiohttp import web

from qkdmeet.kme.http import CALLER, ROLE, BadRequest, Routes, error, json_body
from qkdmeet.kme.peer import (
    MAX_RESERVATION_KEYS,
    PeerError,
    reservation_from_json,
    reservation_to_json,
)
from qkdmeet.kme.store import StoreError

#: Stable reasons of a refused reserve (the peer gets these, never exception text).
RESERVE_FIELDS = "bad reserve: master and slave are strings, number and size positive integers"
RESERVE_REFUSED = "bad reserve: these SAE IDs, number or size cannot be reserved"

class PeerRoutes(Routes):
    """Reserve and hold, answered for the peer KME."""

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_post("/peer/v1/reserve", self.reserve)
        router.add_post("/peer/v1/hold", self.hold)

    def is_peer(self, request: web.Request) -> bool:
        """The peer KME's certificate: role ``kme`` *and* the peer's ID."""
        if request[ROLE] == "kme" and request[CALLER] == self.kme.config.peer_kme_id:
            return True
        self.kme.metrics["unauthorized"] += 1
        return False

    async def reserve(self, request: web.Request) -> web.Response:
        if not self.is_peer(request):
            return web.Response(status=401)
        body = await json_body(request)
        coordinator = self.kme.coordinator
        assert coordinator is not None
        master, slave = body.get("master"), body.get("slave")
        number, size = body.get("number"), body.get("size")
        if not (
            isinstance(master, str) and isinstance(slave, str)
            and type(number) is int and type(size) is int
            and 0 < number <= MAX_RESERVATION_KEYS and 0 < size <= 1 << 30
        ):  # fmt: skip
            raise BadRequest(RESERVE_FIELDS)
        try:
            res = await coordinator.on_reserve(master, slave, number, size)
        except (KeyError, TypeError, ValueError):
            raise BadRequest(RESERVE_REFUSED) from None  # never the exception's own text
        except (StoreError, PeerError) as exc:
            return error(503, str(exc))
        return web.json_response(reservation_to_json(res))

    async def hold(self, request: web.Request) -> web.Response:
        if not self.is_peer(request):
            return web.Response(status=401)
        coordinator = self.kme.coordinator
        assert coordinator is not None
        try:
            res = reservation_from_json(await json_body(request))
            await coordinator.on_hold(res)
        except PeerError as exc:
            raise BadRequest(str(exc)) from exc
        except StoreError as exc:
            return error(503, str(exc))
        return web.json_response({"held": len(res.key_ids)})
