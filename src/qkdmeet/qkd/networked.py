"""Both ends of the link as separate processes over TCP on loopback: the demo's shape.

:func:`run_two_processes` starts ``qkdmeet qkd transmitter`` (the source and
Alice) and ``qkdmeet qkd receiver`` (Bob) with a fresh pre-shared secret,
reads the line each end prints per block (block id, bits, SHA-256 of the
key), stops both after ``seconds`` and returns the figures of
``qkdmeet qkd simulate --json``: the receiver's end statistics, the source's,
both ends' stage times and CPU seconds (from the kernel's accounting of each
child), the time to the first key, the rate after it (the warm-up: numba's
cache loads, the first block's sampling), and whether both ends hold the same
key under the same block ids.

Why processes and not threads: the two ends' Python glue (message coding,
Cascade's per-round bookkeeping, the event loops) holds the GIL; in one
process it serialises them, in two each end has an interpreter of its own,
as on the two sites of a real link.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qkdmeet.qkd.classical import DEFAULT_SECRET_BYTES

#: Seconds a child may take to print its statistics after SIGTERM.
STOP_GRACE_S = 20.0


@dataclass
class _End:
    role: str
    proc: asyncio.subprocess.Process
    blocks: dict[int, tuple[int, str]] = field(default_factory=dict)
    first_key_at: float | None = None
    times: list[tuple[float, int]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    stderr_tail: list[str] = field(default_factory=list)
    cpu_seconds: float = math.nan


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _link_argv(link_args: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for key, value in link_args.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


async def _read_blocks(end: _End, started: float) -> None:
    assert end.proc.stdout is not None
    async for raw in end.proc.stdout:
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        now = time.perf_counter() - started
        end.blocks[int(line["block_id"])] = (int(line["bits"]), str(line["sha256"]))
        end.times.append((now, int(line["bits"])))
        if end.first_key_at is None:
            end.first_key_at = now


async def _read_stderr(end: _End) -> None:
    assert end.proc.stderr is not None
    async for raw in end.proc.stderr:
        text = raw.decode("utf-8", "replace").rstrip()
        if text.startswith("{"):
            with contextlib.suppress(ValueError):
                end.stats = json.loads(text)
                continue
        end.stderr_tail = [*end.stderr_tail[-20:], text]


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


async def run_two_processes(
    link_args: dict[str, Any],
    seconds: float,
    *,
    eve: str | None = None,
    progress: bool = False,
    receiver_args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the link for ``seconds`` with each end in a process of its own (module docstring).

    ``link_args``: the link options of ``qkdmeet qkd transmitter`` by name
    (``preset``, ``loss_db``, ``distance_km``, ``block_bits``, ``seed``,
    ``no_optimise``).
    """
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="qkdmeet-link-") as tmp:
        psk = Path(tmp) / "psk.bin"
        psk.write_bytes(os.urandom(DEFAULT_SECRET_BYTES))
        psk.chmod(0o600)
        common = ["--psk-file", str(psk), "--stats", *_link_argv(link_args)]
        exe = [sys.executable, "-m", "qkdmeet", "qkd"]
        tx_argv = [*exe, "transmitter", "--listen", f"127.0.0.1:{port}", *common]
        if eve:
            tx_argv += ["--eve", eve]
        rx_argv = [*exe, "receiver", "--connect", f"127.0.0.1:{port}", *common,
                   *_link_argv(receiver_args or {})]  # fmt: skip
        pipe = asyncio.subprocess.PIPE
        started = time.perf_counter()
        cpu0 = _children_cpu()
        tx = _End("transmitter", await asyncio.create_subprocess_exec(
            *tx_argv, stdout=pipe, stderr=pipe))  # fmt: skip
        rx = _End("receiver", await asyncio.create_subprocess_exec(
            *rx_argv, stdout=pipe, stderr=pipe))  # fmt: skip
        readers = [asyncio.create_task(c) for c in (
            _read_blocks(tx, started), _read_blocks(rx, started),
            _read_stderr(tx), _read_stderr(rx))]  # fmt: skip
        try:
            end = started + seconds
            while (left := end - time.perf_counter()) > 0:
                await asyncio.sleep(min(left, 1.0))
                if tx.proc.returncode is not None or rx.proc.returncode is not None:
                    break
                if progress:
                    bits = sum(b for b, _ in rx.blocks.values())
                    el = time.perf_counter() - started
                    print(f"\r{el:6.1f} s  blocks {len(rx.blocks)}  secure {bits / 1e6:8.2f} "
                          f"Mbit  {bits / el / 1e6:6.2f} Mb/s", end="", file=sys.stderr,
                          flush=True)  # fmt: skip
            elapsed = time.perf_counter() - started
        finally:
            # the receiver first: the transmitter then sees its connection end
            for e in (rx, tx):
                if e.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        e.proc.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(e.proc.wait(), STOP_GRACE_S)
                    except TimeoutError:
                        e.proc.kill()
                        await e.proc.wait()
            await asyncio.gather(*readers, return_exceptions=True)
        if progress:
            print(file=sys.stderr)
        cpu = _children_cpu() - cpu0
    return _figures(tx, rx, elapsed, seconds, cpu)


def _figures(tx: _End, rx: _End, elapsed: float, seconds: float, cpu: float) -> dict[str, Any]:
    out: dict[str, Any] = dict(rx.stats)
    t, r = tx.stats, rx.stats
    for key in ("pulses_sent", "pulses_skipped", "device_seconds", "sampled_device_seconds",
                "sampling_seconds", "attacked_pulses", "attacked_blocks",
                "attacked_blocks_with_key", "eve", "cut"):  # fmt: skip
        if key in t:
            out[key] = t[key]
    stages_a = dict(t.get("stage_seconds", {}))
    sampling = stages_a.pop("sampling", math.nan)
    out["stage_seconds"] = {"sampling": sampling, "alice": stages_a,
                            "bob": dict(r.get("stage_seconds", {}))}  # fmt: skip
    out["alice_secure_bits"] = t.get("secure_bits", 0)
    out["alice"] = {k: t.get(k) for k in ("blocks", "aborted_blocks", "abort_reasons",
                                          "rejected_messages", "stale_messages")}  # fmt: skip
    out["elapsed_s"] = elapsed
    out["processes"] = 2
    bits = sum(b for b, _ in rx.blocks.values())
    out["secure_bits"] = bits
    out["secure_key_rate_bps"] = bits / elapsed if elapsed > 0 else 0.0
    first = rx.first_key_at
    out["time_to_first_key_s"] = first
    if first is not None and elapsed > first:
        after = sum(b for at, b in rx.times if at > first)
        out["secure_key_rate_after_warmup_bps"] = after / (elapsed - first)
    else:
        out["secure_key_rate_after_warmup_bps"] = 0.0
    common = sorted(set(tx.blocks) & set(rx.blocks))
    out["blocks_compared"] = len(common)
    identical = all(tx.blocks[i] == rx.blocks[i] for i in common)
    # blocks in flight at the stop: one end may hold the last few that the other lacks
    tail = set(tx.blocks) ^ set(rx.blocks)
    last = max(common, default=-1)
    out["keys_identical"] = bool(common) and identical and all(i > last for i in tail)
    out["blocks_only_one_end"] = len(tail)
    out["blocks_only_at"] = {"transmitter": sorted(set(tx.blocks) - set(rx.blocks)),
                             "receiver": sorted(set(rx.blocks) - set(tx.blocks))}  # fmt: skip
    out["blocks_differing"] = [i for i in common if tx.blocks[i] != rx.blocks[i]]
    out["cpu_seconds_both_ends"] = cpu
    out["cpu_share_both_ends"] = cpu / elapsed if elapsed > 0 else math.nan
    for name, e in (("transmitter", tx), ("receiver", rx)):
        if e.proc.returncode not in (0, None, -signal.SIGTERM):
            out.setdefault("process_errors", {})[name] = {
                "returncode": e.proc.returncode, "stderr": e.stderr_tail[-5:]}  # fmt: skip
    out["cpu_seconds"] = {"transmitter": t.get("cpu_seconds"), "receiver": r.get("cpu_seconds")}
    out["cpu_share"] = {
        k: (v / elapsed if isinstance(v, float) and elapsed > 0 else None)
        for k, v in out["cpu_seconds"].items()
    }
    out["requested_seconds"] = seconds
    return out
