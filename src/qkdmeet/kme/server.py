"""ETSI GS QKD 014 server (aiohttp) over mutual TLS, plus the peer endpoints.

Routes: ``GET /api/v1/keys/{slave}/status``, ``GET|POST /api/v1/keys/{slave}/enc_keys``,
``GET|POST /api/v1/keys/{master}/dec_keys``, ``GET /api/v1/openapi.json``,
``GET /metrics`` (Prometheus text), ``GET /api/v1/metrics`` (JSON), and
``POST /peer/v1/reserve|hold`` (only for the peer KME's certificate), and
``GET|POST /admin/qkd`` (only for this KME's own certificate) when a ``[qkd]``
link feeds the KME:

- ``GET /admin/qkd``: the link end's live stats as JSON (role, blocks,
  aborted_blocks, secure_bits, secure_key_rate_bps, sifted_rate_bps, qber,
  phase_error_bound, ec_efficiency, auth_key_spent_bits, eve, cut, ...; see
  :func:`qkdmeet.qkd.link.end_stats`);
- ``POST /admin/qkd`` with ``{"eve": "intercept-resend:F" | "pns" | null,
  "cut": true | false}`` (either key optional): start/stop the eavesdropper,
  cut/restore the fibre. Only the transmitter's site holds the fibre model;
  the receiver answers 409. Answers the stats after the change.
"""

from __future__ import annotations

import base64
import json
import ssl
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from qkdmeet.kme import openapi, tls
from qkdmeet.kme.config import KmeConfig
from qkdmeet.kme.peer import Coordinator, PeerError, reservation_from_json, reservation_to_json
from qkdmeet.kme.store import KeyStore, StoreError
from qkdmeet.kme.types import Key

NOT_FOUND = "one or more keys specified are not found on KME"
CALLER = web.RequestKey("caller", str)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(Exception):
    def __init__(self, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def error(status: int, message: str, details: list[dict[str, str]] | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message}
    if details:
        body["details"] = details
    return web.json_response(body, status=status)


def container(keys: list[Key]) -> dict[str, Any]:
    return {
        "keys": [{"key_ID": str(k.key_id), "key": base64.b64encode(k.key).decode()} for k in keys]
    }


class KmeServer:
    """One site's KME: store, coordinator and the aiohttp application."""

    def __init__(self, config: KmeConfig, store: KeyStore) -> None:
        self.config = config
        self.store = store
        self.metrics: Counter[str] = Counter()
        self.per_sae: Counter[str] = Counter()  # key bits delivered to each SAE
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.coordinator: Coordinator | None = None
        self.app = web.Application(middlewares=[self._auth], client_max_size=1 << 20)
        r = self.app.router
        r.add_get("/api/v1/keys/{sae}/status", self.status)
        r.add_route("*", "/api/v1/keys/{sae}/enc_keys", self.enc_keys)
        r.add_route("*", "/api/v1/keys/{sae}/dec_keys", self.dec_keys)
        r.add_get("/api/v1/openapi.json", self.openapi)
        r.add_get("/api/v1/metrics", self.json_metrics)
        r.add_get("/metrics", self.prometheus)
        r.add_post("/peer/v1/reserve", self.peer_reserve)
        r.add_post("/peer/v1/hold", self.peer_hold)
        r.add_route("*", "/admin/qkd", self.admin_qkd)
        #: The running QKD link end (qkdmeet.qkd.link.TransmitterNode/ReceiverNode), if any.
        self.qkd: Any = None

    # -- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        c = self.config
        ctx = tls.client_context(c.cert, c.key, c.ca)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx), timeout=aiohttp.ClientTimeout(total=10)
        )
        self.coordinator = Coordinator(self.store, self._session, c.peer_url, authority=c.authority)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, c.host, c.port, ssl_context=tls.server_context(c.cert, c.key, c.ca)
        )
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- authentication ----------------------------------------------------
    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        ssl_obj: ssl.SSLObject | None = (
            transport.get_extra_info("ssl_object") if transport is not None else None
        )
        caller = tls.identity(ssl_obj.getpeercert() if ssl_obj else None)
        if caller is None:
            self.metrics["unauthorized"] += 1
            return web.Response(status=401)
        request[CALLER] = caller
        try:
            return await handler(request)
        except BadRequest as exc:
            self.metrics["bad_request"] += 1
            return error(400, exc.message, exc.details)

    def _pair_ok(self, caller: str, other: str) -> bool:
        """True if ``caller`` (local) may pair with ``other`` (remote); 400 if unknown."""
        c = self.config
        if other not in c.remote_saes and other not in c.local_saes:
            raise BadRequest("unknown SAE ID", [{"SAE_ID": other[:64]}])
        if caller in c.local_saes and other in c.remote_saes:
            return True
        self.metrics["unauthorized"] += 1
        return False

    # -- ETSI 014 ---------------------------------------------------------
    async def status(self, request: web.Request) -> web.Response:
        caller, slave = request[CALLER], request.match_info["sae"]
        if not self._pair_ok(caller, slave):
            return web.Response(status=401)
        c = self.config
        stock = self.store.stock_bytes()
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

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest("request body is not valid JSON", [{"json": str(exc)}]) from exc
        if not isinstance(data, dict):
            raise BadRequest("request body must be a JSON object")
        return data

    def _int(self, value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.strip().isdigit():
                return int(value)
            raise BadRequest(f"{name} shall be an integer", [{name: str(value)[:64]}])
        return value

    async def enc_keys(self, request: web.Request) -> web.Response:
        caller, slave = request[CALLER], request.match_info["sae"]
        if request.method not in ("GET", "POST"):
            return error(405, f"method {request.method} not allowed")
        if not self._pair_ok(caller, slave):
            return web.Response(status=401)
        c = self.config
        if request.method == "POST":
            body = await self._body(request)
            if body.get("extension_mandatory"):
                raise BadRequest("not all extension_mandatory parameters are supported")
            if body.get("additional_slave_SAE_IDs"):
                raise BadRequest("additional_slave_SAE_IDs is not supported (max_SAE_ID_count 0)")
            number = self._int(body.get("number", 1), "number")
            size = self._int(body.get("size", c.key_size), "size")
        else:
            number = self._int(request.query.get("number", "1"), "number")
            size = self._int(request.query.get("size", str(c.key_size)), "size")
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
        assert self.coordinator is not None
        try:
            keys = await self.coordinator.keys_for_master(caller, slave, number, size // 8)
        except StoreError as exc:
            self.metrics["unavailable"] += 1
            return error(503, str(exc))
        except PeerError as exc:
            self.metrics["unavailable"] += 1
            return error(503, str(exc))
        self.metrics["enc_keys"] += len(keys)
        self.metrics["enc_bits"] += size * len(keys)
        self.per_sae[caller] += size * len(keys)
        return web.json_response(container(keys))

    async def dec_keys(self, request: web.Request) -> web.Response:
        caller, master = request[CALLER], request.match_info["sae"]
        if request.method not in ("GET", "POST"):
            return error(405, f"method {request.method} not allowed")
        if not self._pair_ok(caller, master):
            return web.Response(status=401)
        raw: list[Any]
        if request.method == "POST":
            body = await self._body(request)
            ids = body.get("key_IDs")
            if not isinstance(ids, list) or not ids:
                raise BadRequest("key_IDs shall be a non-empty array")
            raw = [i.get("key_ID") if isinstance(i, dict) else None for i in ids]
        else:
            raw = request.query.getall("key_ID", [])
            if len(raw) != 1:
                raise BadRequest("GET dec_keys takes exactly one key_ID")
        if len(raw) > self.config.max_key_per_request:
            raise BadRequest(f"at most {self.config.max_key_per_request} key_IDs per request")
        key_ids: list[uuid.UUID] = []
        for r in raw:
            try:
                key_ids.append(uuid.UUID(str(r)))
            except ValueError:
                raise BadRequest("key_ID is not a UUID", [{"key_ID": str(r)[:64]}]) from None
        try:
            keys = self.store.deliver_to_slave(master, caller, key_ids)
        except KeyError as exc:
            return error(400, NOT_FOUND, [{"key_ID": str(exc.args[0])}])
        self.metrics["dec_keys"] += len(keys)
        self.per_sae[caller] += sum(k.size_bits for k in keys)
        return web.json_response(container(keys))

    # -- documents and metrics -------------------------------------------------
    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi.document())

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.metrics)
        out["stored_key_bits"] = self.store.stock_bytes() * 8
        out["link_received_bits"] = self.store.stream_end * 8
        out["held_for_slaves"] = {
            f"{m}->{s}": self.store.held_count(m, s)
            for s in self.config.local_saes
            for m in self.config.remote_saes
        }
        out["delivered_bits_per_sae"] = dict(self.per_sae)
        return out

    async def json_metrics(self, request: web.Request) -> web.Response:
        return web.json_response(self.snapshot())

    async def prometheus(self, request: web.Request) -> web.Response:
        snap = self.snapshot()
        lines = [
            "# TYPE qkdmeet_kme_stored_key_bits gauge",
            f"qkdmeet_kme_stored_key_bits {snap['stored_key_bits']}",
            "# TYPE qkdmeet_kme_link_received_bits counter",
            f"qkdmeet_kme_link_received_bits {snap['link_received_bits']}",
            "# TYPE qkdmeet_kme_delivered_bits counter",
        ]
        lines += [
            f'qkdmeet_kme_delivered_bits{{sae="{sae}"}} {bits}'
            for sae, bits in sorted(self.per_sae.items())
        ]
        lines += [f"qkdmeet_kme_{k}_total {v}" for k, v in sorted(self.metrics.items())]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")

    # -- QKD link administration -------------------------------------------------
    async def admin_qkd(self, request: web.Request) -> web.Response:
        if request[CALLER] != self.config.kme_id:
            self.metrics["unauthorized"] += 1
            return web.Response(status=401)
        if self.qkd is None:
            return error(404, "no QKD link feeds this KME")
        if request.method == "POST":
            body = await self._body(request)
            if not hasattr(self.qkd, "set_eve"):
                return error(409, "the eavesdropper and the fibre are set at the transmitter's KME")
            try:
                if "eve" in body:
                    eve = body["eve"]
                    if eve is not None and not isinstance(eve, str):
                        raise ValueError("eve must be a string or null")
                    self.qkd.set_eve(eve)
                if "cut" in body:
                    if not isinstance(body["cut"], bool):
                        raise ValueError("cut must be true or false")
                    self.qkd.set_cut(body["cut"])
            except ValueError as exc:
                raise BadRequest(str(exc)) from exc
        elif request.method != "GET":
            return web.Response(status=405)
        return web.json_response(self.qkd.stats(), dumps=lambda o: json.dumps(o, default=str))

    # -- peer ---------------------------------------------------------------
    async def peer_reserve(self, request: web.Request) -> web.Response:
        if request[CALLER] != self.config.peer_kme_id:
            return web.Response(status=401)
        body = await self._body(request)
        assert self.coordinator is not None
        try:
            res = await self.coordinator.on_reserve(
                str(body["master"]), str(body["slave"]), int(body["number"]), int(body["size"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"bad reserve: {exc}") from exc
        except (StoreError, PeerError) as exc:
            return error(503, str(exc))
        return web.json_response(reservation_to_json(res))

    async def peer_hold(self, request: web.Request) -> web.Response:
        if request[CALLER] != self.config.peer_kme_id:
            return web.Response(status=401)
        assert self.coordinator is not None
        try:
            res = reservation_from_json(await self._body(request))
            await self.coordinator.on_hold(res)
        except PeerError as exc:
            raise BadRequest(str(exc)) from exc
        except StoreError as exc:
            return error(503, str(exc))
        return web.json_response({"held": len(res.key_ids)})
