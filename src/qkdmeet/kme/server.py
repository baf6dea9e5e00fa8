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

import asyncio
import base64
import contextlib
import json
import logging
import ssl
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from qkdmeet.kme import openapi, promtext, tls, validation
from qkdmeet.kme.audit import AuditLog
from qkdmeet.kme.config import KmeConfig
from qkdmeet.kme.peer import Coordinator, PeerError, reservation_from_json, reservation_to_json
from qkdmeet.kme.store import SCRUB_INTERVAL_SECONDS, KeyStore, StoreError
from qkdmeet.kme.types import Key

log = logging.getLogger(__name__)
#: HELP text of the counters in :attr:`KmeServer.metrics`.
METRIC_HELP = {
    "enc_keys": "Keys delivered to masters (enc_keys) since this KME started.",
    "enc_bits": "Key bits delivered to masters (enc_keys) since this KME started.",
    "dec_keys": "Keys delivered to slaves (dec_keys) since this KME started.",
    "unauthorized": "Requests refused with 401 (no, unknown or wrong-role certificate).",
    "bad_request": "Requests refused with 400 (malformed or out of limits).",
    "unavailable": "Requests answered 503 (no key in stock, peer KME unreachable).",
    "wrong_role_sae": "SAE certificates refused on the peer or admin API.",
    "wrong_role_kme": "KME certificates refused on the SAE API.",
}
NOT_FOUND = "one or more keys specified are not found on KME"
#: Keys a handler delivered (for the audit log, written by the middleware).
DELIVERED = web.RequestKey("delivered", list)
CALLER = web.RequestKey("caller", str)
#: The caller's role from its certificate ("sae" or "kme"); see :mod:`qkdmeet.kme.tls`.
ROLE = web.RequestKey("role", str)
#: Which role may call which part of the API: SAEs the ETSI 014 key endpoints,
#: KMEs the peer and admin endpoints. Other paths (metrics, openapi) take either.
ROLE_OF_PATH: tuple[tuple[str, str], ...] = (
    ("/api/v1/keys/", "sae"),
    ("/peer/", "kme"),
    ("/admin/", "kme"),
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequest(Exception):
    def __init__(
        self, message: str, details: list[dict[str, str]] | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.status = status  # 400, or 413/415 from the validation layer

    @classmethod
    def of(cls, exc: validation.Invalid) -> BadRequest:
        """The answer to a request the validation layer refused (stable text and code)."""
        return cls(exc.message, exc.details(), exc.status)


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
        #: every delivery and refusal, one JSON line (see :mod:`qkdmeet.kme.audit`)
        self.audit = AuditLog(config.audit_log) if config.audit_log is not None else None
        self.expired_keys = 0
        self.expired_bytes = 0
        self._maintenance: asyncio.Task[None] | None = None
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
        self._maintenance = asyncio.create_task(self._maintain(), name="kme-maintenance")

    async def _maintain(self) -> None:
        """Scrub the WAL soon after deliveries; expire unclaimed keys and ranges."""
        last_expiry = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SCRUB_INTERVAL_SECONDS)
            try:
                self.store.scrub()
                if loop.time() - last_expiry >= min(10.0, self.config.key_expiry_seconds / 4):
                    last_expiry = loop.time()
                    keys, nbytes = self.store.expire(self.config.key_expiry_seconds)
                    self.expired_keys += keys
                    self.expired_bytes += nbytes
                    if keys or nbytes:
                        log.warning("expired %d unclaimed keys and %d reserved bytes",
                                    keys, nbytes)
                if self.audit is not None:
                    self.audit.sync()
            except Exception:  # never let housekeeping kill the KME
                log.exception("KME maintenance failed")

    async def stop(self) -> None:
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        self.store.scrub()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.audit is not None:
            self.audit.close()

    # -- authentication ----------------------------------------------------
    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        ssl_obj: ssl.SSLObject | None = (
            transport.get_extra_info("ssl_object") if transport is not None else None
        )
        peer = tls.identity(ssl_obj.getpeercert() if ssl_obj else None)
        if peer is None:
            self.metrics["unauthorized"] += 1
            refused = web.Response(status=401)
            self._audit(request, refused)
            return refused
        for prefix, role in ROLE_OF_PATH:
            if request.path.startswith(prefix) and peer.role != role:
                # an SAE certificate on the peer API (or a KME's on the SAE API),
                # whatever the name it carries: one CA signs both kinds
                self.metrics["unauthorized"] += 1
                self.metrics[f"wrong_role_{peer.role}"] += 1
                request[CALLER] = peer.name
                request[ROLE] = peer.role
                refused = web.json_response(
                    {"message": f"a certificate of role {peer.role} may not call {prefix}"},
                    status=401,
                )
                self._audit(request, refused)
                return refused
        request[CALLER] = peer.name
        request[ROLE] = peer.role
        try:
            response = await handler(request)
        except BadRequest as exc:
            self.metrics["bad_request"] += 1
            response = error(exc.status, exc.message, exc.details)
        self._audit(request, response)
        return response

    def _audit(self, request: web.Request, response: web.StreamResponse) -> None:
        """One audit line per key request (ETSI or peer) and per refusal."""
        if self.audit is None or request.path.startswith("/api/v1/metrics"):
            return
        op = request.path.rstrip("/").rsplit("/", 1)[-1]
        if not request.path.startswith(("/api/v1/keys/", "/peer/")) and response.status < 400:
            return
        keys: list[Key] = request.get(DELIVERED, [])
        reason = ""
        if response.status >= 400:
            reason = "unauthorized" if response.status == 401 else f"HTTP {response.status}"
            body = getattr(response, "body", None)
            if isinstance(body, bytes) and body:
                with contextlib.suppress(ValueError, AttributeError):
                    reason = str(json.loads(body).get("message", reason))
        try:
            self.audit.record(
                op=op,
                caller=request.get(CALLER, ""),
                role=request.get(ROLE, ""),
                other=request.match_info.get("sae"),
                status=response.status,
                reason=reason,
                key_ids=[str(k.key_id) for k in keys],
                sizes_bits=[k.size_bits for k in keys],
            )
        except OSError:
            log.exception("audit log write failed")
            self.metrics["audit_errors"] += 1

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

    async def _raw_body(self, request: web.Request) -> bytes:
        """The body's bytes within the validation layer's size and media-type limits."""
        try:
            validation.check_content_type(request.headers.get("Content-Type"))
            if (request.content_length or 0) > validation.MAX_BODY_BYTES:
                raise validation.Invalid("too_large", status=413)
        except validation.Invalid as exc:
            raise BadRequest.of(exc) from None
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BadRequest.of(validation.Invalid("too_large", status=413)) from None

    async def _body(self, request: web.Request) -> dict[str, Any]:
        """Any JSON object body (peer and admin endpoints), depth and size bounded."""
        raw = await self._raw_body(request)
        try:
            return validation.json_object(raw)
        except validation.Invalid as exc:
            raise BadRequest.of(exc) from None

    async def enc_keys(self, request: web.Request) -> web.Response:
        caller, slave = request[CALLER], request.match_info["sae"]
        if request.method not in ("GET", "POST"):
            return error(405, f"method {request.method} not allowed")
        if not self._pair_ok(caller, slave):
            return web.Response(status=401)
        c = self.config
        asked: tuple[object, object]
        try:
            if request.method == "POST":
                body = validation.key_request(await self._raw_body(request))
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
        request[DELIVERED] = keys
        self.metrics["enc_bits"] += size * len(keys)
        self.per_sae[caller] += size * len(keys)
        return web.json_response(container(keys))

    async def dec_keys(self, request: web.Request) -> web.Response:
        caller, master = request[CALLER], request.match_info["sae"]
        if request.method not in ("GET", "POST"):
            return error(405, f"method {request.method} not allowed")
        if not self._pair_ok(caller, master):
            return web.Response(status=401)
        key_ids: list[uuid.UUID]
        try:
            if request.method == "POST":
                key_ids = validation.key_ids(await self._raw_body(request))
            else:
                if len(request.query.getall("key_ID", [])) != 1:
                    raise BadRequest("GET dec_keys takes exactly one key_ID")
                key_ids = validation.dec_keys_query(request.query).key_ids
        except validation.Invalid as exc:
            raise BadRequest.of(exc) from None
        if len(key_ids) > self.config.max_key_per_request:
            raise BadRequest(f"at most {self.config.max_key_per_request} key_IDs per request")
        try:
            keys = self.store.deliver_to_slave(master, caller, key_ids)
        except KeyError as exc:
            return error(400, NOT_FOUND, [{"key_ID": str(exc.args[0])}])
        self.metrics["dec_keys"] += len(keys)
        request[DELIVERED] = keys
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
        """The figures of :meth:`snapshot` as Prometheus text, with HELP and TYPE."""
        snap = self.snapshot()
        e = promtext.Exposition()
        e.family("qkdmeet_kme_stored_key_bits", "gauge",
                 "Key bits received from the link and not yet reserved.", snap["stored_key_bits"])
        e.family("qkdmeet_kme_link_received_bits_total", "counter",
                 "Key bits received from the QKD link (stream position).",
                 snap["link_received_bits"])
        e.family("qkdmeet_kme_delivered_bits_total", "counter",
                 "Key bits delivered to each SAE since this KME started.",
                 [({"sae": sae}, bits) for sae, bits in sorted(self.per_sae.items())])
        e.family("qkdmeet_kme_held_keys", "gauge",
                 "Keys held for a slave SAE, by master and slave.",
                 [({"master": ms.split("->")[0], "slave": ms.split("->")[1]}, n)
                  for ms, n in sorted(snap["held_for_slaves"].items())])
        for k, v in sorted(self.metrics.items()):
            e.family(f"qkdmeet_kme_{k}_total", "counter", METRIC_HELP.get(
                k, f"Requests refused or counted as {k} since this KME started."), v)
        e.family("qkdmeet_kme_expired_keys_total", "counter",
                 "Keys held for a slave that never claimed them, destroyed.", self.expired_keys)
        e.family("qkdmeet_kme_expired_reserved_bytes_total", "counter",
                 "Reserved key bytes never spent, destroyed.", self.expired_bytes)
        e.family("qkdmeet_kme_wal_scrubs_total", "counter",
                 "WAL checkpoints that erased delivered key from the -wal file.",
                 self.store.scrubs)
        if self.audit is not None:
            e.family("qkdmeet_kme_audit_events_total", "counter",
                     "Audit log counters, persisted across restarts.",
                     [({"counter": k}, v) for k, v in sorted(self.audit.counters.items())])
        return web.Response(text=e.text(), headers={"Content-Type": promtext.CONTENT_TYPE})

    # -- QKD link administration -------------------------------------------------
    async def admin_qkd(self, request: web.Request) -> web.Response:
        if request[ROLE] != "kme" or request[CALLER] != self.config.kme_id:
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
    def _is_peer(self, request: web.Request) -> bool:
        """The peer KME's certificate: role ``kme`` *and* the peer's ID."""
        if request[ROLE] == "kme" and request[CALLER] == self.config.peer_kme_id:
            return True
        self.metrics["unauthorized"] += 1
        return False

    async def peer_reserve(self, request: web.Request) -> web.Response:
        if not self._is_peer(request):
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
        if not self._is_peer(request):
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
