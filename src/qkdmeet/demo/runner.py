"""``qkdmeet demo``: the whole system on one machine, as an owned lifecycle.

States (:class:`State`), in order; any step that fails goes to ``FAILED``
and the teardown still runs::

    CREATED -> PREFLIGHT -> TESTBED -> KEYS -> GATEWAYS -> CONFERENCE
            -> RUNNING -> STOPPING -> REPORTING -> DONE

1. PREFLIGHT: the host can run it (root, iproute2, TUN, namespaces).
2. TESTBED: five namespaces, the WAN relay with capture, the "fiber".
3. KEYS: PKI and the two KMEs (A in gwa, B in gwb) fed by the QKD link.
4. GATEWAYS: gateway A and B in ETSI 014 mode (master out, slave in).
5. CONFERENCE: the server in lana, the local (lana) and remote (lanb)
   participants, or the field test's rates without the conference layer.
6. RUNNING: monitor, progress, adaptation, scenario, until the time is up
   or a stop is requested (Ctrl-C, SIGTERM).
7. STOPPING: participants stop; the key accounting identity is taken once
   the counters are still; then every process is stopped.
8. REPORTING: the table (text, CSV, JSON), plots and HTML.

Every process belongs to :class:`~qkdmeet.demo.processes.ProcessSet`; the
teardown (``finally``) stops them all, copies the logs and removes the
testbed (``Topology.down``), so no namespace or process is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qkdmeet.demo import media
from qkdmeet.demo.adapt import Adapter, Caps, DirectionLoad
from qkdmeet.demo.monitor import DIRECTIONS, Monitor, endpoints_for
from qkdmeet.demo.preflight import check_demo_host
from qkdmeet.demo.processes import Owned, ProcessSet, qkdmeet_argv
from qkdmeet.demo.progress import Progress
from qkdmeet.demo.sites import SAE, DemoPlan, SiteFiles, key_sizing, write_sites
from qkdmeet.errors import DemoError as DemoError  # the demo layer's error, raised here
from qkdmeet.report.accounting import Recorder, RunReport
from qkdmeet.report.identity import final_metrics_from_log, site_identity
from qkdmeet.report.wan_audit import audit_capture
from qkdmeet.testbed import netns
from qkdmeet.testbed.topology import VISITOR_SUBNET
from qkdmeet.vpn.constants import REFERENCE_PACKET_BYTES
from qkdmeet.vpn.gateway import payload_per_key_byte

log = logging.getLogger(__name__)

SCENARIOS = ("none", "eavesdropper", "link-cut", "gateway-restart")
LINKS = ("qkd", "model")
#: Blocks the real-time QKD link distils before the gateways are sized from its rate.
WARMUP_BLOCKS = 3
#: How long the demo waits for them (s) before sizing from the device model.
WARMUP_TIMEOUT_S = 90.0
DIRECTION_LABELS = {
    "A->B": "A->B ToMMo (server) -> TUH (client)",
    "B->A": "B->A TUH (client) -> ToMMo (server)",
}


class State(enum.Enum):
    CREATED = "created"
    PREFLIGHT = "preflight"
    TESTBED = "testbed"
    KEYS = "keys"
    GATEWAYS = "gateways"
    CONFERENCE = "conference"
    RUNNING = "running"
    STOPPING = "stopping"
    REPORTING = "reporting"
    DONE = "done"
    FAILED = "failed"


@dataclass(slots=True)
class DemoOptions:
    seconds: float = 60.0
    scenario: str = "none"
    out_dir: Path = field(
        default_factory=lambda: Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S"))
    quiet: bool = False
    adapt: bool = True
    dashboard_port: int = 0
    #: Put the host behind gateway B (Topology.visitor_up), so that a browser on
    #: the host joins as a remote participant whose traffic crosses the QKD-VPN.
    host_join: bool = False
    #: Key source of the KMEs: "qkd", the real-time QKD link (its rate is what this
    #: machine's CPU distils), or "model", a seeded stand-in that delivers key at the
    #: modelled device's secure key rate (not secret: for sizing a conference at the
    #: real hardware's rate, e.g. the field test's media uncapped).
    link: str = "qkd"
    marker: str = field(default_factory=lambda: "QKDMEET-MARKER-" + os.urandom(6).hex())
    interval: float = 2.0


def _log_says(owned: Owned, text: bytes) -> Callable[[], bool]:
    return lambda: text in owned.log_path.read_bytes()


class DemoRunner:
    def __init__(self, plan: DemoPlan, options: DemoOptions, progress: Progress | None = None
                 ) -> None:
        from qkdmeet.testbed.topology import Topology

        if options.scenario not in SCENARIOS:
            raise DemoError(f"unknown scenario {options.scenario!r}; choose one of {SCENARIOS}")
        if options.link not in LINKS:
            raise DemoError(f"unknown key source {options.link!r}; choose one of {LINKS}")
        if options.link != "qkd" and options.scenario in ("eavesdropper", "link-cut"):
            raise DemoError(f"--scenario {options.scenario} acts on the QKD link's fiber: "
                            "it needs --link qkd")
        if not options.seconds > 0 or math.isinf(options.seconds):
            raise DemoError("the run length must be a positive number of seconds")
        self.plan = plan
        self.options = options
        self.progress = progress or Progress(quiet=options.quiet)
        self.topology = Topology(plan.prefix)
        self.out = options.out_dir
        self.procs = ProcessSet(self.out / "logs")
        self.state = State.CREATED
        self.stop_requested = asyncio.Event()
        self.files: SiteFiles | None = None
        self.monitor: Monitor | None = None
        self.adapter: Adapter | None = None
        self.conference_url: str | None = None
        self.conference_admin: Path | None = None
        self.invite_url: str | None = None
        #: The URL a browser on the host opens to join through the QKD-VPN.
        self.join_url: str | None = None
        self.traffic = "none"
        self.identity: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.report: RunReport | None = None
        self._t_start = 0.0
        self._bots: dict[str, Owned] = {}
        self._gw_procs: dict[str, Owned] = {}
        self.model_rate_bps = plan.link_rate_bps
        self.link_measured_rate_bps: float | None = None

    # --- lifecycle -----------------------------------------------------------------
    def _set_state(self, state: State) -> None:
        log.info("demo: %s -> %s", self.state.value, state.value)
        self.state = state

    def event(self, text: str) -> None:
        t = time.time() - self._t_start if self._t_start else 0.0
        self.events.append({"t": t, "event": text})
        self.progress.say(text)

    async def run(self) -> RunReport:
        """Build, run, report, tear down; the report (also written under ``out``)."""
        try:
            self._set_state(State.PREFLIGHT)
            missing = check_demo_host()
            if missing:
                raise DemoError("cannot run the demo on this host:\n" +
                                "\n".join(f"  - {m}" for m in missing))
            self.out.mkdir(parents=True, exist_ok=True)
            self._build_testbed()
            self._start_kmes()
            await self._warm_up_link()
            self._start_gateways()
            self._start_conference()
            await self._running()
            await self._stopping()
            self._set_state(State.REPORTING)
            report = self._make_report()
            self._set_state(State.DONE)
            return report
        except BaseException:
            self._set_state(State.FAILED)
            raise
        finally:
            self._teardown()

    # --- steps -----------------------------------------------------------------------
    def _build_testbed(self) -> None:
        self._set_state(State.TESTBED)
        self.topology.down()
        self.topology.up(capture=True)
        a_ip, b_ip = self.topology.fiber_up()
        if (a_ip, b_ip) != (self.plan.fiber_a, self.plan.fiber_b):
            raise DemoError(f"fiber addresses {a_ip}/{b_ip} differ from the plan's")
        self.event(f"testbed {self.plan.prefix}* up: 5 namespaces, WAN relay, fiber {a_ip}-{b_ip}")
        if self.options.host_join:
            try:
                host_ip = self.topology.visitor_up()
            except netns.NetnsError as exc:
                raise DemoError(f"--host-join: {exc}") from exc
            self.event(f"this host joins site B's side as {host_ip}: its traffic to site A "
                       "crosses gateway B, the WAN and gateway A")

    def _start_kmes(self) -> None:
        self._set_state(State.KEYS)
        files = write_sites(self.plan, self.topology.run_dir / "sites",
                            use_qkd=self.options.link == "qkd")
        self.files = files
        for side, ns in (("a", self.topology.a.gw_ns), ("b", self.topology.b.gw_ns)):
            owned = self.procs.spawn(f"kme-{side}", ns, qkdmeet_argv(
                "kme", "serve", "--config", str(files.kme_configs[side])))
            self.procs.wait_ready(owned, _log_says(owned, b"serving ETSI 014"), timeout=60)
        kind = ("real-time QKD link (transmitter A, receiver B, over the fiber)"
                if files.link_kind == "qkd" else
                "seeded stand-in at the finite-key model's rate (--link model: not secret)")
        self.event(f"KMEs up in gwa/gwb, peering over the fiber; key from the {kind}, "
                   f"{self.plan.link_rate_bps / 1e6:.2f} Mb/s at {self.plan.distance_km:g} km")

    async def _warm_up_link(self) -> None:
        """Size the gateways' keys from the real-time link's measured rate.

        The plan's rate is the modelled device's (what the hardware at its
        clock would give); the distilled rate on this machine is what the KMEs
        really receive, and it is usually far lower (the CPU, not the optics,
        limits a link simulated in real time). The link runs until it has
        delivered :data:`WARMUP_BLOCKS` blocks (also the KMEs' first key
        reserve); key size and prefetch then follow its measured rate, so that
        one gateway's prefetch cannot take all the key the link makes.
        """
        if self.files is None or self.files.link_kind != "qkd":
            return
        probe = Monitor(endpoints_for(self.topology, self.plan.room, None),
                        Recorder(list(DIRECTIONS)), self.files)
        stats: dict[str, Any] = {}
        try:
            deadline = time.monotonic() + WARMUP_TIMEOUT_S
            while time.monotonic() < deadline and not self.stop_requested.is_set():
                got = await probe.qkd_admin()
                if isinstance(got, dict):
                    stats = got
                    if int(stats.get("blocks", 0)) >= WARMUP_BLOCKS:
                        break
                self.progress.say(f"warming up the QKD link: {int(stats.get('blocks', 0))}"
                                   f"/{WARMUP_BLOCKS} blocks distilled")
                await asyncio.sleep(1.0)
        finally:
            probe.close()
        measured = float(stats.get("secure_key_rate_bps") or 0.0)
        self.model_rate_bps = self.plan.link_rate_bps
        if measured <= 0:
            self.event(f"the QKD link distilled no key within {WARMUP_TIMEOUT_S:g} s: "
                       "gateways sized from the device model")
            return
        bits, prefetch = key_sizing(measured)
        self.plan = dataclasses.replace(self.plan, link_rate_bps=measured,
                                        key_size_bits=bits, prefetch_bytes=prefetch)
        self.link_measured_rate_bps = measured
        self.event(f"QKD link warmed up: {int(stats.get('blocks', 0))} blocks, "
                   f"{measured / 1e6:.2f} Mb/s distilled on this machine "
                   f"(device model {self.model_rate_bps / 1e6:.2f} Mb/s), QBER "
                   f"{float(stats.get('qber') or math.nan):.2%}")

    def _start_gateway(self, side: str) -> Owned:
        assert self.files is not None
        extra = [VISITOR_SUBNET] if self.options.host_join and side == "a" else []
        cfg = self.topology.gateway_config(
            side, etsi=self.files.etsi(side, self.plan),
            key_size_bits=self.plan.key_size_bits, prefetch_bytes=self.plan.prefetch_bytes,
            extra_routes=extra,
        )
        proc = self.topology.start_gateway(side, cfg, ready_timeout=60)
        ns = self.topology.a.gw_ns if side == "a" else self.topology.b.gw_ns
        owned = self.procs.adopt(f"gateway-{side}", ns, proc,
                                 self.topology.run_dir / f"gateway-{side}.log")
        self._gw_procs[side] = owned
        return owned

    def _start_gateways(self) -> None:
        self._set_state(State.GATEWAYS)
        for side in ("a", "b"):
            self._start_gateway(side)
        self.event(f"gateways up (ETSI 014: master out, slave in; keys of "
                   f"{self.plan.key_bytes} B, prefetch {self.plan.prefetch_bytes / 1e6:.2f} MB)")

    def _start_conference(self) -> None:
        self._set_state(State.CONFERENCE)
        a = self.topology.a
        if media.conference_available():
            state = self.topology.run_dir / "conference"
            cfg = self.topology.run_dir / "conference.toml"
            media.server_config(a.host_ip, 8443, state).write(cfg)
            server = self.procs.spawn("conference-server", a.lan_ns, media.server_argv(cfg))
            self.conference_url = f"https://{a.host_ip}:8443"
            self.procs.wait_ready(server, lambda: b'"url"' in server.log_path.read_bytes(),
                                  timeout=60)
            self.traffic = "conference"
            self.conference_admin = media.admin_socket(state)
            # the room exists only because the operator (the demo) creates it, over the
            # server's admin socket; the participants join with its invite
            urls = media.create_room(state, self.plan.room)
            self.invite_url = urls["invite_url"]
            self.event(f"conference server up at {self.conference_url} (lana); room "
                       f"{self.plan.room} created (invite only)")
            if self.options.host_join:
                self.join_url = self.invite_url
                self.event(f"join from a browser on this host (through the QKD-VPN): "
                           f"{self.join_url} (self-signed certificate: accept it once)")
        else:
            self.traffic = "field-test-rates"
            self.event("conference layer not installed: carrying the field test's media rates "
                       "(923 kb/s A->B, 1.56 Mb/s B->A) as UDP streams")

    def _start_participants(self, seconds: float) -> None:
        a, b = self.topology.a, self.topology.b
        docs = media.write_documents(self.out / "documents", self.options.marker)
        if self.traffic == "conference":
            assert self.invite_url is not None
            self._bots["a"] = self.procs.spawn("bot-a", a.lan_ns, media.bot_argv(
                self.invite_url, self.plan.room, media.BOT_NAMES["a"], seconds,
                upload=docs.genomic_report))
            self._bots["b"] = self.procs.spawn("bot-b", b.lan_ns, media.bot_argv(
                self.invite_url, self.plan.room, media.BOT_NAMES["b"], seconds,
                screen=True, upload=docs.patient_case))
            self.event("participants joined: ToMMo-expert (lana, local), TUH-expert (lanb, "
                       "remote via the QKD-VPN, sharing the patient case)")
        else:
            for side, ns in (("a", a.lan_ns), ("b", b.lan_ns)):
                self.procs.spawn(f"sink-{side}", ns, media.probe_sink_argv(seconds))
            time.sleep(0.5)
            self._bots["a"] = self.procs.spawn("load-a", a.lan_ns, media.probe_load_argv(
                b.host_ip, seconds, media.FIELD_TEST_RATES["A->B"]))
            self._bots["b"] = self.procs.spawn("load-b", b.lan_ns, media.probe_load_argv(
                a.host_ip, seconds, media.FIELD_TEST_RATES["B->A"]))
            # the documents cross the VPN as they are (the WAN must never show them)
            for path, ns, dst in ((docs.patient_case, b.lan_ns, a.host_ip),
                                  (docs.genomic_report, a.lan_ns, b.host_ip)):
                code = ("import socket,sys;s=socket.socket(2,2);"
                        f"s.sendto(open(sys.argv[1],'rb').read(),('{dst}',{media.PROBE_PORT}))")
                self.procs.spawn(f"doc-{path.stem}", ns, [sys.executable, "-c", code, str(path)])

    # --- running ---------------------------------------------------------------------
    async def _running(self) -> None:
        assert self.files is not None
        self._set_state(State.RUNNING)
        seconds = self.options.seconds
        recorder = Recorder(list(DIRECTIONS))
        self.monitor = Monitor(endpoints_for(self.topology, self.plan.room, self.conference_url,
                                             self.conference_admin),
                               recorder, self.files, model_qber=self.plan.model_qber,
                               interval=self.options.interval)
        self.monitor.on_sample.append(self._annotate)
        self.monitor.on_sample.append(self.progress)
        if self.traffic == "conference" and self.options.adapt:
            mon = self.monitor

            async def post_cap(caps: Caps) -> Any:
                coro = mon.conference_post(f"/api/rooms/{self.plan.room}/cap",
                                           {"bps": caps.video, "audio_bps": caps.audio,
                                            "camera_bps": caps.camera})
                return await coro if coro is not None else None

            self.adapter = Adapter(post_cap, {
                "A->B": DirectionLoad(video_streams=1, audio_streams=1, camera_streams=1),
                # camera + screen
                "B->A": DirectionLoad(video_streams=2, audio_streams=1, camera_streams=1),
            })
        self._recorder = recorder
        self._t_start = time.time()
        self.monitor._t0 = self._t_start
        await self.monitor.sample()
        await self._adapt(self.plan.link_rate_bps)  # the first cap from the link's model rate
        self._start_participants(seconds)
        self.monitor.start()
        scenario = asyncio.create_task(self._scenario(seconds), name="demo-scenario")
        try:
            end = self._t_start + seconds
            while time.time() < end and not self.stop_requested.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(1.0, max(0.0, end - time.time()))):
                        await self.stop_requested.wait()
                await self._adapt()
        finally:
            scenario.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scenario
        self._duration = time.time() - self._t_start

    def _annotate(self, snap: dict[str, Any]) -> None:
        snap["cap_bps"] = self.adapter.current if self.adapter is not None else None
        snap["camera_cap_bps"] = self.adapter.caps.camera if self.adapter is not None else None

    async def _adapt(self, link_bps: float | None = None) -> None:
        """Fit the video cap to the key supply; push the link status to the browsers."""
        mon = self.monitor
        if mon is None or not mon.latest:
            return
        budgets = mon.latest.get("budgets", {})
        if self.adapter is not None:
            qkd = mon.latest.get("qkd", {})
            rate = link_bps if link_bps is not None else adaptation_rate(
                float(qkd.get("rate_bps") or 0.0), qkd.get("rate_steady_bps"))
            eff = payload_per_key_byte(REFERENCE_PACKET_BYTES, self.plan.key_bytes)
            pools = {name: _stock_seconds(budgets.get(side) or {})
                     for name, (side, _) in DIRECTIONS.items()}
            cap = await self.adapter.update(rate * eff, pools)
            mon.latest["cap_bps"] = cap
        coro = mon.conference_post("/api/link", self._link_status())
        if coro is not None:
            with contextlib.suppress(Exception):
                await coro

    def _link_status(self) -> dict[str, Any]:
        mon = self.monitor
        assert mon is not None
        snap = mon.latest
        budgets = snap.get("budgets", {})
        b = budgets.get("b") or {}
        a = budgets.get("a") or {}
        qber = snap.get("qkd", {}).get("qber")
        return {
            "protected": True,
            "key_buffered_bytes": (a.get("key_buffered_bytes") or 0)
            + (b.get("key_buffered_bytes") or 0),
            "sustainable_bps": min(a.get("sustainable_payload_bps") or 0.0,
                                   b.get("sustainable_payload_bps") or 0.0),
            "qber": None if not isinstance(qber, float) or math.isnan(qber) else qber,
            "alarm": ", ".join(mon.active_alarms) or None,
        }

    async def _scenario(self, seconds: float) -> None:
        s = self.options.scenario
        if s == "none":
            return
        await asyncio.sleep(seconds / 3)
        if s == "gateway-restart":
            self.event("scenario: gateway B restarts (SIGTERM, then started again)")
            old = self._gw_procs["b"]
            await asyncio.to_thread(self.procs.stop, old)
            await asyncio.to_thread(self._start_gateway, "b")
            self.event("scenario: gateway B is back")
            return
        body = ({"eve": "intercept-resend:1.0"} if s == "eavesdropper" else {"cut": True})
        undo = ({"eve": None} if s == "eavesdropper" else {"cut": False})
        await self._qkd_admin(body)
        self.event(f"scenario {s}: {body} on the fiber")
        await asyncio.sleep(seconds / 3)
        await self._qkd_admin(undo)
        self.event(f"scenario {s}: {undo}, the link recovers")

    async def _qkd_admin(self, body: dict[str, Any]) -> None:
        assert self.monitor is not None
        try:
            await self.monitor.qkd_admin(body)
        except Exception as exc:
            raise DemoError(f"the QKD link's admin route refused {body}: {exc}") from exc

    # --- stopping ------------------------------------------------------------------
    async def _stopping(self) -> None:
        self._set_state(State.STOPPING)
        mon = self.monitor
        assert mon is not None
        for name, owned in list(self._bots.items()):
            with contextlib.suppress(Exception):
                await asyncio.to_thread(owned.proc.wait, 30)
            if owned.alive:
                await asyncio.to_thread(self.procs.stop, owned)
            self._bots[name] = owned
        await mon.stop()
        await mon.sample()
        self.identity = await self._identity()

    async def _identity(self) -> list[dict[str, Any]]:
        """Both sites' identity from a still snapshot (gateways, KMEs, gateways again)."""
        mon = self.monitor
        assert mon is not None
        e = mon.endpoints

        async def read() -> tuple[dict[str, Any], dict[str, Any]]:
            gws = {s: await mon._get(ns, url + "/metrics.json") for s, (ns, url) in
                   e.gateway.items()}
            kmes = {s: await mon._get(ns, url + "/api/v1/metrics", s) for s, (ns, url) in
                    e.kme.items()}
            return gws, kmes

        prev = await read()
        for _ in range(15):
            await asyncio.sleep(1.0)
            cur = await read()
            if cur == prev and all(v is not None for part in cur for v in part.values()):
                break
            prev = cur
        gws, kmes = prev
        out = []
        for side in ("a", "b"):
            if gws.get(side) is None or kmes.get(side) is None:
                out.append({"site": side, "error": "gateway or KME did not answer"})
                continue
            earlier = final_metrics_from_log(self.topology.run_dir / f"gateway-{side}.log")
            ident = site_identity(side, SAE[side], kmes[side], gws[side], earlier)
            out.append(ident.as_dict())
        return out

    # --- report ----------------------------------------------------------------------
    def _make_report(self) -> RunReport:
        from qkdmeet.report.plots import write_html
        from qkdmeet.report.tables import write_tables

        mon = self.monitor
        assert mon is not None
        participants = []
        for side, owned in self._bots.items():
            result = media.last_json(owned.log_tail(200_000))
            name = media.BOT_NAMES[side] if self.traffic == "conference" else owned.name
            participants.append(media.participant_summary(name, side, result))
        if self.adapter is not None:
            for stream, t, bps in self.adapter.plotted(self._t_start + self._duration):
                self._recorder.bitrate(stream, t, bps)
        audit = None
        if self.topology.relay_capture.exists():
            audit = audit_capture(self.topology.relay_capture, [self.options.marker.encode()])
        report = self._recorder.report(
            self._duration,
            wan_audit=audit,
            qkd_link=dict(mon.latest.get("qkd", {})),
            participants=participants,
            alarms=[a.as_dict() for a in mon.alarms],
            key_identity=self.identity,
            key_identity_closes=bool(self.identity) and all(
                i.get("closes") for i in self.identity),
            direction_labels=DIRECTION_LABELS,
            settings={
                "distance_km": self.plan.distance_km,
                "preset": self.plan.preset,
                "link": self.files.link_kind if self.files else None,
                "link_model_rate_bps": self.model_rate_bps,
                "link_measured_rate_bps": self.link_measured_rate_bps,
                "key_size_bits": self.plan.key_size_bits,
                "prefetch_bytes": self.plan.prefetch_bytes,
                "traffic": self.traffic,
                "scenario": self.options.scenario,
                "marker": self.options.marker,
            },
            caps=self.adapter.history if self.adapter else [],
            events=self.events,
            wan_capture=str(self.out / "wan.capture"),
        )
        write_tables(report, self.out)
        write_html(report, self.out)
        self.report = report
        return report

    def _teardown(self) -> None:
        with contextlib.suppress(Exception):
            if self.monitor is not None:
                self.monitor.close()
        self.procs.stop_all()
        run_dir = self.topology.run_dir
        logs = self.out / "logs"
        with contextlib.suppress(OSError):
            logs.mkdir(parents=True, exist_ok=True)
            for p in list(run_dir.glob("*.log")):
                shutil.copy(p, logs / p.name)
            if self.topology.relay_capture.exists():
                shutil.copy(self.topology.relay_capture, self.out / "wan.capture")
        self.topology.down()


def _stock_seconds(budget: dict[str, Any]) -> float | None:
    """Seconds of key left for a direction at its consumption: gateway buffer + KME stock."""
    stock = budget.get("seconds_of_stock_at_consumption")
    return budget.get("seconds_of_key_at_consumption") if stock is None else float(stock)


#: A short-window rate off the steady one by more than this factor is a change
#: of regime (an attack or a cut: down; the link back: up), followed at once.
REGIME_CHANGE = 2.0


def adaptation_rate(short_bps: float, steady_bps: float | None) -> float:
    """The key rate the adaptation follows: the steady (30 s) rate, which does not
    swing with every block the link delivers, unless the short (10 s) window shows
    the supply collapsing or coming back."""
    if steady_bps is None or steady_bps <= 0:
        return short_bps
    if not steady_bps / REGIME_CHANGE <= short_bps <= steady_bps * REGIME_CHANGE:
        return short_bps
    return float(steady_bps)
