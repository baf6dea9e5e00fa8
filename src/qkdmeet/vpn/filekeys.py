"""A file-backed key store shared by gateways in separate processes or
network namespaces (the testbed and the benchmark; a deployment uses a KME).

Layout: ``DIR/<master>__<slave>/pool/<uuid>`` holds unissued keys;
``enc_keys`` claims one by an atomic ``rename`` into ``issued/``, so no two
callers get the same key; ``dec_keys`` reads an issued key and unlinks it, so
each key is delivered to the slave exactly once. ``fill`` pre-fills a pool.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

from qkdmeet.kme.types import Key, KeyStatus
from qkdmeet.vpn.memkeys import KeySupplyError

_SAE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _link_dir(root: Path, master: str, slave: str) -> Path:
    for sae in (master, slave):
        if not _SAE.match(sae):
            raise ValueError(f"SAE ID {sae!r} is not a safe file name")
    return root / f"{master}__{slave}"


def fill(root: Path, master: str, slave: str, *, nbytes: int, key_bytes: int) -> int:
    """Add ``nbytes`` of random key in keys of ``key_bytes``; returns the key count."""
    d = _link_dir(root, master, slave)
    (d / "pool").mkdir(parents=True, exist_ok=True)
    (d / "issued").mkdir(parents=True, exist_ok=True)
    count = max(1, nbytes // key_bytes)
    for _ in range(count):
        kid = uuid.uuid4()
        tmp = d / f".{kid}.tmp"
        tmp.write_bytes(os.urandom(key_bytes))
        os.replace(tmp, d / "pool" / str(kid))
    return count


def pooled_bytes(root: Path, master: str, slave: str) -> int:
    d = _link_dir(root, master, slave) / "pool"
    return sum(p.stat().st_size for p in d.iterdir()) if d.exists() else 0


class FileKeySupplier:
    """One SAE's view of a key store directory (implements ``KeySupplier``).

    The key size is the size of the files filled in; ``enc_keys`` returns
    pool keys whatever ``size_bits`` asks (as a KME with a fixed key size).
    """

    def __init__(self, root: Path, sae_id: str) -> None:
        self.root = root
        self.sae_id = sae_id

    async def status(self, slave_sae_id: str) -> KeyStatus:
        d = _link_dir(self.root, self.sae_id, slave_sae_id)
        pool = list((d / "pool").iterdir()) if (d / "pool").exists() else []
        size = pool[0].stat().st_size * 8 if pool else 0
        return KeyStatus(
            "file-" + self.sae_id, "file-" + slave_sae_id, self.sae_id, slave_sae_id,
            size, len(pool), 1 << 20, 128, size, size,
        )

    async def enc_keys(self, slave_sae_id: str, number: int, size_bits: int) -> list[Key]:
        return await asyncio.to_thread(self._claim, slave_sae_id, number)

    def _claim(self, slave: str, number: int) -> list[Key]:
        d = _link_dir(self.root, self.sae_id, slave)
        try:
            names = sorted(os.listdir(d / "pool"))
        except FileNotFoundError:
            raise KeySupplyError(f"no key store for {self.sae_id} -> {slave}") from None
        keys: list[Key] = []
        for name in names:
            if len(keys) >= number:
                break
            try:
                os.rename(d / "pool" / name, d / "issued" / name)
            except FileNotFoundError:
                continue  # claimed by another caller
            keys.append(Key(uuid.UUID(name), (d / "issued" / name).read_bytes()))
        if not keys:
            raise KeySupplyError("insufficient key")
        return keys

    async def dec_keys(self, master_sae_id: str, key_ids: Sequence[uuid.UUID]) -> list[Key]:
        return await asyncio.to_thread(self._take, master_sae_id, list(key_ids))

    def _take(self, master: str, key_ids: list[uuid.UUID]) -> list[Key]:
        d = _link_dir(self.root, master, self.sae_id) / "issued"
        out: list[Key] = []
        for kid in key_ids:
            path = d / str(kid)
            try:
                data = path.read_bytes()
                path.unlink()
            except FileNotFoundError:
                raise KeySupplyError(f"unknown key ID {kid}") from None
            out.append(Key(kid, data))
        return out
