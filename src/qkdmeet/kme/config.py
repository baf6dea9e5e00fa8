"""KME configuration, read from TOML (``qkdmeet kme serve --config FILE``)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A missing or ill-typed configuration field."""


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
    return KmeConfig(
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
