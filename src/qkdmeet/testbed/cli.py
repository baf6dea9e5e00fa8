"""``qkdmeet testbed up|down|status|impair|relay``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from qkdmeet.signals import wait_for_stop_signal
from qkdmeet.testbed.netns import NetnsError
from qkdmeet.testbed.topology import Topology
from qkdmeet.testbed.wanrelay import Impairment, WanRelay, control_request


def _topology(args: argparse.Namespace) -> Topology:
    return Topology(args.prefix, mode=getattr(args, "mode", "relay"))


def _up(args: argparse.Namespace) -> int:
    topo = _topology(args)
    try:
        made = topo.up(capture=args.capture)
        if made and args.gateways:
            from qkdmeet.vpn.filekeys import fill

            keys = topo.run_dir / "keys"
            for m, s in (("gw-a", "gw-b"), ("gw-b", "gw-a")):
                fill(keys, m, s, nbytes=args.key_bytes, key_bytes=65536)
            for side in ("a", "b"):
                topo.start_gateway(side, topo.gateway_config(side, keys))
    except NetnsError as exc:
        print(f"qkdmeet testbed up: {exc}", file=sys.stderr)
        return 1
    print("testbed up" if made else "testbed already up")
    return 0


def _down(args: argparse.Namespace) -> int:
    _topology(args).down()
    print("testbed down")
    return 0


def _status(args: argparse.Namespace) -> int:
    st = _topology(args).status()
    print(json.dumps(st, indent=2))
    return 0 if st["up"] else 3


async def _impair(args: argparse.Namespace) -> int:
    values = {k: v for k in ("loss", "corrupt", "duplicate", "reorder", "delay_ms", "jitter_ms")
              if (v := getattr(args, k)) is not None}
    request: dict[str, Any] = {"set": values} if values else {"get": None}
    if args.stats:
        request["stats"] = None
    try:
        answer = await control_request(_topology(args).relay_control, request)
    except OSError as exc:
        print(f"qkdmeet testbed impair: relay not reachable: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0 if answer.get("ok") else 2


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def _relay(args: argparse.Namespace) -> int:
    relay = WanRelay(
        _address(args.a_listen), _address(args.a_peer),
        _address(args.b_listen), _address(args.b_peer),
        impairment=Impairment(), seed=args.seed,
        capture=Path(args.capture) if args.capture else None,
    )
    await relay.start()
    await relay.serve_control(Path(args.control))
    try:
        await wait_for_stop_signal()
    finally:
        await relay.stop()
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("testbed", help="two-site network namespaces with a WAN relay")
    p.add_argument("--prefix", default="qkm-", help="name prefix of everything made")
    sub = p.add_subparsers(dest="testbed_command", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="create the namespaces, links and WAN relay (idempotent)")
    up.add_argument("--mode", choices=("relay", "routed"), default="relay")
    up.add_argument("--capture", action="store_true", help="record WAN datagrams")
    up.add_argument("--gateways", action="store_true",
                    help="also start both gateways on a pre-filled file key store")
    up.add_argument("--key-bytes", type=int, default=256 << 20,
                    help="key per direction for --gateways (bytes)")
    up.set_defaults(func=_up)
    sub.add_parser("down", help="remove everything the testbed made").set_defaults(func=_down)
    sub.add_parser("status", help="JSON status").set_defaults(func=_status)
    imp = sub.add_parser("impair", help="show or change WAN impairments at run time")
    for name in ("loss", "corrupt", "duplicate", "reorder"):
        imp.add_argument(f"--{name}", type=float, help="probability 0..1")
    imp.add_argument("--delay-ms", dest="delay_ms", type=float)
    imp.add_argument("--jitter-ms", dest="jitter_ms", type=float)
    imp.add_argument("--stats", action="store_true", help="also print relay counters")
    imp.set_defaults(func=_impair)
    relay = sub.add_parser("relay", help="(internal) run the WAN relay in the foreground")
    for name in ("a-listen", "a-peer", "b-listen", "b-peer", "control"):
        relay.add_argument(f"--{name}", required=True)
    relay.add_argument("--capture")
    relay.add_argument("--seed", type=int)
    relay.set_defaults(func=_relay)
