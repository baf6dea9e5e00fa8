"""The KME's access gate: an aiohttp middleware in front of every route.

In order, for each request:

0. at most :data:`MAX_IN_FLIGHT` requests are served at once (all callers
   together); one more is answered 503 ``busy`` with ``Retry-After`` at once,
   before any work, so a flood holds a bounded amount of memory;
1. the TLS peer certificate must be of the site CA and carry a SAN URI
   (:func:`qkdmeet.kme.tls.identity`); otherwise 401;
2. its role must be the one of the path (:data:`ROLE_OF_PATH`): SAEs call the
   ETSI 014 key endpoints, KMEs the peer and admin endpoints; otherwise 401,
   whatever name the certificate carries (one CA signs both kinds);
3. the handler runs with :data:`~qkdmeet.kme.http.CALLER` and
   :data:`~qkdmeet.kme.http.ROLE` set; a :class:`~qkdmeet.kme.http.BadRequest`
   it raises becomes the ETSI error answer;
4. one audit line per key request (ETSI or peer) and per refusal
   (:mod:`qkdmeet.kme.audit`); never key material.

Which caller may pair with which SAE, and which KME is the peer, the route
modules decide (:mod:`qkdmeet.kme.etsi_routes`, :mod:`qkdmeet.kme.peer_routes`,
:mod:`qkdmeet.kme.admin_routes`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import weakref
from collections import Counter

from aiohttp import web

from qkdmeet.kme import tls
from qkdmeet.kme.audit import AuditLog
from qkdmeet.kme.http import CALLER, DELIVERED, ROLE, BadRequest, Handler, error
from qkdmeet.kme.types import Key

log = logging.getLogger(__name__)
#: Which role may call which part of the API: SAEs the ETSI 014 key endpoints,
#: KMEs the peer and admin endpoints. Other paths (metrics, openapi) take either.
ROLE_OF_PATH: tuple[tuple[str, str], ...] = (
    ("/api/v1/keys/", "sae"),
    ("/peer/", "kme"),
    ("/admin/", "kme"),
)
#: Requests served at once, all callers together; beyond it, 503 ``busy``.
MAX_IN_FLIGHT = 256
#: The stable reason of a request refused because :data:`MAX_IN_FLIGHT` are served.
BUSY = "busy: too many requests in flight, retry later"


class AccessGate:
    """Authenticates by certificate role, answers refusals, writes the audit log.

    ``metrics`` is the server's counter set (``unauthorized``,
    ``wrong_role_sae|kme``, ``bad_request``, ``busy``, ``audit_errors``).
    """

    def __init__(self, metrics: Counter[str], audit: AuditLog | None) -> None:
        self.metrics = metrics
        self.audit = audit
        self.in_flight = 0  # requests inside :meth:`authenticate` now
        #: each open connection's caller (see :meth:`_identity`)
        self._peers: weakref.WeakKeyDictionary[ssl.SSLObject, tls.Peer | None] = (
            weakref.WeakKeyDictionary())

    @web.middleware
    async def authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.in_flight >= MAX_IN_FLIGHT:
            self.metrics["busy"] += 1
            refused = error(503, BUSY)
            refused.headers["Retry-After"] = "1"
            return refused
        self.in_flight += 1
        try:
            return await self._authenticate(request, handler)
        finally:
            self.in_flight -= 1

    async def _authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        transport = request.transport
        ssl_obj: ssl.SSLObject | None = (
            transport.get_extra_info("ssl_object") if transport is not None else None
        )
        peer = self._identity(ssl_obj)
        if peer is None:
            self.metrics["unauthorized"] += 1
            refused = web.Response(status=401)
            self.record(request, refused)
            return refused
        for prefix, role in ROLE_OF_PATH:
            if request.path.startswith(prefix) and peer.role != role:
                self.metrics["unauthorized"] += 1
                self.metrics[f"wrong_role_{peer.role}"] += 1
                request[CALLER] = peer.name
                request[ROLE] = peer.role
                refused = web.json_response(
                    {"message": f"a certificate of role {peer.role} may not call {prefix}"},
                    status=401,
                )
                self.record(request, refused)
                return refused
        request[CALLER] = peer.name
        request[ROLE] = peer.role
        try:
            response = await handler(request)
        except BadRequest as exc:
            self.metrics["bad_request"] += 1
            response = error(exc.status, exc.message, exc.details)
        self.record(request, response)
        return response

    def _identity(self, ssl_obj: ssl.SSLObject | None) -> tls.Peer | None:
        """The caller of a TLS connection, read from its certificate once per connection
        (the certificate cannot change on a connection; this KME never renegotiates)."""
        if ssl_obj is None:
            return None
        try:
            return self._peers[ssl_obj]
        except KeyError:
            peer = self._peers[ssl_obj] = tls.identity(ssl_obj.getpeercert())
            return peer

    def record(self, request: web.Request, response: web.StreamResponse) -> None:
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
