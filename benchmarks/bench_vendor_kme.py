"""Gateways against our KME set to behave like a vendor's: 256-bit keys, <= 10 per request.

Two ``qkdmeet kme serve`` processes on loopback (mutual TLS, pre-filled
stores), configured ``key_size = min_key_size = max_key_size = 256`` and
``max_key_per_request = 10``. Prints one JSON object:

* ``etsi``: the ETSI 014 request rate one master reaches against KME A at
  256 bits x 10 keys (``--in-flight`` requests in flight): requests/s, keys/s
  and Mb/s of key (each request also costs KME A a peer round trip to KME B);
* ``vendor_like_in_memory``: the same tunnel against an in-memory KME with
  the same limits and ``--sim-latency-ms`` per request (what the gateways'
  pipeline reaches when the KME is not the bottleneck);
* ``tunnel``: two gateways (in this process, in-memory TUN and WAN) whose ETSI
  clients negotiate with those KMEs (key groups of 87 x 256 bits, requests
  pipelined), traffic offered both ways at ``--payload-mbps`` for
  ``--seconds``: key consumed and fetched per direction (Mb/s), drops by
  reason, payload per key byte, and whether the accounting identity closes.
  ``key_fetched_mbps`` is what the KMEs fed (the gateway's buffer does not
  count); the figure of issue 14 is >= 1.6 Mb/s per direction with 0 drops.

Usage: ``python benchmarks/bench_vendor_kme.py [--seconds 15] [--payload-mbps 1.0]``.
The machine is shared; figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import struct
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from qkdmeet.bench.kme import Processes, client, prefill
from qkdmeet.kme.client import KmeBadRequest
from qkdmeet.kme.pair import write_pair
from qkdmeet.kme.types import Key, KeyStatus
from qkdmeet.report.identity import site_identity
from qkdmeet.vpn.gateway import Gateway, GatewayKeys
from qkdmeet.vpn.keygroups import GroupingSupplier
from qkdmeet.vpn.memkeys import MemoryKeyPair
from qkdmeet.vpn.transport import FakeBindPair
from qkdmeet.vpn.tun import FakeTun

VENDOR = {"key_size": 256, "min_key_size": 256, "max_key_size": 256, "max_key_per_request": 10}
SITES = (("a", "b"), ("b", "a"))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ip_packet(n: int) -> bytes:
    return struct.pack("!BBH", 0x45, 0, n) + bytes(16) + os.urandom(n - 20)


async def etsi_rate(files: Any, seconds: float, in_flight: int) -> dict[str, Any]:
    async with client(files, "a") as m:
        st = await m.status("SAE-B")
        n, size = st.max_key_per_request, st.max_key_size
        done = 0
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                await m.enc_keys("SAE-B", n, size)
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        dt = time.perf_counter() - t0
    return {
        "key_size_bits": size,
        "keys_per_request": n,
        "in_flight": in_flight,
        "requests_per_s": round(done / dt, 1),
        "keys_per_s": round(done * n / dt, 1),
        "mbit_per_s": round(done * n * size / dt / 1e6, 3),
    }


async def kme_metrics(files: Any, site: str) -> dict[str, Any]:
    import aiohttp

    from qkdmeet.kme.tls import client_context

    d = files.directory
    ctx = client_context(d / f"sae-{site}.pem", d / f"sae-{site}.key", d / "ca.pem")
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s,
        s.get(f"https://127.0.0.1:{files.ports[site]}/api/v1/metrics") as r,
    ):
        data: dict[str, Any] = await r.json()
        return data


class VendorLikeKme:
    """An in-memory KME with a vendor's limits and a round trip: 256-bit keys, <= 10
    per request (anything else answers 400), ``latency_s`` per request. Shows what
    the gateways' request pipeline reaches when the KME is not the bottleneck."""

    def __init__(self, inner: Any, latency_s: float) -> None:
        self.inner = inner
        self.latency_s = latency_s

    async def status(self, slave: str) -> KeyStatus:
        st = await self.inner.status(slave)
        return replace(st, key_size=256, min_key_size=256, max_key_size=256,
                       max_key_per_request=10)

    async def enc_keys(self, slave: str, number: int, size_bits: int) -> list[Key]:
        if size_bits != 256 or not 1 <= number <= 10:
            raise KmeBadRequest(f"size {size_bits} / number {number} out of limits")
        await asyncio.sleep(self.latency_s)
        keys: list[Key] = await self.inner.enc_keys(slave, number, size_bits)
        return keys

    async def dec_keys(self, master: str, ids: Any) -> list[Key]:
        if not 1 <= len(ids) <= 10:
            raise KmeBadRequest(f"{len(ids)} key IDs out of limits")
        await asyncio.sleep(self.latency_s)
        keys: list[Key] = await self.inner.dec_keys(master, ids)
        return keys


async def tunnel(files: Any, seconds: float, payload_mbps: float, in_flight: int,
                 prefetch: int, latency_s: float | None = None) -> dict[str, Any]:
    """The tunnel phase against the KME pair ``files`` or, with ``latency_s``, against
    :class:`VendorLikeKme` in memory."""
    binds = FakeBindPair()
    tuns = {"a": FakeTun(), "b": FakeTun()}
    mem = MemoryKeyPair("SAE-A", "SAE-B")
    async with AsyncExitStack() as stack:
        sup = {}
        for s, _ in SITES:
            if latency_s is None:
                etsi: Any = await stack.enter_async_context(client(files, s, retries=0))
            else:
                etsi = VendorLikeKme(mem.supplier(f"SAE-{s.upper()}"), latency_s)
            sup[s] = GroupingSupplier(etsi, in_flight=in_flight)
        gws = {
            s: Gateway(tun=tuns[s], bind=getattr(binds, s), name=s, batched=False,
                       keys=GatewayKeys(sup[s], f"SAE-{s.upper()}", f"SAE-{o.upper()}",
                                        8 * 65536, prefetch))
            for s, o in SITES
        }
        # key the KMEs delivered before this phase (the etsi phase's master)
        base = {s: (await kme_metrics(files, s)).get("delivered_bits_per_sae", {})
                for s, _ in SITES} if latency_s is None else {}
        for g in gws.values():
            await g.start()
        try:
            t_wait = time.perf_counter()
            while not all(g.sender.buffered >= prefetch // 2 for g in gws.values()):
                if time.perf_counter() - t_wait > 60:
                    raise RuntimeError("gateways got no key")
                await asyncio.sleep(0.05)
            log(f"tunnel: first key after {time.perf_counter() - t_wait:.2f} s")

            start = {s: (g.metrics.outbound.key_bytes, g.metrics.outbound.key_arrived_bytes)
                     for s, g in gws.items()}
            rng = random.Random(1)
            sizes = [1200] * 6 + [1380] * 2 + [200, 120]  # video-like mix
            tick = 0.01
            budget = {"a": 0.0, "b": 0.0}
            sent = {"a": 0, "b": 0}
            t0 = time.perf_counter()
            last = t0
            while (now := time.perf_counter()) - t0 < seconds:
                for s, _ in SITES:
                    budget[s] += payload_mbps * 1e6 / 8 * (now - last)
                    pkts = []
                    while budget[s] > 0:
                        n = rng.choice(sizes)
                        budget[s] -= n
                        pkts.append(ip_packet(n))
                    if pkts:
                        tuns[s].inject(*pkts)
                        sent[s] += len(pkts)
                last = now
                await asyncio.sleep(tick)
            dt = time.perf_counter() - t0
            await asyncio.sleep(1.0)  # let the last packets land
            out: dict[str, Any] = {"seconds": round(dt, 2), "offered_payload_mbps": payload_mbps,
                                   "prefetch_bytes": prefetch, "in_flight": in_flight}
            for s, o in SITES:
                m = gws[s].metrics.outbound
                used0, arrived0 = start[s]
                out[f"{s}->{o}"] = {
                    "key_consumed_mbps": round((m.key_bytes - used0) * 8 / dt / 1e6, 3),
                    "key_fetched_mbps": round((m.key_arrived_bytes - arrived0) * 8 / dt / 1e6, 3),
                    "packets_sent": sent[s],
                    "packets_received": len(tuns[o].written),
                    "drops_out": dict(m.drops),
                    "drops_in": dict(gws[o].metrics.inbound.drops),
                    "payload_per_key_byte": round(m.payload_bytes / max(1, m.key_bytes), 3),
                    "etsi_requests": sup[s].requests,
                    "etsi_request_errors": sup[s].request_errors,
                    "etsi_errors_by_kind": dict(sup[s].errors_by_kind),
                    "max_in_flight": sup[s].max_in_flight_seen,
                    "key_group": {"etsi_bits": p.etsi_bits, "members": p.members}
                    if (p := sup[s].plan_for(f"SAE-{o.upper()}")) else None,
                }
            # the identity, at rest: prefetch refilled, nothing under way
            for _ in range(400):
                if all(sup[s].in_flight == 0 and g.sender.buffered >= prefetch - g.sender.key_bytes
                       for s, g in gws.items()):
                    break
                await asyncio.sleep(0.05)
            ident = []
            for s, _ in SITES if latency_s is None else ():
                snap = await kme_metrics(files, s)
                snap["delivered_bits_per_sae"] = {
                    k: v - base[s].get(k, 0) for k, v in snap["delivered_bits_per_sae"].items()}
                ident.append(site_identity(s, f"SAE-{s.upper()}", snap,
                                           gws[s].metrics.as_dict()).as_dict())
            out["key_identity"] = ident
            out["key_identity_closes"] = all(i["closes"] for i in ident) if ident else None
        finally:
            for g in gws.values():
                await g.stop()
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="qkdmeet-vendor-") as tmp:
        files = write_pair(Path(tmp), **VENDOR)
        need = int(2 * args.seconds * 4e6 / 8) + (256 << 20) // 8
        prefill(files, max(need, 16 << 20))
        procs = Processes(files)
        await procs.start("a")
        await procs.start("b")
        try:
            for s, o in SITES:
                async with client(files, s) as c:
                    await procs.wait_ready(c, f"SAE-{o.upper()}")
            log("KMEs up (256-bit keys, <= 10 per request)")
            rate = await etsi_rate(files, args.etsi_seconds, args.in_flight)
            log(f"etsi: {rate}")
            tun = await tunnel(files, args.seconds, args.payload_mbps, args.in_flight,
                               args.prefetch)
            log("tunnel against our KMEs done")
        finally:
            await procs.stop()
    sim = await tunnel(None, args.seconds, args.sim_payload_mbps, args.in_flight, args.prefetch,
                       latency_s=args.sim_latency_ms / 1000)
    sim_dirs = [sim[f"{s}->{o}"] for s, o in SITES]
    dirs = [tun[f"{s}->{o}"] for s, o in SITES]
    return {
        "benchmark": "vendor_kme",
        "kme": VENDOR,
        "etsi": rate,
        "tunnel": tun,
        "target_key_mbps_per_direction": 1.6,
        "target_met": all(d["key_fetched_mbps"] >= 1.6 and not d["drops_out"]
                          and not d["drops_in"] for d in dirs),
        "vendor_like_in_memory": {
            "latency_ms_per_request": args.sim_latency_ms,
            "tunnel": sim,
            "target_met": all(d["key_fetched_mbps"] >= 1.6 and not d["drops_out"]
                              and not d["drops_in"] for d in sim_dirs),
        },
        "cpus": os.cpu_count(),
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--etsi-seconds", type=float, default=5.0)
    ap.add_argument("--payload-mbps", type=float, default=1.0,
                    help="payload offered per direction")
    ap.add_argument("--in-flight", type=int, default=16)
    ap.add_argument("--sim-latency-ms", type=float, default=5.0,
                    help="round trip of the in-memory vendor-like KME")
    ap.add_argument("--sim-payload-mbps", type=float, default=1.4)
    ap.add_argument("--prefetch", type=int, default=256 * 1024)
    args = ap.parse_args(argv)
    print(json.dumps(asyncio.run(run(args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
