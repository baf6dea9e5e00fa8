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


def write_pair(
    directory: str | Path,
    ports: dict[str, int] | None = None,
    *,
    link_bits_per_second: float | None = None,
    qkd: dict[str, Any] | None = None,
    **limits: int,
) -> PairFiles:
    """PKI and both configs; with ``link_bits_per_second`` a shared ``[link]`` table
    (seeded simulated link) so that two ``qkdmeet kme serve`` processes are fed."""
    d = Path(directory)
    pki.init(d)
    ports = ports or {s: free_port() for s in pki.SITES}
    configs: dict[str, Path] = {}
    link = ""
    if link_bits_per_second is not None:
        link = (
            f'[link]\nseed = "{os.urandom(32).hex()}"\nbits_per_second = {link_bits_per_second}\n'
            f"block_bytes = 4096\nepoch = {time.time()}\n"
        )
    qkd_tables = {"a": "", "b": ""}
    if qkd is not None:
        (d / "qkd-psk.bin").write_bytes(os.urandom(32 + 2 * 4096 * 32))
        qport = int(qkd.get("port") or free_port())
        common = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in qkd.items() if k != "port")
        qkd_tables = {
            "a": f'[qkd]\nrole = "transmitter"\nlisten = "127.0.0.1:{qport}"\n',
            "b": f'[qkd]\nrole = "receiver"\nconnect = "127.0.0.1:{qport}"\n',
        }
        for site in qkd_tables:
            qkd_tables[site] += f'psk_file = "qkd-psk.bin"\n{common}'
    for site, other in (("a", "b"), ("b", "a")):
        extra = "".join(f"{k} = {v}\n" for k, v in limits.items())
        text = (
            f'kme_id = "{pki.kme_id(site)}"\nhost = "127.0.0.1"\nport = {ports[site]}\n'
            f'db = "kme-{site}.db"\ncert = "kme-{site}.pem"\nkey = "kme-{site}.key"\n'
            'ca = "ca.pem"\n'
            f"authority = {'true' if site == 'a' else 'false'}\n{extra}"
            f'[saes]\nlocal = ["{pki.sae_id(site)}"]\nremote = ["{pki.sae_id(other)}"]\n'
            f'[peer]\nkme_id = "{pki.kme_id(other)}"\nurl = "https://127.0.0.1:{ports[other]}"\n'
            + link
            + qkd_tables[site]
        )
        configs[site] = d / f"kme-{site}.toml"
        configs[site].write_text(text)
    return PairFiles(d, configs, ports)


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
