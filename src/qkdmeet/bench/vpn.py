"""``qkdmeet bench vpn [--json] [--runs N] [--seconds S] [--no-testbed]``.

Figures, each the median of ``--runs`` runs (the machine is shared: noisy):

* ``data_path``: the per-packet gateway pipeline (the Python path the batched
  one falls back to between keys) in one process over a fake TUN and an
  in-memory bind (no kernel I/O): packets/s and Mb/s of inner payload that
  one core protects (A) and verifies + decrypts (B), at 1,200 and 1,400 bytes.
* ``key_efficiency``: payload bytes per key byte measured at 1,200-byte
  packets, against the limit of a one-time pad plus one tag mask
  (1200 / 1232) and the figure with hash keys and key tails counted.
* ``testbed`` (root only; builds and removes its own ``qkb-`` testbed):
  UDP goodput site A -> site B through the two gateways versus the same
  path with plain kernel routing (ratio), and one-way latency p50/p99 at
  10 Mb/s offered load with and without gateways (added latency); then
  ``data_path_ab``: gateway pairs with the batched data path (the default,
  :mod:`qkdmeet.vpn.pump`) and with the per-packet one taking turns at the
  highest offered load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qkdmeet.vpn.constants import KEY_MASK_BYTES, REFERENCE_PACKET_BYTES, TYPE_DATA
from qkdmeet.vpn.gateway import Gateway, GatewayKeys, payload_per_key_byte
from qkdmeet.vpn.memkeys import MemoryKeyPair
from qkdmeet.vpn.transport import FakeBindPair
from qkdmeet.vpn.tun import FakeTun
from qkdmeet.vpn.wire import TYPE_AT, key_id_of

KEY_BITS = 8 << 20  # 1 MiB keys


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _ip_packet(size: int) -> bytes:
    return struct.pack("!BBH", 0x45, 0, size) + os.urandom(size - 4)


async def _until(cond: Callable[[], bool], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while True:
        if cond():
            return
        if time.monotonic() > deadline:
            raise RuntimeError("benchmark set-up did not converge")
        await asyncio.sleep(0.01)


async def _data_path_once(size: int, packets: int) -> dict[str, float]:
    keys = MemoryKeyPair("A", "B")
    binds = FakeBindPair()
    tun_a, tun_b = FakeTun(), FakeTun()
    prefetch = (packets + 64) * (size + 64) + KEY_BITS // 4
    a = Gateway(tun=tun_a, bind=binds.a, keys=GatewayKeys(keys.supplier("A"), "A", "B",
                KEY_BITS, prefetch), name="A")
    b = Gateway(tun=tun_b, bind=binds.b, keys=GatewayKeys(keys.supplier("B"), "B", "A",
                KEY_BITS, KEY_BITS // 8), name="B")
    await a.start()
    await b.start()
    try:
        await _until(lambda: a.sender.buffered >= prefetch - KEY_BITS // 8)
        # warm-up round trip so that B holds A's keys, then time each side alone
        tun_a.inject(_ip_packet(size))
        await _until(lambda: bool(tun_b.written))
        captured: list[bytes] = []

        def capture(datagram: bytes) -> list[bytes]:
            captured.append(datagram)
            return []

        binds.a.tap = capture
        batch = [_ip_packet(size) for _ in range(64)]
        t0 = time.perf_counter()
        for _ in range(packets // 64):
            tun_a.inject(*batch)
        t_enc = time.perf_counter() - t0
        binds.a.tap = None
        data = [d for d in captured if d[TYPE_AT] == TYPE_DATA]
        deadline = time.monotonic() + 30
        while any(b.receiver.get(key_id_of(d)) is None for d in data[:: max(1, len(data) // 50)]):
            if time.monotonic() > deadline:
                raise RuntimeError("slave never got the master's keys")
            b.receiver.want(list({key_id_of(d) for d in data}))
            await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        for i in range(0, len(data), 64):
            binds.b.receive(data[i : i + 64], binds.a.addr)
        t_dec = time.perf_counter() - t0
        n = len(data)
        assert len(tun_b.written) == n + 1, "decrypt path dropped packets"
    finally:
        await a.stop()
        await b.stop()
    return {
        "encrypt_pps": n / t_enc,
        "encrypt_mbps": n * size * 8 / t_enc / 1e6,
        "decrypt_pps": n / t_dec,
        "decrypt_mbps": n * size * 8 / t_dec / 1e6,
        "per_packet_us_encrypt": t_enc / n * 1e6,
        "per_packet_us_decrypt": t_dec / n * 1e6,
    }


def _median_dicts(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in runs[0]:
        if isinstance(runs[0][k], dict):  # counters (drops by reason): summed over the runs
            total: dict[str, int] = {}
            for r in runs:
                for reason, n in (r.get(k) or {}).items():
                    total[reason] = total.get(reason, 0) + n
            out[k] = total
            continue
        vals = [r[k] for r in runs if isinstance(r.get(k), int | float)]
        out[k] = statistics.median(vals) if vals else None
    out["runs"] = len(runs)
    return out


async def _key_efficiency() -> dict[str, Any]:
    keys = MemoryKeyPair("A", "B")
    binds = FakeBindPair()
    tun_a, tun_b = FakeTun(), FakeTun()
    a = Gateway(tun=tun_a, bind=binds.a, keys=GatewayKeys(keys.supplier("A"), "A", "B",
                KEY_BITS, 4 << 20), name="A")
    b = Gateway(tun=tun_b, bind=binds.b, keys=GatewayKeys(keys.supplier("B"), "B", "A",
                KEY_BITS, KEY_BITS // 8), name="B")
    await a.start()
    await b.start()
    try:
        await _until(lambda: a.sender.buffered >= (4 << 20) - KEY_BITS // 8)
        pkt = _ip_packet(REFERENCE_PACKET_BYTES)
        for _ in range(3000 // 50):
            tun_a.inject(*[pkt] * 50)
            await asyncio.sleep(0)
        m = a.metrics.outbound  # before stop: the final partial key is not a cost yet
        used = {k: getattr(m, k) for k in ("payload_bytes", "key_pad_bytes", "key_mask_bytes",
                                            "key_hash_bytes", "key_discarded_bytes")}
        key_bytes = m.key_bytes
    finally:
        await a.stop()
        await b.stop()
    return {
        "packet_bytes": REFERENCE_PACKET_BYTES,
        "key_bytes_per_key": KEY_BITS // 8,
        "measured_payload_per_key_byte": used["payload_bytes"] / key_bytes,
        "model_payload_per_key_byte": payload_per_key_byte(REFERENCE_PACKET_BYTES, KEY_BITS // 8),
        "limit_otp_plus_tag": REFERENCE_PACKET_BYTES / (REFERENCE_PACKET_BYTES + KEY_MASK_BYTES),
        "key": used,
        "note": "key counts pad + tag masks + hash keys (32 B per key) + key tails skipped "
        "between keys; announce packets cost one mask each",
    }


# --- testbed -------------------------------------------------------------------------
def _probe(ns: str, *args: str, timeout: float = 60) -> dict[str, Any]:
    from qkdmeet.testbed import netns

    proc = netns.run_in(ns, [sys.executable, "-m", "qkdmeet.testbed.probe", *args],
                        timeout=timeout)
    result: dict[str, Any] = json.loads(proc.stdout.decode().splitlines()[-1])
    return result


def _cpu_totals() -> list[int]:
    """The machine's CPU time counters (/proc/stat: user ... steal)."""
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]


def _steal_fraction(before: list[int]) -> float | None:
    """Share of CPU time the hypervisor took from this VM since ``before`` (steal)."""
    after = _cpu_totals()
    delta = [b - a for a, b in zip(before, after, strict=False)]
    return round(delta[7] / sum(delta), 4) if len(delta) > 7 and sum(delta) > 0 else None


def _cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    return sum(_cpu_split(pid))


def _flow(topo: Any, seconds: float, size: int, mbps: float, port: int,
          gateways: dict[str, int] | None = None) -> dict[str, Any]:
    """One UDP flow site A -> site B; with ``gateways`` (side -> pid), also each
    gateway's CPU (s/s) over the flow and the goodput one gateway core carries
    (Mb/s divided by the busier gateway's CPU share)."""
    from qkdmeet.testbed import netns

    sink = netns.spawn(topo.b.lan_ns, [sys.executable, "-m", "qkdmeet.testbed.probe", "udp-sink",
                       str(port), "--seconds", str(seconds + 5), "--idle", "1.0"],
                       stdout=subprocess.PIPE)
    assert sink.stdout is not None
    sink.stdout.readline()
    drops0 = _gateway_drops(topo) if gateways else {}
    cpu0 = {side: _cpu_split(pid) for side, pid in (gateways or {}).items()}
    t0 = time.monotonic()
    sent = _probe(topo.a.lan_ns, "udp-load", topo.b.host_ip, str(port), "--seconds",
                  str(seconds), "--size", str(size), "--mbps", str(mbps))
    wall = time.monotonic() - t0
    split = {side: tuple((b - a) / wall for a, b in zip(cpu0[side], _cpu_split(pid),
                                                         strict=True))
             for side, pid in (gateways or {}).items()}
    cpu = {side: sum(v) for side, v in split.items()}
    out, _ = sink.communicate(timeout=seconds + 15)
    got: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
    if gateways:
        # where the packets the sink missed were dropped (by the gateways' counters)
        got["gateway_drops"] = _drops_between(drops0, _gateway_drops(topo))
    for side, share in cpu.items():
        got[f"gateway_{side}_cpu_s_per_s"] = share
        # user: the gateway's own work (Python, numba); system: its system calls
        # *and* the kernel's forwarding that runs on their way (softirqs on the
        # veth/TUN path of this one-machine testbed are charged to whoever is on
        # the CPU)
        got[f"gateway_{side}_user_s_per_s"] = split[side][0]
        got[f"gateway_{side}_system_s_per_s"] = split[side][1]
    if cpu:
        busiest = max(cpu.values())
        got["mbps_per_gateway_core"] = got["mbps"] / busiest if busiest > 0 else None
        user = max(v[0] for v in split.values())
        got["mbps_per_gateway_user_core"] = got["mbps"] / user if user > 0 else None
    got["offered_packets"] = sent["sent"]
    got["loss"] = 1 - got["packets"] / sent["sent"] if sent["sent"] else None
    return got


def _gateway_drops(topo: Any) -> dict[str, dict[str, int]]:
    """Each gateway's drop counters ("a:tx", "a:rx", ...), from its /metrics.json."""
    from qkdmeet.testbed import netns

    out: dict[str, dict[str, int]] = {}
    for side, site in (("a", topo.a), ("b", topo.b)):
        code = ("import urllib.request;print(urllib.request.urlopen("
                f"'http://{site.gw_lan_ip}:9180/metrics.json',timeout=5).read().decode())")
        try:
            proc = netns.run_in(site.gw_ns, [sys.executable, "-c", code], timeout=15)
            metrics = json.loads(proc.stdout.decode())
        except Exception:  # a gateway without its endpoint: no counters, not a failure
            continue
        for way, key in (("tx", "outbound"), ("rx", "inbound")):
            out[f"{side}:{way}"] = dict(metrics.get(key, {}).get("drops", {}))
    return out


def _drops_between(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
                   ) -> dict[str, int]:
    """The drops counted between two :func:`_gateway_drops` readings, non-zero only."""
    got = {}
    for where, counts in after.items():
        for reason, n in counts.items():
            d = n - before.get(where, {}).get(reason, 0)
            if d:
                got[f"{where}:{reason}"] = d
    return got


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _testbed(runs: int, seconds: float, size: int, offered: list[float]) -> dict[str, Any]:
    ab_mbps = max(offered)  # the A/B's offered load: the sweep's highest
    from qkdmeet.testbed.topology import Topology
    from qkdmeet.vpn.filekeys import fill, pooled_bytes

    result: dict[str, Any] = {}
    cpu_before = _cpu_totals()
    routed = Topology("qkb-", mode="routed")
    routed.down()
    try:
        routed.up()
        # path without gateways: kernel routing lana -> gwa -> wan -> gwb -> lanb
        from qkdmeet.testbed import netns

        netns.route(routed.a.gw_ns, routed.b.lan_subnet, routed.a.relay_ip)
        netns.route(routed.b.gw_ns, routed.a.lan_subnet, routed.b.relay_ip)
        netns.route(routed.wan, routed.a.lan_subnet, routed.a.gw_wan_ip)
        netns.route(routed.wan, routed.b.lan_subnet, routed.b.gw_wan_ip)
        _log("plain routing: throughput and latency")
        base = [_flow(routed, seconds, size, 0, 7100 + i) for i in range(runs)]
        base_lat = [_flow(routed, seconds, REFERENCE_PACKET_BYTES, 10, 7200 + i)
                    for i in range(runs)]
        for ns, dest in ((routed.a.gw_ns, routed.b.lan_subnet), (routed.b.gw_ns,
                         routed.a.lan_subnet), (routed.wan, routed.a.lan_subnet),
                         (routed.wan, routed.b.lan_subnet)):
            netns.ip("route", "del", dest, ns=ns)
        keys = routed.run_dir / "keys"

        def top_up(mbps: float) -> None:
            """Pre-fill enough key for one flow (at most 1 Gb/s) plus the gateway's prefetch."""
            need = int(seconds * min(mbps or 1000.0, 1000.0) * 1e6 / 8 * 1.2) + (96 << 20)
            for m, s in (("gw-a", "gw-b"), ("gw-b", "gw-a")):
                have = pooled_bytes(keys, m, s)
                if have < need:
                    fill(keys, m, s, nbytes=need - have, key_bytes=1 << 20)

        top_up(10)
        gws = [routed.start_gateway(side, routed.gateway_config(
            side, keys, key_size_bits=8 << 20, prefetch_bytes=64 << 20)) for side in ("a", "b")]
        try:
            time.sleep(2)
            _log("through the gateways: throughput and latency")
            _probe(routed.a.lan_ns, "ping", routed.b.host_ip, "--count", "2")
            sweep = {}
            for j, rate in enumerate(offered):
                _log(f"  offered {rate or 'max'} Mb/s")
                flows = []
                for i in range(runs):
                    top_up(rate)
                    flows.append(_flow(routed, seconds, size, rate, 7300 + 10 * j + i,
                                       {"a": gws[0].pid, "b": gws[1].pid}))
                sweep[str(rate or "max")] = _median_dicts(flows)
            tun_lat = []
            for i in range(runs):
                top_up(10)
                tun_lat.append(_flow(routed, seconds, REFERENCE_PACKET_BYTES, 10, 7400 + i,
                                     {"a": gws[0].pid, "b": gws[1].pid}))
        finally:
            for g in gws:
                g.terminate()
                g.wait(timeout=10)
        # the batched data path (default) against the per-packet Python path: the
        # same maximal flow, the two kinds of gateway pair taking turns so that
        # both see the same moments of this shared machine
        _log("data path A/B: batched and per-packet gateways, in turns")
        batched: list[dict[str, Any]] = []
        per_packet: list[dict[str, Any]] = []
        for i in range(runs):
            for path, into in (("per-packet", per_packet), ("batched", batched)):
                gws = [routed.start_gateway(side, routed.gateway_config(
                    side, keys, key_size_bits=8 << 20, prefetch_bytes=64 << 20,
                    data_path=path)) for side in ("a", "b")]
                try:
                    time.sleep(1)
                    top_up(0)
                    port = 7500 + 2 * i + (path == "batched")
                    into.append(_flow(routed, seconds, size, ab_mbps, port,
                                      {"a": gws[0].pid, "b": gws[1].pid}))
                finally:
                    for g in gws:
                        g.terminate()
                        g.wait(timeout=10)
        fast, slow = _median_dicts(batched), _median_dicts(per_packet)
        b_med = _median_dicts(base)
        t_med = max(sweep.values(), key=lambda r: float(r["mbps"] or 0.0))
        bl, tl = _median_dicts(base_lat), _median_dicts(tun_lat)
        result = {
            "packet_bytes": size,
            "plain_routing": b_med,
            "tunnel_by_offered_mbps": sweep,
            "tunnel_best_mbps": t_med["mbps"],
            "tunnel_mbps_per_gateway_core": max(
                (float(r.get("mbps_per_gateway_core") or 0.0) for r in sweep.values()),
                default=None),
            "tunnel_mbps_per_gateway_user_core": max(
                (float(r.get("mbps_per_gateway_user_core") or 0.0) for r in sweep.values()),
                default=None),
            "cpu_note": "load generator, sink and both gateways share the machine's 2 cores; "
            "mbps_per_gateway_core = goodput / the busier gateway's CPU share: what one "
            "dedicated core per gateway (one machine per site) would carry",
            "throughput_ratio": t_med["mbps"] / b_med["mbps"] if b_med["mbps"] else None,
            "data_path_ab": {
                "offered_mbps": ab_mbps,
                "batched_mbps": fast["mbps"],
                "per_packet_mbps": slow["mbps"],
                "ratio": fast["mbps"] / slow["mbps"] if slow["mbps"] else None,
                "batched_mbps_per_gateway_user_core": fast.get("mbps_per_gateway_user_core"),
                "per_packet_mbps_per_gateway_user_core": slow.get("mbps_per_gateway_user_core"),
                "runs": runs,
            },
            # time the hypervisor took from this VM during the testbed runs
            "cpu_steal_fraction": _steal_fraction(cpu_before),
            "latency_10mbps": {
                "plain_us_p50": bl["latency_us_p50"], "plain_us_p99": bl["latency_us_p99"],
                "tunnel_us_p50": tl["latency_us_p50"], "tunnel_us_p99": tl["latency_us_p99"],
                "added_us_p50": _minus(tl["latency_us_p50"], bl["latency_us_p50"]),
                "added_us_p99": _minus(tl["latency_us_p99"], bl["latency_us_p99"]),
                "tunnel_loss": tl["loss"],
                "tunnel_gateway_drops": tl.get("gateway_drops"),
            },
        }
    finally:
        routed.down()
    return result


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="qkdmeet bench vpn")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0, help="per testbed flow")
    p.add_argument("--packets", type=int, default=20000, help="per data-path run")
    p.add_argument("--size", type=int, default=1400, help="testbed throughput packet size")
    p.add_argument("--offered", default="0,400,250",
                   help="offered loads in Mb/s for the tunnel (0: as fast as the sender can)")
    p.add_argument("--no-testbed", action="store_true")
    args = p.parse_args(argv)
    out: dict[str, Any] = {"note": "medians; shared, noisy machine"}
    dp: dict[str, Any] = {}
    for size in (REFERENCE_PACKET_BYTES, 1400):
        _log(f"data path at {size} bytes")
        dp[str(size)] = _median_dicts(
            [asyncio.run(_data_path_once(size, args.packets)) for _ in range(args.runs)]
        )
    out["data_path"] = dp
    _log("key efficiency")
    out["key_efficiency"] = asyncio.run(_key_efficiency())
    if args.no_testbed:
        out["testbed"] = None
    elif os.geteuid() != 0:
        out["testbed"] = {"skipped": "needs root"}
    else:
        offered = [float(x) for x in args.offered.split(",") if x.strip()]
        out["testbed"] = _testbed(args.runs, args.seconds, args.size, offered)
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))
    return 0
