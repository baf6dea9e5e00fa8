"""``qkdmeet kme serve|status|pair|audit`` and ``qkdmeet pki init``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

from qkdmeet.kme import pki
from qkdmeet.qkd.params import DEFAULT_BLOCK_BITS
from qkdmeet.signals import wait_for_stop_signal


async def _serve(args: argparse.Namespace) -> int:
    from qkdmeet.kme.config import load
    from qkdmeet.kme.server import KmeServer
    from qkdmeet.kme.simfeed import SeededLink
    from qkdmeet.kme.sink import StoreSink
    from qkdmeet.kme.store import KeyStore

    cfg = load(args.config)  # a ConfigError: one line from qkdmeet.cli, status 2
    store = KeyStore(cfg.db)
    server = KmeServer(cfg, store)
    await server.start()
    feed: asyncio.Task[None] | None = None
    if cfg.link is not None:
        link = SeededLink(
            StoreSink(store),
            cfg.link.seed,
            bits_per_second=cfg.link.bits_per_second,
            block_bytes=cfg.link.block_bytes,
            epoch=cfg.link.epoch,
            first=store.next_block,
        )
        feed = asyncio.create_task(link.run(), name="simulated-link")
    qkd: Any = None
    if cfg.qkd is not None:
        from qkdmeet.qkd.nodes import make_node

        q = cfg.qkd
        try:
            qkd = make_node(
                q.role, q.address, StoreSink(store), q.psk, preset=q.preset, loss_db=q.loss_db,
                distance_km=q.distance_km, block_bits=q.block_bits, eve=q.eve, seed=q.seed,
                first_block=store.next_block, auth_state=f"{cfg.db}.qkd-auth",
            )  # fmt: skip
            await qkd.start()
        except (ValueError, OSError) as exc:
            print(f"qkdmeet kme serve: [qkd]: {exc}", file=sys.stderr)
            await server.stop()
            store.close()
            return 2
        server.qkd = qkd
    print(
        f"{cfg.kme_id} serving ETSI 014 on https://{cfg.host}:{cfg.port}",
        file=sys.stderr,
        flush=True,
    )
    try:
        await wait_for_stop_signal()
    finally:
        if feed is not None:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
        if qkd is not None:
            await qkd.stop()
        await server.stop()
        store.close()
    return 0


async def _status(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from qkdmeet.kme.client import EtsiClient, KmeError

    try:
        async with EtsiClient(
            args.url, cert_file=args.cert, key_file=args.key, ca_file=args.ca
        ) as c:
            st = await c.status(args.slave)
    except (KmeError, OSError) as exc:
        print(f"qkdmeet kme status: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(asdict(st), indent=2))
    return 0


async def _pair(args: argparse.Namespace) -> int:
    from qkdmeet.kme.pair import KmePair, write_pair

    pair = KmePair(write_pair(args.dir))
    await pair.start()
    try:
        if args.link == "qkd":
            await pair.feed_qkd(loss_db=args.loss_db, block_bits=int(args.block_bits))
        else:
            await pair.fill(args.initial_blocks)
            pair.feed(args.rate)
        info: dict[str, Any] = pair.describe()
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            for site, s in info["sites"].items():
                print(
                    f"site {site}: {s['kme_id']} at {s['kme_url']}, SAE {s['sae_id']}", flush=True
                )
        await wait_for_stop_signal()
    finally:
        await pair.stop()
    return 0


def _audit(args: argparse.Namespace) -> int:
    """Summarise a KME's audit log (from ``--log`` or the config's ``audit_log``)."""
    from pathlib import Path

    from qkdmeet.kme import audit
    from qkdmeet.kme.config import load

    path = Path(args.log) if args.log else None
    if path is None:
        path = load(args.config).audit_log  # a ConfigError: one line, status 2
    if path is None or not path.exists():
        print(f"qkdmeet kme audit: no audit log at {path}", file=sys.stderr)
        return 1
    print(json.dumps(audit.summarise(path), indent=2))
    return 0


def _pki_init(args: argparse.Namespace) -> int:
    out = pki.init(args.dir, ca_dir=args.ca_dir)
    kept = f"; the CA's private key in {args.ca_dir}" if args.ca_dir else (
        "; the CA's private key was not kept (give --ca-dir to issue more later)")
    print(f"PKI written to {out}{kept}", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    kme = subparsers.add_parser("kme", help="ETSI GS QKD 014 key management entity")
    sub = kme.add_subparsers(dest="kme_command", required=True)
    serve = sub.add_parser("serve", help="run one KME from a TOML config")
    serve.add_argument("--config", required=True)
    serve.set_defaults(func=_serve)
    status = sub.add_parser("status", help="ETSI 014 Get status as an SAE")
    status.add_argument("--url", required=True)
    status.add_argument("--slave", required=True)
    status.add_argument("--cert", required=True)
    status.add_argument("--key", required=True)
    status.add_argument("--ca", required=True)
    status.set_defaults(func=_status)
    pair = sub.add_parser("pair", help="PKI + two KMEs on loopback fed by a simulated link")
    pair.add_argument("--dir", required=True)
    pair.add_argument("--json", action="store_true")
    pair.add_argument("--rate", type=float, default=10e6, help="simulated link bits/s")
    pair.add_argument("--initial-blocks", type=int, default=64)
    pair.add_argument(
        "--link",
        choices=("random", "qkd"),
        default="random",
        help="feed: random blocks at --rate (default) or the simulated QKD link",
    )
    pair.add_argument("--loss-db", type=float, default=2.0, help="QKD link loss (--link qkd)")
    pair.add_argument(
        "--block-bits", type=float, default=DEFAULT_BLOCK_BITS, help="QKD block (--link qkd)"
    )
    pair.set_defaults(func=_pair)
    aud = sub.add_parser("audit", help="summarise a KME's audit log (deliveries, refusals)")
    where = aud.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", help="the KME's TOML config (its audit_log)")
    where.add_argument("--log", help="the audit log file")
    aud.set_defaults(func=_audit)

    p = subparsers.add_parser("pki", help="throwaway PKI for KMEs and SAEs")
    psub = p.add_subparsers(dest="pki_command", required=True)
    init = psub.add_parser("init", help="CA, KME and SAE certificates for sites a and b")
    init.add_argument("dir")
    init.add_argument("--ca-dir", help="a directory of its own for the CA's private key "
                      "(default: the key is not kept)")
    init.set_defaults(func=_pki_init)
