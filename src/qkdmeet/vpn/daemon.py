"""``qkdmeet gateway run``: a gateway from its configuration, until a signal.

Owns, starts and stops in reverse order: the key supplier (an ETSI 014
client used as ``async with``, or a key store directory), the TUN device with
its routes, the UDP bind, the :class:`~qkdmeet.vpn.gateway.Gateway` and the
budget endpoint. SIGTERM and SIGINT stop it cleanly (used key zeroed, rest of
the current key discarded, see :mod:`.keystream`).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
from contextlib import AsyncExitStack
from typing import Any

from qkdmeet.kme.types import KeySupplier
from qkdmeet.signals import on_stop_signals
from qkdmeet.vpn.budget import BudgetServer
from qkdmeet.vpn.config import ConfigError, GatewayConfig, KeysConfig
from qkdmeet.vpn.constants import FIRST_KEY_WAIT_SECONDS
from qkdmeet.vpn.filekeys import FileKeySupplier
from qkdmeet.vpn.gateway import Gateway, GatewayKeys
from qkdmeet.vpn.keygroups import GroupingSupplier
from qkdmeet.vpn.transport import UdpBind
from qkdmeet.vpn.tun import TunDevice

log = logging.getLogger(__name__)


async def open_supplier(cfg: KeysConfig, stack: AsyncExitStack) -> KeySupplier:
    """The configured key supply, entered on ``stack``."""
    if cfg.source == "files":
        assert cfg.dir is not None
        return FileKeySupplier(cfg.dir, cfg.sae_id)
    try:
        client_mod = importlib.import_module("qkdmeet.kme.client")
    except ImportError as exc:
        raise ConfigError("ETSI 014 client qkdmeet.kme.client is not available") from exc
    client: Any = client_mod.EtsiClient(
        cfg.kme_url, cert_file=cfg.cert_file, key_file=cfg.key_file, ca_file=cfg.ca_file
    )
    etsi: KeySupplier = await stack.enter_async_context(client)
    # negotiate sizes and counts with whatever KME this is (ours or a vendor's)
    return GroupingSupplier(etsi, in_flight=cfg.in_flight)


async def run_gateway(cfg: GatewayConfig, stop: asyncio.Event | None = None) -> int:
    """Run until ``stop`` is set or SIGTERM/SIGINT; returns an exit code."""
    stop = stop or asyncio.Event()
    on_stop_signals(stop.set)
    async with AsyncExitStack() as stack:
        supplier = await open_supplier(cfg.keys, stack)
        tun = TunDevice(cfg.tun, mtu=cfg.mtu)
        stack.callback(tun.close)
        for route in cfg.routes:
            tun.add_route(route)
        bind = UdpBind(cfg.listen, cfg.peer)
        stack.callback(bind.close)
        gateway = Gateway(
            tun=tun,
            bind=bind,
            keys=GatewayKeys(
                supplier,
                cfg.keys.sae_id,
                cfg.keys.peer_sae_id,
                cfg.keys.key_size_bits,
                cfg.keys.prefetch_bytes,
            ),
            name=cfg.name,
            state_dir=cfg.state_dir,
            batched=cfg.data_path == "batched",
        )
        stack.push_async_callback(gateway.stop)
        await gateway.start(first_key_timeout=FIRST_KEY_WAIT_SECONDS)
        if cfg.budget_listen is not None:
            server = BudgetServer(gateway, cfg.budget_listen)
            await server.start()
            stack.push_async_callback(server.stop)
        log.info("gateway %s up: tun %s, %s -> %s", cfg.name, tun.name, cfg.listen, cfg.peer)
        print(json.dumps({"gateway": cfg.name, "tun": tun.name, "ready": True}), flush=True)
        await stop.wait()
    # after the stack has stopped the gateway: the key it still held is zeroed and
    # counted as discarded, so this run's final counters account for all it received
    final = gateway.metrics.as_dict()
    final["wan_bind"] = {"send_errors": bind.send_errors}
    final["tun"] = {"write_errors": tun.write_errors}
    final["data_path"] = "batched" if gateway.batched else "per-packet"
    print(json.dumps(final), file=sys.stderr, flush=True)
    return 0
