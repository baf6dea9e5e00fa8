"""The ETSI GS QKD 014 key delivery API, for SAE certificates only.

``GET /api/v1/keys/{slave}/status``, ``GET|POST /api/v1/keys/{slave}/enc_keys``
(the caller is the master), ``GET|POST /api/v1/keys/{master}/dec_keys`` (the
caller is the slave) and ``GET /api/v1/openapi.json``. A caller pairs only
with an SAE of the other site (:meth:`EtsiRoutes.pair_ok`); keys for a master
come from the pair's allocation (:class:`qkdmeet.kme.peer.Coordinator`), keys
for a slave are the ones held for it (:meth:`qkdmeet.kme.store.KeyStore.deliver_to_slave`).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from aiohttp import web

from qkdmeet.kme import openapi, validation
from qkdmeet.kme.http import CALLER, DELIVERED, BadRequest, Routes, error, raw_body
from qkdmeet.kme.peer import PeerError
from qkdmeet.kme.store import StoreError
from qkdmeet.kme.types import Key

NOT_FOUND = "one or more keys specified are not found on KME"


def container(keys: list[Key]) -> dict[str, Any]:
    """The ETSI 014 key container of ``keys``."""
    return {
        "keys": [{"key_ID": str(k.key_id), "key": base64.b64encode(k.key).decode()} for k in keys]
    }


class EtsiRoutes(Routes):
    """Status, enc_keys, dec_keys and the OpenAPI document of one KME."""

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v1/keys/{sae}/status", self.status)
        router.add_route("*", "/api/v1/keys/{sae}/enc_keys", self.enc_keys)
        router.add_route("*", "/api/v1/keys/{sae}/dec_keys", self.dec_keys)
        router.add_get("/api/v1/openapi.json", self.openapi)

    def pair_ok(self, caller: str, other: str) -> bool:
        """True if ``caller`` (local) may pair with ``other`` (remote); 400 if unknown."""
        c = self.kme.config
        if other not in c.remote_saes and other not in c.local_saes:
            raise BadRequest("unknown SAE ID", [{"SAE_ID": other[:64]}])
        if caller in c.local_saes and other in c.remote_saes:
            return True
        self.kme.metrics["unauthorized"] += 1
        return False

    async def status(self, request: web.Request) -> web.Response:
        caller, slave = request[CALLER], request.match_info["sae"]
        if not self.pair_ok(caller, slave):
            return web.Response(status=401)
        c = self.kme.config
        stock = self.kme.store.stock_bytes()
        return web.json_response(
            {
                "source_KME_ID": c.kme_id,
                "target_KME_ID": c.peer_kme_id,
                "master_SAE_ID": caller,
                "slave_SAE_ID": slave,
                "key_size": c.key_size,
                "stored_key_count": min(c.max_key_count, stock * 8 // c.key_size),
                "max_key_count": c.max_key_count,
                "max_key_per_request": c.max_key_per_request,
                "max_key_size": c.max_key_size,
                "min_key_size": c.min_key_size,
                "max_SAE_ID_count": 0,
            }
        )

    def _refusal(self, request: web.Request, other: str) -> web.Response | None:
        """405 for a method other than GET and POST, 401 for a pair the caller may
        not form; None for a request to serve."""
        if request.method not in ("GET", "POST"):
            return error(405, f"method {request.method} not allowed")
        if not self.pair_ok(request[CALLER], other):
            return web.Response(status=401)
        return None

    async def enc_keys(self, request: web.Request) -> web.Response:
        caller, slave = request[CALLER], request.match_info["sae"]
        if (refused := self._refusal(request, slave)) is not None:
            return refused
        c = self.kme.config
        asked: tuple[object, object]
        try:
            if request.method == "POST":
                body = validation.key_request(await raw_body(request))
                if body.extension_mandatory:
                    raise BadRequest("not all extension_mandatory parameters are supported")
                if body.additional_slave_SAE_IDs:
                    raise BadRequest(
                        "additional_slave_SAE_IDs is not supported (max_SAE_ID_count 0)"
                    )
                asked = (body.number, body.size)
            else:
                q = validation.enc_keys_query(request.query)
                asked = (q.number, q.size)
        except validation.Invalid as exc:
            raise BadRequest.of(exc) from None
        number = asked[0] if isinstance(asked[0], int) else 1
        size = asked[1] if isinstance(asked[1], int) else c.key_size
        if size % 8:
            raise BadRequest("size shall be a multiple of 8")
        if not c.min_key_size <= size <= c.max_key_size:
            raise BadRequest(
                f"size shall be between {c.min_key_size} and {c.max_key_size}",
                [{"size": str(size)}],
            )
        if not 1 <= number <= c.max_key_per_request:
            raise BadRequest(
                f"number shall be between 1 and {c.max_key_per_request}", [{"number": str(number)}]
            )
        coordinator = self.kme.coordinator
        assert coordinator is not None
        try:
            keys = await coordinator.keys_for_master(caller, slave, number, size // 8)
        except (StoreError, PeerError) as exc:
            self.kme.metrics["unavailable"] += 1
            return error(503, str(exc))
        self.kme.metrics["enc_keys"] += len(keys)
        request[DELIVERED] = keys
        self.kme.metrics["enc_bits"] += size * len(keys)
        self.kme.per_sae[caller] += size * len(keys)
        return web.json_response(container(keys))

    async def dec_keys(self, request: web.Request) -> web.Response:
        caller, master = request[CALLER], request.match_info["sae"]
        if (refused := self._refusal(request, master)) is not None:
            return refused
        c = self.kme.config
        key_ids: list[uuid.UUID]
        try:
            if request.method == "POST":
                key_ids = validation.key_ids(await raw_body(request))
            else:
                if len(request.query.getall("key_ID", [])) != 1:
                    raise BadRequest("GET dec_keys takes exactly one key_ID")
                key_ids = validation.dec_keys_query(request.query).key_ids
        except validation.Invalid as exc:
            raise BadRequest.of(exc) from None
        if len(key_ids) > c.max_key_per_request:
            raise BadRequest(f"at most {c.max_key_per_request} key_IDs per request")
        try:
            keys = self.kme.store.deliver_to_slave(master, caller, key_ids)
        except KeyError as exc:
            return error(400, NOT_FOUND, [{"key_ID": str(exc.args[0])}])
        self.kme.metrics["dec_keys"] += len(keys)
        request[DELIVERED] = keys
        self.kme.per_sae[caller] += sum(k.size_bits for k in keys)
        return web.json_response(container(keys))

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi.document())
