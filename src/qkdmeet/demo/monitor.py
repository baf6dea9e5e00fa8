"""Live view of the running system: polls every component, feeds the report.

Every ``interval`` seconds :class:`Monitor` reads, each from inside its
namespace (:mod:`.nsexec`): both gateways' ``/metrics.json`` and
``/budget``, both KMEs' ``/api/v1/metrics`` (mutual TLS, as the site's
SAE), the QKD link's ``/admin/qkd`` when the KME serves it, and the
conference room. The samples go to the :class:`~qkdmeet.report.Recorder`
(cumulative counters: a missed poll loses resolution, never bytes) and
into :attr:`Monitor.latest`, the one dictionary the progress line, the
dashboard and the adaptation controller read.

Direction names follow the field test: ``A->B`` is ToMMo (server) to TUH
(client), gateway A's outbound; ``B->A`` the other way. Drops are the
sender's (``tx:<reason>``) and the receiver's (``rx:<reason>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qkdmeet.demo.nsexec import NamespaceError, NamespaceHttp
from qkdmeet.demo.sites import KME_PORT, SiteFiles
from qkdmeet.report.accounting import Recorder

log = logging.getLogger(__name__)

DIRECTIONS = {"A->B": ("a", "b"), "B->A": ("b", "a")}
GATEWAY_HTTP_PORT = 9180


@dataclass(slots=True)
class Endpoints:
    """Where each component answers, and from which namespace."""

    gateway: dict[str, tuple[str, str]]  # side -> (namespace, base URL)
    kme: dict[str, tuple[str, str]]
    conference: tuple[str, str] | None  # (namespace, base URL)
    room: str
    #: the conference server's admin socket (caps, link indicator, room state): the
    #: operator's control plane, never its participant port
    conference_admin: Path | None = None


@dataclass(slots=True)
class Alarm:
    t: float
    kind: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"t": self.t, "kind": self.kind, "message": self.message}


@dataclass(slots=True)
class QkdView:
    """The link's cumulative output, from its admin route or the KME's counters."""

    generated_bytes: int = 0
    qber: float = math.nan
    rate_bps: float = 0.0
    #: The rate over RATE_STEADY_S: what the adaptation follows unless the
    #: short window shows a collapse (an attack, a cut).
    rate_steady_bps: float = 0.0
    blocks: int = 0
    aborted_blocks: int = 0
    eve: str | None = None
    cut: bool = False
    source: str = "kme"
    attacked_blocks: int = 0
    attacked_blocks_with_key: int = 0


def direction_sample(sender: Mapping[str, Any], receiver: Mapping[str, Any]) -> dict[str, Any]:
    """One direction from the sending gateway's outbound and the receiving one's inbound."""
    out, inb = sender["outbound"], receiver["inbound"]
    drops = {f"tx:{k}": int(v) for k, v in out.get("drops", {}).items()}
    drops.update({f"rx:{k}": int(v) for k, v in inb.get("drops", {}).items()})
    return {
        "key_bytes": int(out["key_bytes"]),
        "payload_bytes": int(out["payload_bytes"]),
        "packets": int(out["packets"]),
        "key_buffered_bytes": int(out["key_buffered_bytes"]),
        "received_packets": int(inb["packets"]),
        "drops": drops,
    }


def qkd_from_admin(data: Mapping[str, Any]) -> QkdView:
    """The QKD link's ``GET /admin/qkd`` answer, tolerant of missing fields."""

    def num(*names: str, default: float = math.nan) -> float:
        for n in names:
            v = data.get(n)
            if isinstance(v, int | float) and not isinstance(v, bool):
                return float(v)
        return default

    gen_bits = num("secure_bits", "generated_bits", "key_bits", default=math.nan)
    gen_bytes = num("generated_bytes", "key_bytes", default=0.0)
    if not math.isnan(gen_bits):
        gen_bytes = gen_bits / 8
    eve = data.get("eve")
    return QkdView(
        generated_bytes=int(gen_bytes),
        qber=num("last_block_qber", "qber", "qber_z", "last_qber"),
        rate_bps=num("secure_key_rate_bps", "key_rate_bps", "rate_bps", default=0.0),
        blocks=int(num("blocks", "blocks_ok", default=0)),
        aborted_blocks=int(num("aborted_blocks", "aborts", default=0)),
        eve=eve if isinstance(eve, str) else None,
        cut=bool(data.get("cut", False)),
        source="admin",
        attacked_blocks=int(num("attacked_blocks", default=0)),
        attacked_blocks_with_key=int(num("attacked_blocks_with_key", default=0)),
    )


#: Seconds over which the monitor measures the QKD link's key rate.
RATE_WINDOW_S = 10.0
#: The longer window: the link delivers key block by block (a block every 2-3 s
#: at 7 km and 80 km), so 10 s hold 3 or 4 blocks and swing by +-25 %.
RATE_STEADY_S = 30.0


@dataclass(slots=True)
class Monitor:
    endpoints: Endpoints
    recorder: Recorder
    files: SiteFiles
    model_qber: float = math.nan
    interval: float = 2.0
    latest: dict[str, Any] = field(default_factory=dict)
    alarms: list[Alarm] = field(default_factory=list)
    on_sample: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    _http: dict[str, NamespaceHttp] = field(default_factory=dict)
    _t0: float = field(default_factory=time.time)
    _rate_samples: list[tuple[float, int]] = field(default_factory=list)
    _generated_base: int | None = None
    _task: asyncio.Task[None] | None = None
    _active_alarms: set[str] = field(default_factory=set)

    # --- plumbing ----------------------------------------------------------------
    def _client(self, ns: str, side: str | None = None) -> NamespaceHttp:
        key = f"{ns}/{side or ''}"
        if key not in self._http:
            ctx: ssl.SSLContext | None = None
            if side is not None:  # a KME: mutual TLS as the site's SAE, or as the KME
                ctx = ssl.create_default_context(cafile=str(self.files.ca))
                if side.startswith("kme-"):  # /admin/qkd answers only the KME's own identity
                    d = self.files.directory
                    ctx.load_cert_chain(str(d / f"{side}.pem"), str(d / f"{side}.key"))
                else:
                    ctx.load_cert_chain(str(self.files.sae_cert[side]),
                                        str(self.files.sae_key[side]))
            elif self.endpoints.conference and ns == self.endpoints.conference[0]:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE  # the conference's self-signed certificate
            self._http[key] = NamespaceHttp(ns, ssl_context=ctx)
        return self._http[key]

    async def _get(self, ns: str, url: str, side: str | None = None) -> Any:
        try:
            return await self._client(ns, side).get(url)
        except (NamespaceError, RuntimeError) as exc:
            log.debug("poll %s: %s", url, exc)
            return None

    async def post(self, ns: str, url: str, body: Any, side: str | None = None) -> Any:
        """POST JSON from inside ``ns`` (KME admin routes: ``side`` for mutual TLS)."""
        return await self._client(ns, side).post(url, body)

    def conference_post(self, path: str, body: Any) -> Any:
        """A coroutine POSTing to the conference server's admin interface (its Unix
        socket: a file, reachable from the host whatever the server's namespace),
        or None without one."""
        if self.endpoints.conference_admin is None:
            return None
        from qkdmeet.conference.admin import AdminClient

        return AdminClient(self.endpoints.conference_admin, timeout=5.0).post(path, body)

    async def _conference_room(self) -> Any:
        if self.endpoints.conference_admin is None:
            return None
        from qkdmeet.conference.admin import AdminClient, AdminError

        try:
            return await AdminClient(self.endpoints.conference_admin, timeout=5.0).get(
                f"/api/rooms/{self.endpoints.room}"
            )
        except (AdminError, ValueError) as exc:
            log.debug("poll conference room: %s", exc)
            return None

    def kme_admin_url(self, side: str) -> tuple[str, str]:
        ns, base = self.endpoints.kme[side]
        return ns, base + "/admin/qkd"

    async def qkd_admin(self, body: Any | None = None, side: str = "a") -> Any:
        """GET (``body`` None) or POST the QKD link's admin route at a site's KME,
        as that KME (the route answers no SAE); GET answers None when unreachable."""
        ns, url = self.kme_admin_url(side)
        if body is None:
            return await self._get(ns, url, f"kme-{side}")
        return await self.post(ns, url, body, f"kme-{side}")

    # --- sampling ------------------------------------------------------------------
    def alarm(self, kind: str, message: str, *, active: bool = True) -> None:
        """Raise ``kind`` once while its condition holds; clearing re-arms it."""
        if not active:
            self._active_alarms.discard(kind)
            return
        if kind in self._active_alarms:
            return
        self._active_alarms.add(kind)
        a = Alarm(time.time() - self._t0, kind, message)
        self.alarms.append(a)
        log.warning("ALARM %s: %s", kind, message)

    @property
    def active_alarms(self) -> list[str]:
        return sorted(self._active_alarms)

    async def sample(self) -> dict[str, Any]:
        """Poll everything once; record and publish the result."""
        now = time.time()
        e = self.endpoints
        gw_jobs = {s: self._get(ns, url + "/metrics.json") for s, (ns, url) in e.gateway.items()}
        budget_jobs = {s: self._get(ns, url + "/budget") for s, (ns, url) in e.gateway.items()}
        kme_jobs = {s: self._get(ns, url + "/api/v1/metrics", s) for s, (ns, url) in e.kme.items()}
        admin_ns, admin_url = self.kme_admin_url("a")
        jobs: list[Any] = [*gw_jobs.values(), *budget_jobs.values(), *kme_jobs.values(),
                           self._get(admin_ns, admin_url, "kme-a")]
        if e.conference is not None:
            jobs.append(self._conference_room())
        results = await asyncio.gather(*jobs)
        n = len(e.gateway)
        gws = dict(zip(gw_jobs, results[:n], strict=True))
        budgets = dict(zip(budget_jobs, results[n:2 * n], strict=True))
        kmes = dict(zip(kme_jobs, results[2 * n:2 * n + len(kme_jobs)], strict=True))
        admin = results[2 * n + len(kme_jobs)]
        room = results[-1] if e.conference is not None else None

        snap: dict[str, Any] = {"t": now - self._t0, "gateways": gws, "budgets": budgets,
                                "kmes": kmes, "room": room, "directions": {}}
        for name, (src, dst) in DIRECTIONS.items():
            if gws.get(src) and gws.get(dst):
                d = direction_sample(gws[src], gws[dst])
                snap["directions"][name] = d
                self.recorder.direction(name, now, key_bytes=d["key_bytes"],
                                        payload_bytes=d["payload_bytes"], packets=d["packets"],
                                        key_buffered_bytes=d["key_buffered_bytes"],
                                        drops=d["drops"])
        qkd = self._qkd_view(admin, kmes.get("a"), now)
        snap["qkd"] = {"generated_bytes": qkd.generated_bytes, "qber": qkd.qber,
                       "rate_bps": qkd.rate_bps, "rate_steady_bps": qkd.rate_steady_bps,
                       "eve": qkd.eve, "cut": qkd.cut,
                       "source": qkd.source, "blocks": qkd.blocks,
                       "aborted_blocks": qkd.aborted_blocks,
                       "attacked_blocks": qkd.attacked_blocks,
                       "attacked_blocks_with_key": qkd.attacked_blocks_with_key}
        if kmes.get("a") is not None or admin is not None:
            # the link ran before the conference: count what it generated since the start
            if self._generated_base is None:
                self._generated_base = qkd.generated_bytes
            generated = max(0, qkd.generated_bytes - self._generated_base)
            self.recorder.qkd(now, generated_bytes=generated, qber=qkd.qber,
                              blocks=qkd.blocks, aborted_blocks=qkd.aborted_blocks)
        self._check_alarms(snap)
        snap["alarms"] = [a.as_dict() for a in self.alarms]
        snap["active_alarms"] = self.active_alarms
        self.latest = snap
        for cb in self.on_sample:
            cb(snap)
        return snap

    def _qkd_view(self, admin: Any, kme_a: Any, now: float) -> QkdView:
        if isinstance(admin, dict):
            view = qkd_from_admin(admin)
        else:
            view = QkdView(qber=self.model_qber)
            if isinstance(kme_a, dict):
                view.generated_bytes = int(kme_a.get("link_received_bits", 0)) // 8
        # the rate over the last RATE_WINDOW_S seconds, from the key delivered: what
        # the adaptation must follow (the link's own figure is a run-long average,
        # which an attack or a cut would take minutes to pull down)
        samples = self._rate_samples
        samples.append((now, view.generated_bytes))
        while len(samples) > 2 and now - samples[1][0] >= RATE_STEADY_S:
            samples.pop(0)
        view.rate_bps = _window_rate(samples, now, RATE_WINDOW_S)
        view.rate_steady_bps = _window_rate(samples, now, RATE_STEADY_S)
        return view

    def _check_alarms(self, snap: dict[str, Any]) -> None:
        q = snap["qkd"]
        qber = q["qber"]
        high = isinstance(qber, float) and not math.isnan(qber) and qber > 0.11
        self.alarm("qber", f"QBER {100 * qber:.1f} % above 11 %: eavesdropping suspected, "
                   "no key is produced" if high else "", active=high)
        # the scenario's own flag (what the demo did), beside the QBER alarm (what the
        # link measured, all an operator would see)
        self.alarm("eve", f"scenario: {q['eve']} placed on the fiber", active=bool(q["eve"]))
        self.alarm("cut", "the QKD fiber is cut: no key is produced", active=bool(q["cut"]))
        for name, d in snap["directions"].items():
            no_key = d["drops"].get("tx:no_key", 0)
            prev = self.latest.get("directions", {}).get(name, {}).get("drops", {})
            starving = no_key > prev.get("tx:no_key", no_key)
            self.alarm(f"no_key:{name}", f"{name}: packets dropped for lack of key (fail closed)",
                       active=starving)

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="demo-monitor")

    async def _loop(self) -> None:
        while True:
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed poll must not end the demo
                log.exception("monitor sample failed")
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def close(self) -> None:
        for c in self._http.values():
            c.close()
        self._http.clear()


def endpoints_for(topology: Any, room: str, conference_url: str | None,
                  conference_admin: Path | None = None) -> Endpoints:
    """The endpoints of a demo testbed (``topology``: a :class:`Topology`)."""
    return Endpoints(
        gateway={
            "a": (topology.a.gw_ns, f"http://{topology.a.gw_lan_ip}:{GATEWAY_HTTP_PORT}"),
            "b": (topology.b.gw_ns, f"http://{topology.b.gw_lan_ip}:{GATEWAY_HTTP_PORT}"),
        },
        kme={
            "a": (topology.a.gw_ns, f"https://127.0.0.1:{KME_PORT}"),
            "b": (topology.b.gw_ns, f"https://127.0.0.1:{KME_PORT}"),
        },
        conference=(topology.a.lan_ns, conference_url) if conference_url else None,
        room=room,
        conference_admin=conference_admin if conference_url else None,
    )


def _window_rate(samples: list[tuple[float, int]], now: float, window: float) -> float:
    """Bit/s over the last ``window`` seconds of (time, cumulative bytes) samples
    (from the oldest sample inside the window, or the oldest kept)."""
    if not samples:
        return 0.0
    t0, g0 = samples[0]
    for t, g in samples:
        if now - t <= window:
            t0, g0 = t, g
            break
    if t0 == now and len(samples) > 1:  # only the newest sample in the window
        t0, g0 = samples[-2]
    return max(0.0, 8 * (samples[-1][1] - g0) / (now - t0)) if now > t0 else 0.0
