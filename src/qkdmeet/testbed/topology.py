"""The two-site testbed: five namespaces, four veth links, a WAN relay.

::

    lana ──lan0── gwa ──wan0────a0── wan ──b0────wan0── gwb ──lan0── lanb
    10.1.0.2   10.1.0.1  172.30.1.1  .1.2  .2.2  172.30.2.1  10.2.0.1  10.2.0.2

Namespaces are ``<prefix>lana``, ``<prefix>gwa``, ``<prefix>wan``,
``<prefix>gwb``, ``<prefix>lanb`` (default prefix ``qkm-``). The site LAN
hosts route everything to their gateway; the gateways forward IP but have
no route to the other site except their TUN (set up by the gateway daemon);
the ``wan`` namespace does not forward IP in ``relay`` mode, so LAN-to-LAN
traffic can only cross as the gateways' UDP through the relay process
(:mod:`.wanrelay`), which the topology starts in ``wan``.
``mode="routed"`` instead lets the kernel forward in ``wan`` (no relay),
used by the benchmark to measure the path with plain routing.

:meth:`Topology.up` is idempotent (an existing complete testbed is kept);
:meth:`Topology.down` kills the processes inside the five namespaces and
removes them and the run directory, nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qkdmeet.testbed import netns

RUN_ROOT = Path("/run/qkdmeet-testbed")
GATEWAY_PORT = 51900
RELAY_PORT = 51900
#: The gateway-to-gateway "fiber" (QKD channels, KME peering): see Topology.fiber_up.
FIBER_DEV = "fib0"
FIBER_PREFIX = "172.30.9"
#: The host's "visitor" link into site B (see Topology.visitor_up).
VISITOR_DEV = "vis0"
VISITOR_SUBNET = "10.2.9.0/30"
VISITOR_GW_IP = "10.2.9.1"
VISITOR_HOST_IP = "10.2.9.2"
#: Names of the namespaces, without prefix.
ROLES = ("lana", "gwa", "wan", "gwb", "lanb")


@dataclass(frozen=True, slots=True)
class Site:
    """Addresses of one site."""

    lan_ns: str
    gw_ns: str
    lan_subnet: str
    host_ip: str
    gw_lan_ip: str
    gw_wan_ip: str
    relay_ip: str  # the relay's address facing this gateway
    wan_subnet: str


class Topology:
    """One testbed, named by its prefix."""

    def __init__(self, prefix: str = "qkm-", *, mode: str = "relay") -> None:
        if not prefix or len(prefix) > 8 or not prefix.replace("-", "").isalnum():
            raise ValueError("prefix must be 1-8 letters, digits or '-'")
        if mode not in ("relay", "routed"):
            raise ValueError("mode is 'relay' or 'routed'")
        self.prefix = prefix
        self.mode = mode
        self.run_dir = RUN_ROOT / prefix.rstrip("-")
        self.wan = prefix + "wan"
        self.a = Site(prefix + "lana", prefix + "gwa", "10.1.0.0/24", "10.1.0.2", "10.1.0.1",
                      "172.30.1.1", "172.30.1.2", "172.30.1.0/30")
        self.b = Site(prefix + "lanb", prefix + "gwb", "10.2.0.0/24", "10.2.0.2", "10.2.0.1",
                      "172.30.2.1", "172.30.2.2", "172.30.2.0/30")

    @property
    def namespaces(self) -> list[str]:
        return [self.prefix + r for r in ROLES]

    @property
    def relay_control(self) -> Path:
        return self.run_dir / "relay.sock"

    @property
    def relay_capture(self) -> Path:
        return self.run_dir / "wan.capture"

    # --- lifecycle -------------------------------------------------------------------
    def is_up(self) -> bool:
        existing = set(netns.list_namespaces())
        return all(ns in existing for ns in self.namespaces) and (self.run_dir / "up").exists()

    def up(self, *, capture: bool = False) -> bool:
        """Build the testbed; False when it was already up (nothing changed)."""
        if self.is_up():
            return False
        self.down()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for ns in self.namespaces:
            netns.add(ns)
        for site, side in ((self.a, "a0"), (self.b, "b0")):
            netns.veth(site.lan_ns, "lan0", site.gw_ns, "lan0")
            netns.veth(site.gw_ns, "wan0", self.wan, side)
            netns.address(site.lan_ns, "lan0", site.host_ip + "/24")
            netns.address(site.gw_ns, "lan0", site.gw_lan_ip + "/24")
            netns.address(site.gw_ns, "wan0", site.gw_wan_ip + "/30")
            netns.address(self.wan, side, site.relay_ip + "/30")
            netns.route(site.lan_ns, "default", site.gw_lan_ip)
            netns.sysctl(site.gw_ns, "net.ipv4.ip_forward", "1")
        netns.sysctl(self.wan, "net.ipv4.ip_forward", "1" if self.mode == "routed" else "0")
        if self.mode == "routed":
            netns.route(self.a.gw_ns, self.b.wan_subnet, self.a.relay_ip)
            netns.route(self.b.gw_ns, self.a.wan_subnet, self.b.relay_ip)
        else:
            self._start_relay(capture)
        (self.run_dir / "up").write_text(json.dumps({"mode": self.mode, "time": time.time()}))
        return True

    def _start_relay(self, capture: bool) -> None:
        argv = [
            sys.executable, "-m", "qkdmeet", "testbed", "relay",
            "--a-listen", f"{self.a.relay_ip}:{RELAY_PORT}",
            "--a-peer", f"{self.a.gw_wan_ip}:{GATEWAY_PORT}",
            "--b-listen", f"{self.b.relay_ip}:{RELAY_PORT}",
            "--b-peer", f"{self.b.gw_wan_ip}:{GATEWAY_PORT}",
            "--control", str(self.relay_control),
        ]
        if capture:
            argv += ["--capture", str(self.relay_capture)]
        log = (self.run_dir / "relay.log").open("ab")
        proc = netns.spawn(self.wan, argv, stdout=log, stderr=log, start_new_session=True)
        (self.run_dir / "relay.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + 15
        while not self.relay_control.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise netns.NetnsError(f"WAN relay did not start; see {self.run_dir}/relay.log")
            time.sleep(0.05)

    def down(self) -> None:
        """Remove everything this testbed made (idempotent)."""
        self.visitor_down()
        pid_file = self.run_dir / "relay.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        for ns in self.namespaces:
            netns.delete(ns)
        if self.run_dir.exists():
            for p in sorted(self.run_dir.rglob("*"), reverse=True):
                if p.is_dir():
                    p.rmdir()
                else:
                    p.unlink()
            self.run_dir.rmdir()

    def fiber_up(self, subnet_prefix: str = FIBER_PREFIX) -> tuple[str, str]:
        """A dedicated veth "fiber" ``fib0`` between the two gateway namespaces.

        It carries what runs between the sites' trusted boxes besides the VPN:
        the QKD link's channels and the KME-to-KME peering; never the VPN's
        WAN. Addresses ``<subnet_prefix>.1/30`` (site A) and ``.2/30`` (site B),
        returned in that order; idempotent; removed with the namespaces.
        """
        a_ip, b_ip = f"{subnet_prefix}.1", f"{subnet_prefix}.2"
        if FIBER_DEV not in netns.ip("-o", "link", "show", ns=self.a.gw_ns, check=False):
            netns.veth(self.a.gw_ns, FIBER_DEV, self.b.gw_ns, FIBER_DEV)
        netns.address(self.a.gw_ns, FIBER_DEV, a_ip + "/30")
        netns.address(self.b.gw_ns, FIBER_DEV, b_ip + "/30")
        return a_ip, b_ip

    @property
    def visitor_host_dev(self) -> str:
        """Name of the visitor link's end in the host's own (root) namespace."""
        return self.prefix + "vis"

    def visitor_up(self) -> str:
        """Put the host itself at site B, behind gateway B: a person's browser on
        the host then reaches site A's LAN only through the QKD-VPN.

        A veth from the root namespace (``<prefix>vis``, 10.2.9.2/30) to
        ``vis0`` in gateway B's namespace (10.2.9.1/30), and a host route to
        site A's LAN via gateway B. Gateway A must route ``VISITOR_SUBNET``
        into its TUN (``gateway_config(..., extra_routes=[VISITOR_SUBNET])``).
        The link's MTU is the TUN's, so the host never sends what the tunnel
        would have to fragment. Raises :class:`netns.NetnsError` if the host
        already routes site A's subnet some other way (nothing is changed
        then); removed by :meth:`down` (and with gateway B's namespace).
        Returns the host's address on the link.
        """
        from qkdmeet.vpn.constants import TUN_MTU

        dev = self.visitor_host_dev
        existing = netns.ip("-o", "route", "show", self.a.lan_subnet, check=False).strip()
        if existing and f"dev {dev}" not in existing:
            raise netns.NetnsError(
                f"the host already routes {self.a.lan_subnet} ({existing}); "
                "the visitor link would take that route over")
        if dev not in netns.ip("-o", "link", "show", check=False):
            netns.ip("link", "add", dev, "type", "veth", "peer", "name", VISITOR_DEV,
                     "netns", self.b.gw_ns)
        netns.address(self.b.gw_ns, VISITOR_DEV, VISITOR_GW_IP + "/30", mtu=TUN_MTU)
        netns.ip("addr", "replace", VISITOR_HOST_IP + "/30", "dev", dev)
        netns.ip("link", "set", "dev", dev, "mtu", str(TUN_MTU))
        netns.ip("link", "set", "dev", dev, "up")
        netns.ip("route", "replace", self.a.lan_subnet, "via", VISITOR_GW_IP, "dev", dev)
        return VISITOR_HOST_IP

    def visitor_down(self) -> None:
        """Remove the visitor link and its host route (idempotent)."""
        netns.ip("link", "del", self.visitor_host_dev, check=False)

    def status(self) -> dict[str, Any]:
        existing = set(netns.list_namespaces())
        relay_alive = False
        pid_file = self.run_dir / "relay.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), 0)
                relay_alive = True
            except (ValueError, ProcessLookupError):
                relay_alive = False
        return {
            "prefix": self.prefix,
            "up": self.is_up(),
            "mode": self.mode,
            "namespaces": {ns: ns in existing for ns in self.namespaces},
            "relay_alive": relay_alive,
            "relay_control": str(self.relay_control),
            "sites": {
                "a": {"host": self.a.host_ip, "subnet": self.a.lan_subnet, "ns": self.a.lan_ns},
                "b": {"host": self.b.host_ip, "subnet": self.b.lan_subnet, "ns": self.b.lan_ns},
            },
        }

    # --- gateways ----------------------------------------------------------------------
    def gateway_config(
        self,
        side: str,
        keys_dir: Path | None = None,
        *,
        key_size_bits: int = 8 * 65536,
        prefetch_bytes: int = 8 << 20,
        etsi: dict[str, str] | None = None,
        extra_routes: list[str] | None = None,
        data_path: str = "batched",
    ) -> Path:
        """Write a gateway TOML for site ``side`` ("a"/"b").

        Key supply: a file key store at ``keys_dir``, or an ETSI 014 KME given by
        ``etsi`` (keys ``kme_url``, ``cert_file``, ``key_file``, ``ca_file``, and
        optionally ``sae_id``/``peer_sae_id``; default SAE IDs ``gw-a``/``gw-b``).
        The budget endpoint listens on the gateway's LAN address, port 9180.
        ``extra_routes`` are subnets behind the peer besides its LAN (the
        visitor link, :meth:`visitor_up`, for gateway A).
        """
        # the vpn package loads the data path (numba): only when a gateway is configured
        from qkdmeet.vpn.config import GatewayConfig, KeysConfig, write_config

        if (keys_dir is None) == (etsi is None):
            raise ValueError("give exactly one of keys_dir and etsi")
        me, peer = (self.a, self.b) if side == "a" else (self.b, self.a)
        sae, peer_sae = ("gw-a", "gw-b") if side == "a" else ("gw-b", "gw-a")
        if etsi is not None:
            sae, peer_sae = etsi.get("sae_id", sae), etsi.get("peer_sae_id", peer_sae)
        if self.mode == "relay":
            peer_addr = (me.relay_ip, RELAY_PORT)
        else:
            peer_addr = (peer.gw_wan_ip, GATEWAY_PORT)
        if etsi is not None:
            keys = KeysConfig(
                "etsi", sae, peer_sae, key_size_bits, prefetch_bytes, kme_url=etsi["kme_url"],
                cert_file=Path(etsi["cert_file"]), key_file=Path(etsi["key_file"]),
                ca_file=Path(etsi["ca_file"]),
            )
        else:
            keys = KeysConfig("files", sae, peer_sae, key_size_bits, prefetch_bytes,
                              dir=keys_dir)
        cfg = GatewayConfig(
            name=sae,
            tun="qkm-tun",
            listen=(me.gw_wan_ip, GATEWAY_PORT),
            peer=peer_addr,
            keys=keys,
            routes=(peer.lan_subnet, *(extra_routes or [])),
            state_dir=self.run_dir / ("state-" + side),
            budget_listen=(me.gw_lan_ip, 9180),
            data_path=data_path,
        )
        return write_config(cfg, self.run_dir / f"gateway-{side}.toml")

    def start_gateway(self, side: str, config: Path, *, ready_timeout: float = 30.0
                      ) -> subprocess.Popen[bytes]:
        """Run ``qkdmeet gateway run`` in the site's gateway namespace; waits until ready.

        Output goes to ``<run_dir>/gateway-<side>.log``, the pid to ``gateway-<side>.pid``;
        the caller owns the process (:meth:`stop_gateway`, or :meth:`down` kills it).
        """
        site = self.a if side == "a" else self.b
        log_path = self.run_dir / f"gateway-{side}.log"
        offset = log_path.stat().st_size if log_path.exists() else 0
        with log_path.open("ab") as log:
            proc: subprocess.Popen[bytes] = netns.spawn(
                site.gw_ns,
                [sys.executable, "-m", "qkdmeet", "gateway", "run", "--config", str(config)],
                stdout=log, stderr=log, start_new_session=True,
            )
        (self.run_dir / f"gateway-{side}.pid").write_text(str(proc.pid))
        deadline = time.monotonic() + ready_timeout
        while True:
            with log_path.open("rb") as f:
                f.seek(offset)
                if b'"ready": true' in f.read():
                    return proc
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise netns.NetnsError(f"gateway {side} did not start; see {log_path}")
            time.sleep(0.05)

    def stop_gateway(self, side: str) -> None:
        """SIGTERM the gateway started for ``side`` (clean stop: key zeroed, counted)."""
        pid_file = self.run_dir / f"gateway-{side}.pid"
        if pid_file.exists():
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            pid_file.unlink()
