"""KME benchmark: ``qkdmeet bench kme [--json]``.

Two ``qkdmeet kme serve`` processes on loopback over real mutual TLS, their
stores pre-filled with identical random blocks (standing in for the link).

* throughput: master SAE-A draws keys in requests of ``max_key_per_request``
  (128) keys, ``--concurrency`` requests in flight, for each key size in
  ``--sizes`` (1024 bits, the standard's example maximum, and 8192 bits: the
  cost is per key, so a one-time-pad consumer should ask for large keys);
* latency: sequential single-key ``enc_keys`` (256 bits), p50/p99;
* restart: sustained delivery while KME-A is killed with SIGKILL and
  restarted; then the slave fetches every key the master received. Reported:
  keys the master got that the slave cannot get (lost), keys delivered twice,
  and key bits spent by requests cut short by the kill (wasted, never delivered).

Each figure is the median of ``--runs`` runs; the machine is shared, so
figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from qkdmeet.kme import config as kconfig
from qkdmeet.kme.client import EtsiClient, KmeError
from qkdmeet.kme.pair import PairFiles, write_pair
from qkdmeet.kme.store import KeyStore
from qkdmeet.kme.types import Key


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Processes:
    """The two KME server processes of a pair."""

    def __init__(self, files: PairFiles) -> None:
        self.files = files
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    async def start(self, site: str) -> None:
        self.procs[site] = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "qkdmeet",
            "kme",
            "serve",
            "--config",
            str(self.files.configs[site]),
            stderr=asyncio.subprocess.DEVNULL,
        )

    async def wait_ready(self, client: EtsiClient, slave: str) -> None:
        for _ in range(300):
            with contextlib.suppress(KmeError, OSError):
                await client.status(slave)
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("KME did not start")

    async def kill(self, site: str) -> None:
        proc = self.procs.pop(site)
        proc.kill()
        await proc.wait()

    async def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        self.procs.clear()


def prefill(files: PairFiles, total_bytes: int, block_bytes: int = 262144) -> None:
    stores = [KeyStore(kconfig.load(files.configs[s]).db) for s in ("a", "b")]
    for i in range(total_bytes // block_bytes):
        data = os.urandom(block_bytes)
        for st in stores:
            st.add_block(i, data)
    for st in stores:
        st.close()


def client(files: PairFiles, site: str, retries: int = 0) -> EtsiClient:
    d = files.directory
    return EtsiClient(
        f"https://127.0.0.1:{files.ports[site]}",
        cert_file=d / f"sae-{site}.pem",
        key_file=d / f"sae-{site}.key",
        ca_file=d / "ca.pem",
        retries=retries,
    )


async def throughput(
    files: PairFiles, seconds: float, concurrency: int, size: int
) -> dict[str, float]:
    async with client(files, "a") as m:
        st = await m.status("SAE-B")
        n = st.max_key_per_request
        bits = 0
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal bits
            while time.perf_counter() < stop_at:
                keys = await m.enc_keys("SAE-B", n, size)
                bits += sum(k.size_bits for k in keys)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"mbit_per_s": bits / elapsed / 1e6, "keys_per_request": n, "key_size_bits": size}


async def latency(files: PairFiles, count: int) -> dict[str, float]:
    samples = []
    async with client(files, "a") as m:
        for _ in range(count):
            t0 = time.perf_counter()
            await m.enc_keys("SAE-B", 1, 256)
            samples.append((time.perf_counter() - t0) * 1e3)
    samples.sort()
    return {"p50_ms": samples[len(samples) // 2], "p99_ms": samples[int(len(samples) * 0.99)]}


async def restart(files: PairFiles, procs: Processes, seconds: float) -> dict[str, int]:
    await procs.stop()  # read the stores' state before the phase
    a = KeyStore(kconfig.load(files.configs["a"]).db)
    b = KeyStore(kconfig.load(files.configs["b"]).db)
    cursor0, held0 = a.cursor, b.held_count("SAE-A", "SAE-B")
    a.close()
    b.close()
    await procs.start("a")
    await procs.start("b")
    got: list[Key] = []
    failed = 0
    stop_at = time.perf_counter() + seconds
    async with client(files, "a", retries=0) as m:
        await procs.wait_ready(m, "SAE-B")

        async def worker() -> None:
            nonlocal failed
            while time.perf_counter() < stop_at:
                try:
                    got.extend(await m.enc_keys("SAE-B", 32, 256))
                except (KmeError, OSError):
                    failed += 1
                    await asyncio.sleep(0.02)

        async def killer() -> None:
            await asyncio.sleep(seconds / 3)
            await procs.kill("a")
            log("restart: KME-A killed with SIGKILL")
            await procs.start("a")

        await asyncio.gather(*(worker() for _ in range(4)), killer())
    await procs.stop()
    # count what the kill cut short from the stores themselves
    a = KeyStore(kconfig.load(files.configs["a"]).db)
    b = KeyStore(kconfig.load(files.configs["b"]).db)
    delivered_bytes = sum(len(k.key) for k in got)
    held_b = b.held_count("SAE-A", "SAE-B")
    allocated = a.cursor
    a.close()
    b.close()
    await procs.start("a")
    await procs.start("b")
    lost = 0
    async with client(files, "b", retries=5) as s:
        await procs.wait_ready(s, "SAE-A")
        for i in range(0, len(got), 64):
            chunk = got[i : i + 64]
            try:
                back = await s.dec_keys("SAE-A", [k.key_id for k in chunk])
                lost += sum(1 for x, y in zip(chunk, back, strict=True) if x != y)
            except KmeError:
                for k in chunk:
                    try:
                        await s.dec_keys("SAE-A", [k.key_id])
                    except KmeError:
                        lost += 1
    ids = {k.key_id for k in got}
    keys = {k.key for k in got}
    return {
        "keys_delivered": len(got),
        "keys_lost": lost,
        "keys_delivered_twice": (len(got) - len(ids)) + (len(got) - len(keys)),
        "failed_requests": failed,
        "orphaned_slave_keys": held_b - held0 - len(got),
        "wasted_bits": (allocated - cursor0 - delivered_bytes) * 8,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, list[dict[str, Any]]] = {"latency": [], "restart": []}
    for size in args.sizes:
        results[f"throughput_{size}"] = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="kme-bench-") as tmp:
            files = write_pair(Path(tmp), max_key_size=max(args.sizes))
            need = int(args.seconds * 600e6 / 8) + (32 << 20)
            prefill(files, need)
            procs = Processes(files)
            await procs.start("a")
            await procs.start("b")
            try:
                # both KMEs up: A's enc_keys holds key at B over the peer link
                async with client(files, "a") as ca, client(files, "b") as cb:
                    await procs.wait_ready(ca, "SAE-B")
                    await procs.wait_ready(cb, "SAE-A")
                for size in args.sizes:
                    results[f"throughput_{size}"].append(
                        await throughput(files, args.seconds, args.concurrency, size)
                    )
                results["latency"].append(await latency(files, args.latency_count))
                results["restart"].append(await restart(files, procs, args.seconds * 2))
            finally:
                await procs.stop()
            log(f"run {i + 1}/{args.runs}: {[r[-1] for r in results.values()]}")
    out: dict[str, Any] = {"runs": args.runs, "concurrency": args.concurrency}
    for section, rows in results.items():
        out[section] = (
            {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            if section != "restart"
            else {
                "keys_lost": max(r["keys_lost"] for r in rows),
                "keys_delivered_twice": max(r["keys_delivered_twice"] for r in rows),
                "keys_delivered": statistics.median(r["keys_delivered"] for r in rows),
                "orphaned_slave_keys": statistics.median(r["orphaned_slave_keys"] for r in rows),
                "wasted_bits": statistics.median(r["wasted_bits"] for r in rows),
            }
        )
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="qkdmeet bench kme")
    p.add_argument("--json", action="store_true")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--latency-count", type=int, default=200)
    p.add_argument(
        "--sizes",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1024, 8192],
        help="key sizes (bits) for the throughput runs; the largest is the KMEs' max_key_size",
    )
    args = p.parse_args(argv)
    out = asyncio.run(run(args))
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0
