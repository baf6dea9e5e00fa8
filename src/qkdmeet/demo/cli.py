"""``qkdmeet demo``: the field test's system on one machine (see :mod:`.runner`)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from qkdmeet.signals import on_stop_signals


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _distance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 200:
        raise argparse.ArgumentTypeError("must be between 0 and 200 km")
    return value


async def _demo(args: argparse.Namespace) -> int:
    from qkdmeet.demo.dashboard import Dashboard
    from qkdmeet.demo.preflight import check_demo_host
    from qkdmeet.demo.progress import Progress
    from qkdmeet.demo.runner import DemoOptions, DemoRunner
    from qkdmeet.demo.sites import PlanError, plan
    from qkdmeet.errors import DemoError
    from qkdmeet.report.tables import render_table

    missing = check_demo_host()
    if missing:
        print("qkdmeet demo: this host cannot run the demo; missing:", file=sys.stderr)
        for m in missing:
            print(f"  - {m}", file=sys.stderr)
        return 2
    try:
        the_plan = plan(args.prefix, args.distance_km, args.preset)
    except PlanError as exc:
        print(f"qkdmeet demo: {exc}", file=sys.stderr)
        return 2
    seconds = args.minutes * 60 if args.minutes is not None else args.seconds
    out = Path(args.out) if args.out else Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S")
    options = DemoOptions(seconds=seconds, scenario=args.scenario, out_dir=out,
                          quiet=args.quiet, adapt=not args.no_adapt,
                          dashboard_port=args.dashboard_port, host_join=args.host_join,
                          link=args.link)
    progress = Progress(quiet=args.quiet)
    try:
        runner = DemoRunner(the_plan, options, progress)
    except DemoError as exc:
        print(f"qkdmeet demo: {exc}", file=sys.stderr)
        return 2
    interrupts = 0

    def on_signal() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            progress.say("stopping (again to abort at once)...")
            runner.stop_requested.set()
        elif main_task is not None:
            main_task.cancel()

    main_task = asyncio.current_task()
    remove_signal_handlers = on_stop_signals(on_signal)
    dashboard = Dashboard(runner, args.dashboard_port) if args.dashboard_port else None
    try:
        if dashboard is not None:
            await dashboard.start()
            progress.say(f"dashboard at http://127.0.0.1:{dashboard.port}/")
        report = await runner.run()
    except DemoError as exc:
        print(f"qkdmeet demo: {exc}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        print("qkdmeet demo: aborted; testbed removed", file=sys.stderr)
        return 130
    finally:
        if dashboard is not None:
            await dashboard.stop()
        remove_signal_handlers()
    data: dict[str, Any] = report.as_dict()
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(render_table(report))
        for ident in data.get("key_identity", []):
            if "error" in ident:
                print(f"site {ident['site']}: accounting not available ({ident['error']})")
                continue
            print(f"site {ident['site'].upper()} key accounting: delivered "
                  f"{ident['delivered_bytes']} B = consumed {ident['consumed_bytes']} B + "
                  f"buffered {ident['buffered_bytes']} B: "
                  f"{'closes' if ident['closes'] else 'OFF BY ' + str(ident['difference_bytes'])}")
        audit = data.get("wan_audit")
        if audit:
            print(f"WAN audit: {audit['datagrams']} datagrams, {audit['key_ids']} key IDs, "
                  f"{audit['reused_key_bytes']} key bytes used twice, "
                  f"{audit['marker_hits']} with the plaintext marker: "
                  f"{'clean' if audit['clean'] else 'NOT CLEAN'}")
        print(f"report: {out / 'report.html'}")
    silent = silent_participants(data)
    for name in silent:
        print(f"qkdmeet demo: participant {name} received no audio: the conference did not "
              "run across the QKD-VPN (see the logs in the report directory)", file=sys.stderr)
    ok = data.get("key_identity_closes", False) and (data.get("wan_audit") or {}).get(
        "clean", True) and not silent
    return 0 if ok else 1


def silent_participants(data: dict[str, Any]) -> list[str]:
    """Participants of a conference run that received no audio at all (a failed run:
    the adaptation may pause video, never audio)."""
    if (data.get("settings") or {}).get("traffic") != "conference":
        return []
    return [str(p.get("name")) for p in data.get("participants") or []
            if not p.get("audio_frames_received")]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo", help="the whole system on one machine: QKD link, KMEs, VPN, conference",
        description="Builds the two-site testbed, runs the field test's expert panel across "
        "the QKD-VPN, prints the key-used table, tears everything down (root needed).",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--seconds", type=_positive, default=60.0, help="run length (default 60)")
    length.add_argument("--minutes", type=_positive, help="run length in minutes (39: the trial)")
    p.add_argument("--distance-km", type=_distance, default=7.0,
                   help="QKD fiber length (default 7, the Sendai link)")
    p.add_argument("--preset", default="toshiba", choices=("toshiba", "lim2014"))
    p.add_argument("--scenario", default="none",
                   choices=("none", "eavesdropper", "link-cut", "gateway-restart"))
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--out", help="report directory (default ./runs/demo-<timestamp>)")
    p.add_argument("--prefix", default="qkd-", help="testbed namespace prefix (default qkd-)")
    p.add_argument("--quiet", action="store_true", help="no live progress on stderr")
    p.add_argument("--no-adapt", action="store_true", help="no key-aware video cap")
    p.add_argument("--dashboard-port", type=int, default=0,
                   help="serve a live dashboard on 127.0.0.1:PORT (e.g. 8088)")
    p.add_argument("--link", default="qkd", choices=("qkd", "model"),
                   help="key source: qkd (default), the real-time QKD link, at the rate this "
                   "machine distils; model, a seeded stand-in at the modelled device's secure "
                   "key rate (not secret; shows the conference at the hardware's rate)")
    p.add_argument("--host-join", action="store_true",
                   help="put this host behind gateway B, so that a browser here joins the "
                   "conference as a remote participant across the QKD-VPN (adds a route to "
                   "site A's LAN 10.1.0.0/24 for the run)")
    p.set_defaults(func=_demo)
