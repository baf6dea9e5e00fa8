"""One site's KME over mutual TLS (aiohttp): the store, the coordinator and the
application that composes the route modules, one job each.

- :mod:`qkdmeet.kme.access`: the gate in front of every route (certificate,
  role of the path, error answers, audit log);
- :mod:`qkdmeet.kme.etsi_routes`: ETSI GS QKD 014 (``/api/v1/keys/{sae}/status``,
  ``enc_keys``, ``dec_keys``, ``/api/v1/openapi.json``), for SAEs;
- :mod:`qkdmeet.kme.metrics_routes`: ``/api/v1/metrics`` (JSON) and
  ``/metrics`` (Prometheus text), for either role;
- :mod:`qkdmeet.kme.peer_routes`: ``/peer/v1/reserve|hold``, for the peer KME;
- :mod:`qkdmeet.kme.admin_routes`: ``/admin/qkd``, for this KME's own
  certificate, when a ``[qkd]`` link end feeds the KME.

:class:`KmeServer` owns the state they share (config, store, counters, audit
log, coordinator, the link end) and the lifecycle: :meth:`KmeServer.start`
opens the peer session and the TLS site and starts the maintenance task
(WAL scrub, expiry); :meth:`KmeServer.stop` stops them in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web

from qkdmeet.kme import tls
from qkdmeet.kme.access import AccessGate
from qkdmeet.kme.admin_routes import AdminRoutes
from qkdmeet.kme.audit import AuditLog
from qkdmeet.kme.config import KmeConfig
from qkdmeet.kme.etsi_routes import EtsiRoutes
from qkdmeet.kme.metrics_routes import MetricsRoutes, snapshot
from qkdmeet.kme.peer import Coordinator
from qkdmeet.kme.peer_routes import PeerRoutes
from qkdmeet.kme.store import SCRUB_INTERVAL_SECONDS, KeyStore

log = logging.getLogger(__name__)


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
        #: The running QKD link end (qkdmeet.qkd.nodes.TransmitterNode/ReceiverNode), if any.
        self.qkd: Any = None
        #: the access gate (certificate roles, the in-flight cap, the audit lines)
        self.gate = AccessGate(self.metrics, self.audit)
        self.app = web.Application(middlewares=[self.gate.authenticate],
                                   client_max_size=1 << 20)
        for routes in (EtsiRoutes(self), MetricsRoutes(self), PeerRoutes(self), AdminRoutes(self)):
            routes.add_to(self.app.router)

    def snapshot(self) -> dict[str, Any]:
        """The figures ``GET /api/v1/metrics`` answers
        (:func:`qkdmeet.kme.metrics_routes.snapshot`)."""
        return snapshot(self)

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
