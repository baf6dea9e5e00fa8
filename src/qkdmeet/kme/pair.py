"""Two KMEs on loopback (sites a and b) with PKI and config files in one directory.

``write_pair(DIR)`` creates the PKI and ``kme-a.toml``/``kme-b.toml`` (KME-A is
the allocation authority); :class:`KmePair` runs both servers in this process.
With ``qkd={...}`` the configs get ``[qkd]`` tables (site a transmitter, site b
receiver, a shared ``qkd-psk.bin``) so two ``qkdmeet kme serve`` processes are
fed by the simulated QKD link; :meth:`KmePair.feed_qkd` runs that link
in-process instead (``qkdmeet kme pair --link qkd``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qkdmeet.kme import config as kconfig
from qkdmeet.kme import pki
from qkdmeet.kme.server import KmeServer
from qkdmeet.kme.simfeed import feed_blocks, feed_forever
from qkdmeet.kme.sink import StoreSink
from qkdmeet.kme.store import KeyStore
from qkdmeet.qkd.link import QkdLink, link_params
from qkdmeet.qkd.params import DEFAULT_BLOCK_BITS
from qkdmeet.qkd.protocol import ProtocolConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class PairFiles:
    directory: Path
    configs: dict[str, Path]
    ports: dict[str, int]
    #: where the CA's private key was kept (None: not kept), never ``directory``
    ca_dir: Path | None = None


def write_pair(
    directory: str | Path,
    ports: dict[str, int] | None = None,
    *,
    link_bits_per_second: float | None = None,
    qkd: dict[str, Any] | None = None,
    ca_dir: str | Path | None = None,
    **limits: Any,
) -> PairFiles:
    """PKI and both configs; with ``link_bits_per_second`` a shared ``[link]`` table
    (seeded simulated link) so that two ``qkdmeet kme serve`` processes are fed.

    ``qkd`` holds :class:`~qkdmeet.kme.config.QkdFeed` fields both ends share
    (``port`` picks the link's port); ``ca_dir`` keeps the CA's private key in a
    directory of its own (default: not kept); ``limits`` are further
    :class:`~qkdmeet.kme.config.KmeConfig` fields (``max_key_per_request=64``).
    """
    d = Path(directory)
    pki.init(d, ca_dir=ca_dir)
    ports = ports or {s: free_port() for s in pki.SITES}
    link = None
    if link_bits_per_second is not None:
        link = kconfig.SimulatedLink(os.urandom(32), float(link_bits_per_second), 4096,
                                     time.time())
    feeds: dict[str, kconfig.QkdFeed | None] = {"a": None, "b": None}
    if qkd is not None:
        psk_file = Path("qkd-psk.bin")
        psk = os.urandom(32 + 2 * 4096 * 32)
        (d / psk_file).write_bytes(psk)
        common = {k: v for k, v in qkd.items() if k != "port"}
        address = f"127.0.0.1:{int(qkd.get('port') or free_port())}"
        feeds = {
            site: kconfig.QkdFeed(role, address, psk, psk_file=psk_file, **common)
            for site, role in (("a", "transmitter"), ("b", "receiver"))
        }
    configs: dict[str, Path] = {}
    for site, other in (("a", "b"), ("b", "a")):
        cfg = kconfig.KmeConfig(
            kme_id=pki.kme_id(site),
            host="127.0.0.1",
            port=ports[site],
            db=Path(f"kme-{site}.db"),
            cert=Path(f"kme-{site}.pem"),
            key=Path(f"kme-{site}.key"),
            ca=Path("ca.pem"),
            local_saes=(pki.sae_id(site),),
            remote_saes=(pki.sae_id(other),),
            peer_kme_id=pki.kme_id(other),
            peer_url=f"https://127.0.0.1:{ports[other]}",
            authority=site == "a",
            link=link,
            qkd=feeds[site],
            **limits,
        )
        configs[site] = kconfig.write(cfg, d / f"kme-{site}.toml")
    return PairFiles(d, configs, ports, None if ca_dir is None else Path(ca_dir))


class KmePair:
    """Both KMEs of :func:`write_pair` running in this event loop."""

    def __init__(self, files: PairFiles) -> None:
        self.files = files
        self.servers: dict[str, KmeServer] = {}
        self.sinks: list[StoreSink] = []
        self._feed: asyncio.Task[None] | None = None
        self.qkd: QkdLink | None = None
        self.next_block = 0

    async def start(self) -> None:
        for site, path in self.files.configs.items():
            cfg = kconfig.load(path)
            store = KeyStore(cfg.db)
            server = KmeServer(cfg, store)
            await server.start()
            self.servers[site] = server
            self.sinks.append(StoreSink(store))
        self.next_block = self.servers["a"].store.next_block

    async def fill(self, blocks: int, block_bytes: int = 65536) -> None:
        self.next_block = await feed_blocks(self.sinks, blocks, block_bytes, first=self.next_block)

    def feed(self, bits_per_second: float) -> None:
        self._feed = asyncio.create_task(
            feed_forever(self.sinks, bits_per_second, first=self.next_block)
        )

    async def feed_qkd(
        self, *, loss_db: float = 2.0, block_bits: int = DEFAULT_BLOCK_BITS, seed: int | None = None
    ) -> QkdLink:
        """Feed both KMEs from the simulated QKD link, both ends in this process."""
        params = link_params("toshiba", loss_db=loss_db, block_bits=block_bits)
        self.qkd = QkdLink(
            params,
            config=ProtocolConfig(block_bits=block_bits),
            sinks=(self.sinks[0], self.sinks[1]),
            seed=seed,
            first_block=self.next_block,
        )
        await self.qkd.start()
        return self.qkd

    async def stop(self) -> None:
        if self.qkd is not None:
            await self.qkd.stop()
            self.qkd = None
        if self._feed is not None:
            self._feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed
        for server in self.servers.values():
            await server.stop()
            server.store.close()

    def describe(self) -> dict[str, Any]:
        d = self.files.directory
        return {
            "ca": str(d / "ca.pem"),
            "sites": {
                site: {
                    "kme_id": pki.kme_id(site),
                    "kme_url": f"https://127.0.0.1:{self.files.ports[site]}",
                    "sae_id": pki.sae_id(site),
                    "sae_cert": str(d / f"sae-{site}.pem"),
                    "sae_key": str(d / f"sae-{site}.key"),
                    "config": str(self.files.configs[site]),
                }
                for site in pki.SITES
            },
        }
