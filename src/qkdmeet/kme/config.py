"""KME configuration, read from TOML (``qkdmeet kme serve --config FILE``)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A missing or ill-typed configuration field."""


@dataclass(frozen=True, slots=True)
class SimulatedLink:
    """``[link]`` table: a seeded simulated link (see :class:`qkdmeet.kme.simfeed.SeededLink`)."""

    seed: bytes
    bits_per_second: float
    block_bytes: int
    epoch: float


@dataclass(frozen=True, slots=True)
class KmeConfig:
    kme_id: str
    host: str
    port: int
    db: Path
    cert: Path
    key: Path
    ca: Path
    local_saes: tuple[str, ...]
    remote_saes: tuple[str, ...]
    peer_kme_id: str
    peer_url: str
    authority: bool
    key_size: int = 256
    max_key_per_request: int = 128
    max_key_size: int = 1024
    min_key_size: int = 64
    max_key_count: int = 100_000
    link: SimulatedLink | None = None


def _get(data: dict[str, Any], name: str, kind: type) -> Any:
    if name not in data:
        raise ConfigError(f"missing field {name!r}")
    value = data[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"field {name!r} must be {kind.__name__}")
    return value


def parse(data: dict[str, Any], base: Path = Path(".")) -> KmeConfig:
    peer = _get(data, "peer", dict)
    saes = _get(data, "saes", dict)
    limits = {
        k: _get(data, k, int)
        for k in (
            "key_size",
            "max_key_per_request",
            "max_key_size",
            "min_key_size",
            "max_key_count",
        )
        if k in data
    }
    link = None
    if "link" in data:
        table = _get(data, "link", dict)
        try:
            seed = bytes.fromhex(_get(table, "seed", str))
        except ValueError as exc:
            raise ConfigError("link.seed must be hex") from exc
        rate = table.get("bits_per_second", 10e6)
        epoch = table.get("epoch", 0)
        if not isinstance(rate, int | float) or not isinstance(epoch, int | float) or rate <= 0:
            raise ConfigError("link.bits_per_second must be a positive number, link.epoch a number")
        block = int(table.get("block_bytes", 4096))
        link = SimulatedLink(seed, float(rate), block, float(epoch))
    return KmeConfig(
        link=link,
        kme_id=_get(data, "kme_id", str),
        host=data.get("host", "127.0.0.1"),
        port=_get(data, "port", int),
        db=base / _get(data, "db", str),
        cert=base / _get(data, "cert", str),
        key=base / _get(data, "key", str),
        ca=base / _get(data, "ca", str),
        local_saes=tuple(_get(saes, "local", list)),
        remote_saes=tuple(_get(saes, "remote", list)),
        peer_kme_id=_get(peer, "kme_id", str),
        peer_url=_get(peer, "url", str),
        authority=bool(data.get("authority", False)),
        **limits,
    )


def load(path: str | Path) -> KmeConfig:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{p}: {exc}") from exc
    return parse(data, p.parent)
