"""``qkdmeet gateway ...``: run a QKD-VPN gateway; fill a file key store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from qkdmeet.vpn.config import ConfigError, load_config


async def _run(args: argparse.Namespace) -> int:
    from qkdmeet.vpn.daemon import run_gateway

    try:
        cfg = load_config(Path(args.config))
        return await run_gateway(cfg)
    except (ConfigError, OSError) as exc:
        print(f"qkdmeet gateway: {exc}", file=sys.stderr)
        return 2


def _fill(args: argparse.Namespace) -> int:
    from qkdmeet.vpn.filekeys import fill

    for master, slave in ((args.a, args.b), (args.b, args.a)):
        n = fill(Path(args.dir), master, slave, nbytes=args.bytes, key_bytes=args.key_bytes)
        print(f"{master} -> {slave}: {n} keys of {args.key_bytes} bytes")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("gateway", help="QKD-VPN gateway (one-time pad over TUN)")
    sub = p.add_subparsers(dest="gateway_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run a gateway until SIGTERM")
    run.add_argument("--config", required=True, help="gateway TOML file")
    run.set_defaults(func=_run)
    fill = sub.add_parser("fill-keys", help="pre-fill a file key store for two SAEs (testing)")
    fill.add_argument("--dir", required=True)
    fill.add_argument("--a", required=True, help="first SAE ID")
    fill.add_argument("--b", required=True, help="second SAE ID")
    fill.add_argument("--bytes", type=int, default=64 << 20, help="key bytes per direction")
    fill.add_argument("--key-bytes", type=int, default=65536, help="bytes per key")
    fill.set_defaults(func=_fill)
