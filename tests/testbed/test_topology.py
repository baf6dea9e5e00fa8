"""End to end through the two-site testbed with real gateways (root)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from qkdmeet.testbed import netns
from qkdmeet.testbed.topology import VISITOR_HOST_IP, VISITOR_SUBNET, Topology
from qkdmeet.testbed.wanrelay import read_capture
from qkdmeet.vpn.constants import OVERHEAD_BYTES, TUN_MTU
from qkdmeet.vpn.filekeys import fill

pytestmark = pytest.mark.root

PREFIX = "qkt-"


@dataclass
class Bed:
    topo: Topology
    gateways: dict[str, subprocess.Popen[bytes]]


def probe(ns: str, *args: str, timeout: float = 30) -> dict[str, Any]:
    proc = netns.run_in(ns, [sys.executable, "-m", "qkdmeet.testbed.probe", *args],
                        timeout=timeout)
    result: dict[str, Any] = json.loads(proc.stdout.decode().splitlines()[-1])
    return result


def server(ns: str, *args: str) -> subprocess.Popen[bytes]:
    proc = netns.spawn(ns, [sys.executable, "-m", "qkdmeet.testbed.probe", *args],
                       stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert b"ready" in proc.stdout.readline()
    return proc


def gateway_metrics(bed: Bed, side: str) -> dict[str, Any]:
    site = bed.topo.a if side == "a" else bed.topo.b
    code = (
        "import urllib.request,sys;"
        f"sys.stdout.write(urllib.request.urlopen('http://{site.gw_lan_ip}:9180/metrics.json')"
        ".read().decode())"
    )
    out = netns.run_in(site.gw_ns, [sys.executable, "-c", code]).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def relay(bed: Bed, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "qkdmeet", "testbed", "--prefix", PREFIX, "impair", *args],
        capture_output=True, check=True, timeout=10,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    topo = Topology(PREFIX)
    topo.down()
    topo.up(capture=True)
    keys = topo.run_dir / "keys"
    for m, s in (("gw-a", "gw-b"), ("gw-b", "gw-a")):
        fill(keys, m, s, nbytes=24 << 20, key_bytes=65536)
    gws = {}
    try:
        topo.visitor_up()  # the host itself behind gateway B (test_host_joins_...)
        for side in ("a", "b"):
            extra = [VISITOR_SUBNET] if side == "a" else []
            cfg = topo.gateway_config(side, keys, prefetch_bytes=4 << 20, extra_routes=extra)
            gws[side] = topo.start_gateway(side, cfg)
        yield Bed(topo, gws)
    finally:
        for proc in gws.values():
            proc.terminate()
            proc.wait(timeout=10)
        topo.down()


def test_lans_only_reach_each_other_through_gateways() -> None:
    topo = Topology("qku-")
    topo.down()
    try:
        topo.up()
        # no gateways running: site A cannot reach site B at all
        res = probe(topo.a.lan_ns, "ping", topo.b.host_ip, "--count", "1", "--timeout", "0.5")
        assert res["received"] == 0
        assert topo.up() is False  # idempotent
        assert topo.status()["up"] is True
    finally:
        topo.down()
    assert not any(ns.startswith("qku-") for ns in netns.list_namespaces())
    assert not topo.run_dir.exists()


def test_fiber_joins_only_the_gateways() -> None:
    topo = Topology("qkf-")
    topo.down()
    try:
        topo.up()
        a_ip, b_ip = topo.fiber_up()
        assert topo.fiber_up() == (a_ip, b_ip)  # idempotent
        res = probe(topo.a.gw_ns, "ping", b_ip, "--count", "1", "--timeout", "2")
        assert res["received"] == 1
        # the fiber is no path between the site LANs
        res = probe(topo.a.lan_ns, "ping", b_ip, "--count", "1", "--timeout", "0.5")
        assert res["received"] == 0
    finally:
        topo.down()
    assert not any(ns.startswith("qkf-") for ns in netns.list_namespaces())


def test_visitor_link_is_removed_with_the_testbed() -> None:
    topo = Topology("qkx-")
    topo.down()
    try:
        topo.up()
        if netns.ip("-o", "route", "show", topo.a.lan_subnet).strip():
            pytest.skip("the host (or another testbed) already routes site A's LAN")
        topo.visitor_up()
        assert topo.visitor_host_dev in netns.ip("-o", "link", "show")
    finally:
        topo.down()
    assert topo.visitor_host_dev not in netns.ip("-o", "link", "show")
    assert not netns.ip("-o", "route", "show", topo.a.lan_subnet).strip()


def test_icmp_between_sites(bed: Bed) -> None:
    res = probe(bed.topo.a.lan_ns, "ping", bed.topo.b.host_ip, "--count", "3", "--size", "1000")
    assert res["received"] == res["intact"] == 3


def test_udp_and_tcp_between_sites(bed: Bed) -> None:
    srv = server(bed.topo.b.lan_ns, "udp-echo-server", "7001", "--seconds", "10")
    try:
        res = probe(bed.topo.a.lan_ns, "udp-echo", bed.topo.b.host_ip, "7001", "--count", "20")
        assert res["received"] == res["intact"] == 20
    finally:
        srv.kill()
        srv.wait()
    srv = server(bed.topo.b.lan_ns, "tcp-echo-server", "7002", "--seconds", "20")
    try:
        res = probe(bed.topo.a.lan_ns, "tcp-echo", bed.topo.b.host_ip, "7002",
                    "--bytes", str(2 << 20))
        assert res["intact"] is True and res["received"] == 2 << 20
    finally:
        srv.kill()
        srv.wait()


def test_host_joins_site_a_only_through_the_vpn(bed: Bed) -> None:
    """The demo's --host-join: a program on the host (root namespace) reaches
    site A's LAN through gateway B, the WAN relay and gateway A, encrypted."""
    topo = bed.topo
    route = netns.ip("-o", "route", "get", topo.a.host_ip)
    assert f"dev {topo.visitor_host_dev}" in route and VISITOR_HOST_IP in route
    before_b = gateway_metrics(bed, "b")["outbound"]["packets"]
    before_wan = len(read_capture(topo.relay_capture))
    srv = server(topo.a.lan_ns, "tcp-echo-server", "7010", "--seconds", "20")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "qkdmeet.testbed.probe", "tcp-echo", topo.a.host_ip, "7010",
             "--bytes", str(1 << 20)], capture_output=True, timeout=30, check=True)
        res = json.loads(proc.stdout.decode().splitlines()[-1])
        assert res["intact"] is True and res["received"] == 1 << 20
    finally:
        srv.kill()
        srv.wait()
    # the bytes crossed as gateway B's encrypted packets on the WAN
    assert gateway_metrics(bed, "b")["outbound"]["packets"] - before_b > 100
    assert len(read_capture(topo.relay_capture)) - before_wan > 100
    # a second call keeps the link; another route to site A's LAN is refused
    assert topo.visitor_up() == VISITOR_HOST_IP
    other = Topology("qkw-")
    with pytest.raises(netns.NetnsError, match="already routes"):
        other.visitor_up()


def test_webrtc_sized_packets_cross_unfragmented(bed: Bed) -> None:
    link = netns.ip("-j", "link", "show", "qkm-tun", ns=bed.topo.a.gw_ns)
    assert json.loads(link)[0]["mtu"] == TUN_MTU
    reasm_before = _reassemblies(bed.topo.wan)
    srv = server(bed.topo.b.lan_ns, "udp-echo-server", "7003", "--seconds", "10")
    try:
        # 1,370-byte IP packets (1,342 bytes of UDP payload) with Don't Fragment
        res = probe(bed.topo.a.lan_ns, "udp-echo", bed.topo.b.host_ip, "7003",
                    "--count", "10", "--size", "1342", "--df")
        assert res["received"] == res["intact"] == 10
    finally:
        srv.kill()
        srv.wait()
    assert _reassemblies(bed.topo.wan) == reasm_before
    sizes = [len(d) for _, d in read_capture(bed.topo.relay_capture)]
    assert max(sizes) <= 1500 - 28
    assert 1370 + OVERHEAD_BYTES in sizes


def _reassemblies(ns: str) -> int:
    text = netns.run_in(ns, ["cat", "/proc/net/snmp"]).stdout.decode().splitlines()
    head, values = [line.split() for line in text if line.startswith("Ip:")][:2]
    return int(values[head.index("ReasmReqds")])


def test_wan_capture_shows_no_plaintext(bed: Bed) -> None:
    marker = "QKDMEET-PLAINTEXT-MARKER"
    before = len(read_capture(bed.topo.relay_capture))
    code = (
        "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
        f"[s.sendto(b'{marker}'*40,('{bed.topo.b.host_ip}',7999)) for _ in range(20)]"
    )
    netns.run_in(bed.topo.a.lan_ns, [sys.executable, "-c", code])
    time.sleep(0.5)
    captured = read_capture(bed.topo.relay_capture)[before:]
    assert len(captured) >= 20
    assert all(marker.encode() not in d for _, d in captured)
    assert all(marker.encode()[:8] not in d for _, d in captured)


def test_impaired_wan_drops_are_counted_and_tunnel_recovers(bed: Bed) -> None:
    srv = server(bed.topo.b.lan_ns, "udp-echo-server", "7004", "--seconds", "30")
    try:
        before = gateway_metrics(bed, "b")["inbound"]["drops"]
        relay(bed, "--duplicate", "1", "--corrupt", "0.3", "--reorder", "0.3",
              "--jitter-ms", "2")
        res = probe(bed.topo.a.lan_ns, "udp-echo", bed.topo.b.host_ip, "7004",
                    "--count", "40", "--timeout", "0.5")
        # every echo that came back is intact: corrupted packets never reach a LAN
        assert res["intact"] == res["received"] > 0
        after = gateway_metrics(bed, "b")["inbound"]["drops"]
        assert after.get("replayed", 0) > before.get("replayed", 0)
        assert after.get("bad_tag", 0) > before.get("bad_tag", 0)
        stats = relay(bed, "--duplicate", "0", "--corrupt", "0", "--reorder", "0",
                      "--jitter-ms", "0", "--stats")["stats"]
        assert stats["duplicated"] > 0 and stats["corrupted"] > 0
        res = probe(bed.topo.a.lan_ns, "udp-echo", bed.topo.b.host_ip, "7004", "--count", "10")
        assert res["received"] == res["intact"] == 10
    finally:
        relay(bed, "--duplicate", "0", "--corrupt", "0", "--reorder", "0", "--jitter-ms", "0")
        srv.kill()
        srv.wait()


def test_gateway_restart_mid_transfer_reuses_no_key(bed: Bed) -> None:
    topo = bed.topo
    srv = server(topo.b.lan_ns, "udp-echo-server", "7005", "--seconds", "40")
    state = topo.run_dir / "state-a"
    try:
        # settle first: the impairment test before this one may have left REKEYs
        # (forged key IDs) whose key rotation is still under way
        for _ in range(5):
            if probe(topo.a.lan_ns, "udp-echo", topo.b.host_ip, "7005",
                     "--count", "5")["intact"] == 5:
                break
        assert probe(topo.a.lan_ns, "udp-echo", topo.b.host_ip, "7005",
                     "--count", "20")["intact"] == 20
        seq_before = int((state / "sequence").read_text())
        bed.gateways["a"].terminate()
        bed.gateways["a"].wait(timeout=10)
        bed.gateways["a"] = topo.start_gateway("a", topo.run_dir / "gateway-a.toml")
        # the replies under B's keys that A's previous run fetched are lost until A's
        # REKEY makes B move to fresh keys (about 1.5 s on an idle machine: the failed
        # fetch's retries; seen above 30 s once under the whole suite's load)
        deadline = time.monotonic() + 60
        while True:
            res = probe(topo.a.lan_ns, "udp-echo", topo.b.host_ip, "7005", "--count", "5",
                        "--timeout", "1")
            assert res["received"] == res["intact"]  # nothing corrupt ever reaches a LAN
            if res["intact"] == 5 or time.monotonic() > deadline:
                break
        assert res["intact"] == 5, "the tunnel did not recover from the restart"
        # B's replay window accepts the restarted sender: its sequence numbers continue above
        res = probe(topo.a.lan_ns, "udp-echo", topo.b.host_ip, "7005", "--count", "20")
        assert res["received"] == res["intact"] == 20
        assert int((state / "sequence").read_text()) > seq_before
        journal = (state / "used_keys").read_text().split()
        assert len(journal) == len(set(journal)) >= 2  # no key opened twice, across restarts
    finally:
        srv.kill()
        srv.wait()
