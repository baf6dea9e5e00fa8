"""``qkdmeet qkd simulate|plot|transmitter|receiver``.

- ``simulate``: both ends in this process for ``--seconds`` of wall-clock
  time; ``--json`` prints one object (``secure_key_rate_bps``,
  ``model_secure_key_rate_bps``, ``sifted_rate_bps``, ``qber``,
  ``phase_error_bound``, ``ec_efficiency``, ``blocks``, ``aborted_blocks``,
  ``secure_bits``, ``ceiling_fraction`` of the infinite-key f = 1 rate, and
  more); otherwise progress on stderr and a summary.
- ``plot OUT.png``: secure key rate against fibre length, 0-150 km.
- ``transmitter --listen HOST:PORT`` / ``receiver --connect HOST:PORT``: one
  end each, over TCP; key blocks go to ``--out FILE`` (appended: block id
  u64, length u32, key bytes) and a line of JSON per block to stdout.

The pre-shared bootstrap secret of the networked ends: ``--psk-file FILE``
(raw bytes, at least 64 KiB recommended) or ``--psk HEX``; with
``--auth-state FILE`` the authentication key state survives a restart (the
secret is used only while that file does not exist).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import struct
import sys
import time
from pathlib import Path
from typing import Any

from qkdmeet.qkd.sink import KeyBlock
from qkdmeet.signals import wait_for_stop_signal


def _add_link_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="toshiba", help="toshiba (default) or lim2014")
    ch = p.add_mutually_exclusive_group()
    ch.add_argument("--loss-db", type=float, help="channel loss in dB (default: the preset's)")
    ch.add_argument("--distance-km", type=float, help="fibre length at 0.2 dB/km")
    p.add_argument(
        "--block-bits", type=float, default=None, help="sifted X bits per block (default 1e7)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed for a reproducible run")
    p.add_argument("--no-optimise", action="store_true", help="keep the preset's intensities")


def _params(args: argparse.Namespace) -> tuple[Any, Any]:
    from qkdmeet.qkd.link import DEFAULT_BLOCK_BITS, link_params
    from qkdmeet.qkd.protocol import ProtocolConfig

    block = int(args.block_bits) if args.block_bits else DEFAULT_BLOCK_BITS
    params = link_params(
        args.preset,
        loss_db=args.loss_db,
        distance_km=args.distance_km,
        block_bits=block,
        optimise=not args.no_optimise,
    )
    return params, ProtocolConfig(block_bits=block)


class _DigestSink:
    """Keeps each block's length and SHA-256 (the CLI compares both ends without storing key)."""

    def __init__(self) -> None:
        self.digests: dict[int, tuple[int, bytes]] = {}

    async def put(self, block: KeyBlock) -> None:
        self.digests[block.block_id] = (len(block.key), hashlib.sha256(block.key).digest())


async def simulate(
    params: Any,
    config: Any,
    seconds: float,
    *,
    eve: str | None = None,
    seed: int | None = None,
    realtime: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the link for ``seconds`` of wall-clock time and return its figures (JSON-ready)."""
    from qkdmeet.qkd.figures import json_ready
    from qkdmeet.qkd.link import QkdLink

    alice, bob = _DigestSink(), _DigestSink()
    link = QkdLink(params, config=config, sinks=(alice, bob), seed=seed, eve=eve,
                   realtime=realtime)  # fmt: skip
    stopped = None
    async with link:
        end = time.perf_counter() + seconds
        while (left := end - time.perf_counter()) > 0:
            await asyncio.sleep(min(left, 1.0))
            if link.failed is not None:  # e.g. the authentication key ran out
                stopped = f"{type(link.failed).__name__}: {link.failed}"
                break
            if progress:
                s = link.stats()
                print(
                    f"\r{s['elapsed_s']:6.1f} s  blocks {s['blocks']} (+{s['aborted_blocks']} "
                    f"aborted)  secure {s['secure_bits'] / 1e6:8.2f} Mbit  "
                    f"{s['secure_key_rate_bps'] / 1e6:6.2f} Mb/s  QBER {s['qber'] or math.nan:.4f}",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
        stats = link.stats()
    if progress:
        print(file=sys.stderr)
    common = sorted(set(alice.digests) & set(bob.digests))
    stats["blocks_compared"] = len(common)
    stats["keys_identical"] = all(alice.digests[i] == bob.digests[i] for i in common) and set(
        alice.digests
    ) == set(bob.digests)
    stats["eve"] = eve
    stats["stopped"] = stopped
    stats["processes"] = 1
    return json_ready(derived_figures(stats, params, config))  # type: ignore[no-any-return]


def derived_figures(stats: dict[str, Any], params: Any, config: Any) -> dict[str, Any]:
    """The figures both shapes of ``simulate`` add to the receiver's statistics."""
    ceiling = stats.get("asymptotic_key_rate_bps") or 0.0
    stats["ceiling_fraction"] = stats["secure_key_rate_bps"] / ceiling if ceiling > 0 else 0.0
    model = stats.get("model_secure_key_rate_bps") or 0.0
    stats["model_fraction"] = stats["secure_key_rate_bps"] / model if model > 0 else 0.0
    stats["device_fraction_processed"] = (
        stats.get("sampled_device_seconds", 0.0) / stats["elapsed_s"] if stats["elapsed_s"] else 0.0
    )
    stats["block_bits"] = config.block_bits
    stats["loss_db"] = params.loss_db
    stats["preset_params"] = {"mu": params.mu, "p_mu": params.p_mu, "q_x": params.q_x,
                              "eps_sec": params.eps_sec, "eps_cor": params.eps_cor}  # fmt: skip
    return stats


async def simulate_networked(
    args: argparse.Namespace, params: Any, config: Any, *, progress: bool = False
) -> dict[str, Any]:
    """``simulate`` with the two ends in processes of their own over TCP (the demo's shape)."""
    from qkdmeet.qkd.figures import json_ready
    from qkdmeet.qkd.networked import run_two_processes

    link_args = {
        "preset": args.preset,
        "loss_db": args.loss_db,
        "distance_km": args.distance_km,
        "block_bits": int(args.block_bits) if args.block_bits else None,
        "seed": args.seed,
        "no_optimise": bool(args.no_optimise),
    }
    rx_args = {"pipeline_depth": args.pipeline_depth}
    stats = await run_two_processes(
        link_args, args.seconds, eve=args.eve, progress=progress, receiver_args=rx_args
    )
    stats["stopped"] = (
        json.dumps(stats["process_errors"]) if stats.get("process_errors") else None
    )
    return json_ready(derived_figures(stats, params, config))  # type: ignore[no-any-return]


async def _simulate(args: argparse.Namespace) -> int:
    from qkdmeet.qkd.eve import parse_eve

    try:
        parse_eve(args.eve)
        params, config = _params(args)
    except ValueError as exc:
        print(f"qkdmeet qkd simulate: {exc}", file=sys.stderr)
        return 2
    if not (math.isfinite(args.seconds) and args.seconds > 0):
        print("qkdmeet qkd simulate: --seconds must be > 0", file=sys.stderr)
        return 2
    if args.in_process:
        stats = await simulate(
            params, config, args.seconds, eve=args.eve, seed=args.seed, progress=not args.json
        )
    else:
        stats = await simulate_networked(args, params, config, progress=not args.json)
    if args.json:
        print(json.dumps(stats))
    else:
        print(
            f"link: {args.preset}, {params.loss_db:.2f} dB ({params.distance_km:.1f} km), "
            f"blocks of {config.block_bits:.0e} sifted bits, eve: {args.eve or 'none'}\n"
            f"ran {stats['elapsed_s']:.1f} s, device time sampled "
            f"{stats['sampled_device_seconds']:.2f} s\n"
            f"blocks {stats['blocks']}, aborted {stats['aborted_blocks']} "
            f"{stats['abort_reasons'] or ''}\n"
            f"secure key {stats['secure_bits']} bits = "
            f"{stats['secure_key_rate_bps'] / 1e6:.3f} Mb/s (model "
            f"{(stats.get('model_net_key_rate_bps') or 0.0) / 1e6:.3f} Mb/s net of "
            f"authentication ({(stats.get('model_auth_share') or 0.0):.2%} of the gross "
            f"{stats['model_secure_key_rate_bps'] / 1e6:.3f} Mb/s) at the device clock, "
            f"{stats['ceiling_fraction']:.1%} of the infinite-key ceiling)\n"
            f"sifted {stats['sifted_rate_bps'] / 1e6:.3f} Mb/s, QBER {stats['qber']}, "
            f"phase-error bound {stats['phase_error_bound']}, f_EC {stats['ec_efficiency']}\n"
            f"auth key spent {stats['auth_key_spent_bits']} bits; both ends' keys identical: "
            f"{stats['keys_identical']}"
        )
    if stats["stopped"]:
        print(f"qkdmeet qkd simulate: the link stopped early: {stats['stopped']}", file=sys.stderr)
    return 0 if stats["keys_identical"] and not stats["stopped"] else 1


def _plot(args: argparse.Namespace) -> int:
    from qkdmeet.qkd.rate_curve import main

    argv = [args.output, "--max-km", str(args.max_km), "--step-km", str(args.step_km)]
    for p in args.preset or ():
        argv += ["--preset", p]
    if args.json:
        argv.append("--json")
    return main(argv)


# -- networked ends ------------------------------------------------------------------


class FileSink:
    """Appends blocks to a file (block id u64, length u32, key) and prints a JSON line each."""

    def __init__(self, path: Path | None, *, quiet: bool = False) -> None:
        self.path = path
        self.quiet = quiet
        self.blocks = 0

    async def put(self, block: KeyBlock) -> None:
        if self.path is not None:
            with self.path.open("ab") as f:
                f.write(struct.pack("<QI", block.block_id, len(block.key)) + block.key)
        self.blocks += 1
        if not self.quiet:
            from qkdmeet.qkd.figures import json_ready

            line = {"block_id": block.block_id, "bits": block.bits, "qber": block.qber,
                    "sha256": hashlib.sha256(block.key).hexdigest()}  # fmt: skip
            print(json.dumps(json_ready(line)), flush=True)


def read_key_file(path: Path) -> list[tuple[int, bytes]]:
    """The blocks a :class:`FileSink` wrote."""
    data = path.read_bytes()
    out, off = [], 0
    while off + 12 <= len(data):
        bid, n = struct.unpack_from("<QI", data, off)
        out.append((bid, data[off + 12 : off + 12 + n]))
        off += 12 + n
    return out


def load_secret(psk: str | None, psk_file: str | None) -> bytes:
    """The pre-shared bootstrap secret from hex or a file; ValueError when missing or bad."""
    if psk_file:
        return Path(psk_file).read_bytes()
    if psk:
        try:
            return bytes.fromhex(psk)
        except ValueError:
            raise ValueError("--psk must be hex") from None
    raise ValueError("a pre-shared secret is needed: --psk-file FILE or --psk HEX")


async def _wait_signal_or(seconds: float | None) -> None:
    """Until SIGTERM or SIGINT, or ``seconds`` (None: no limit)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wait_for_stop_signal()


async def _node(args: argparse.Namespace) -> int:
    from qkdmeet.qkd.figures import json_ready
    from qkdmeet.qkd.nodes import ReceiverNode, TransmitterNode

    try:
        params, config = _params(args)
        secret = load_secret(args.psk, args.psk_file)
        sink = FileSink(Path(args.out) if args.out else None, quiet=args.quiet)
        node: TransmitterNode | ReceiverNode
        if args.qkd_command == "transmitter":
            node = TransmitterNode(params, args.listen, sink, secret, config=config,
                                   seed=args.seed, eve=args.eve,
                                   auth_state=args.auth_state)  # fmt: skip
        else:
            node = ReceiverNode(params, args.connect, sink, secret, config=config,
                                seed=args.seed, auth_state=args.auth_state,
                                pipeline_depth=args.pipeline_depth)  # fmt: skip
    except (ValueError, OSError) as exc:
        print(f"qkdmeet qkd {args.qkd_command}: {exc}", file=sys.stderr)
        return 2
    await node.start()
    print(f"qkd {args.qkd_command} running", file=sys.stderr, flush=True)
    try:
        await _wait_signal_or(args.seconds)
    finally:
        await node.stop()
        if args.stats:
            print(json.dumps(json_ready(node.stats())), file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    from qkdmeet.qkd.params import DEFAULT_PIPELINE_DEPTH  # light: no numpy at CLI start

    qkd = subparsers.add_parser("qkd", help="the simulated QKD link")
    sub = qkd.add_subparsers(dest="qkd_command", required=True)

    sim = sub.add_parser("simulate", help="run both ends of the real-time link in this process")
    _add_link_args(sim)
    sim.add_argument("--seconds", type=float, default=10.0, help="wall-clock run time")
    sim.add_argument("--eve", default=None, help="intercept-resend:F or pns")
    sim.add_argument("--json", action="store_true", help="print one JSON object")
    sim.add_argument("--pipeline-depth", type=int, default=DEFAULT_PIPELINE_DEPTH,
                     help="blocks the receiver keeps in flight (default %(default)s)")  # fmt: skip
    sim.add_argument(
        "--in-process",
        action="store_true",
        help="both ends in this process (default: two processes over TCP, as in the demo)",
    )
    sim.set_defaults(func=_simulate)

    plot = sub.add_parser("plot", help="PNG of secure key rate against distance (0-150 km)")
    plot.add_argument("output")
    plot.add_argument("--max-km", type=float, default=150.0)
    plot.add_argument("--step-km", type=float, default=5.0)
    plot.add_argument("--preset", action="append")
    plot.add_argument("--json", action="store_true")
    plot.set_defaults(func=_plot)

    for name, flag, helptext in (
        ("transmitter", "--listen", "Alice's end: source and transmitter, listening on TCP"),
        ("receiver", "--connect", "Bob's end: connects to the transmitter"),
    ):
        node = sub.add_parser(name, help=helptext)
        _add_link_args(node)
        node.add_argument(flag, required=True, metavar="HOST:PORT")
        node.add_argument("--psk", help="pre-shared bootstrap secret (hex)")
        node.add_argument("--psk-file", help="pre-shared bootstrap secret (raw bytes)")
        node.add_argument("--out", help="append key blocks to this file")
        node.add_argument(
            "--auth-state", help="keep the authentication key state here (restarts go on from it)"
        )
        node.add_argument("--seconds", type=float, default=None, help="stop after this long")
        node.add_argument("--quiet", action="store_true", help="no JSON line per block")
        if name == "receiver":
            node.add_argument("--pipeline-depth", type=int, default=DEFAULT_PIPELINE_DEPTH,
                              help="blocks in flight at once (default %(default)s)")  # fmt: skip
        node.add_argument("--stats", action="store_true", help="print stats JSON at exit")
        if name == "transmitter":
            node.add_argument("--eve", default=None, help="intercept-resend:F or pns")
        node.set_defaults(func=_node)
