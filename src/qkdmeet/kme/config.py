"""KME configuration: one model (:class:`KmeConfig`) that is read from TOML
(``qkdmeet kme serve --config FILE``: :func:`load`, :func:`parse`) and
written to it (:func:`write`, :func:`dump`) by whoever sets KMEs up
(:mod:`qkdmeet.kme.pair`, :mod:`qkdmeet.demo.sites`), so a field is added in
this module alone; ``tests/kme/test_config.py`` checks that every field
survives the round trip. Paths are written as given; a relative one is read
relative to the file's folder.

Key comes from one of two feeds:

``[link]``
    a seeded stand-in (:class:`qkdmeet.kme.simfeed.SeededLink`): not secret.
``[qkd]``
    the simulated QKD link (:mod:`qkdmeet.qkd.link`), one end per site::

        [qkd]
        role = "transmitter"          # site A; "receiver" at site B
        listen = "127.0.0.1:7100"     # transmitter: where the receiver connects
        # connect = "127.0.0.1:7100"  # receiver: the transmitter's address
        preset = "toshiba"            # or "lim2014"
        loss_db = 2.0                 # or distance_km = 10.0 (default: the preset's)
        block_bits = 4000000          # sifted X bits per block (same at both ends)
        psk_file = "qkd-psk.bin"      # pre-shared bootstrap secret, raw bytes
        # psk = "a1b2..."             # ... or as hex
        # eve = "intercept-resend:1.0" or "pns" (transmitter only)
        # seed = 1                    # reproducible run (tests)

    Both ends must use the same preset, loss, block size and secret. The
    authentication key state is kept in ``<db>.qkd-auth`` (the secret is used
    only on the first start; a restart goes on from that file). The
    running link's stats and controls are at ``GET|POST /admin/qkd`` (see
    :mod:`qkdmeet.kme.admin_routes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from qkdmeet.configfile import load_toml
from qkdmeet.errors import ConfigError as ConfigError  # one ConfigError for every layer
from qkdmeet.qkd.params import DEFAULT_BLOCK_BITS

#: What to do about a KME config file that cannot be used.
FIX_HINT = (
    "correct it in the file (`qkdmeet kme pair --dir DIR` writes a working pair "
    "of KME configs to compare with)"
)


@dataclass(frozen=True, slots=True)
class SimulatedLink:
    """``[link]`` table: a seeded simulated link (see :class:`qkdmeet.kme.simfeed.SeededLink`)."""

    seed: bytes
    bits_per_second: float
    block_bytes: int
    epoch: float


@dataclass(frozen=True, slots=True)
class QkdFeed:
    """``[qkd]`` table: this site's end of the simulated QKD link (see the module docstring)."""

    role: str
    address: str
    psk: bytes = field(repr=False)
    #: the file ``psk`` was read from: written instead of the secret itself
    psk_file: Path | None = None
    preset: str = "toshiba"
    loss_db: float | None = None
    distance_km: float | None = None
    block_bits: int = DEFAULT_BLOCK_BITS
    eve: str | None = None
    seed: int | None = None


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
    qkd: QkdFeed | None = None
    #: audit log (JSON lines); default ``<db>.audit.jsonl``
    audit_log: Path | None = None
    #: seconds after which keys held for a slave, and reserved ranges, never
    #: claimed are destroyed (at both KMEs)
    key_expiry_seconds: float = 600.0


def _qkd(table: dict[str, Any], base: Path) -> QkdFeed:
    role = _get(table, "role", str)
    if role not in ("transmitter", "receiver"):
        raise ConfigError('qkd.role must be "transmitter" or "receiver"')
    address = _get(table, "listen" if role == "transmitter" else "connect", str)
    psk_file = None
    if "psk_file" in table:
        psk_file = base / _get(table, "psk_file", str)
        try:
            psk = psk_file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"qkd.psk_file: {exc}") from exc
    else:
        try:
            psk = bytes.fromhex(_get(table, "psk", str))
        except ValueError as exc:
            raise ConfigError("qkd.psk must be hex") from exc
    loss, dist = table.get("loss_db"), table.get("distance_km")
    for name, v in (("loss_db", loss), ("distance_km", dist)):
        if v is not None and (not isinstance(v, int | float) or isinstance(v, bool) or v < 0):
            raise ConfigError(f"qkd.{name} must be a number >= 0")
    if loss is not None and dist is not None:
        raise ConfigError("qkd: give loss_db or distance_km, not both")
    block = table.get("block_bits", DEFAULT_BLOCK_BITS)
    if not isinstance(block, int) or isinstance(block, bool) or block < 1000:
        raise ConfigError("qkd.block_bits must be an integer >= 1000")
    eve = table.get("eve")
    seed = table.get("seed")
    if eve is not None and not isinstance(eve, str):
        raise ConfigError("qkd.eve must be a string")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ConfigError("qkd.seed must be an integer")
    return QkdFeed(
        role=role,
        address=address,
        psk=psk,
        psk_file=psk_file,
        preset=str(table.get("preset", "toshiba")),
        loss_db=None if loss is None else float(loss),
        distance_km=None if dist is None else float(dist),
        block_bits=block,
        eve=eve,
        seed=seed,
    )


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
    qkd = _qkd(_get(data, "qkd", dict), base) if "qkd" in data else None
    expiry = data.get("key_expiry_seconds", 600.0)
    if not isinstance(expiry, int | float) or isinstance(expiry, bool) or expiry < 1:
        raise ConfigError("key_expiry_seconds must be a number >= 1")
    audit = data.get("audit_log")
    if audit is not None and not isinstance(audit, str):
        raise ConfigError("audit_log must be a path")
    db = base / _get(data, "db", str)
    return KmeConfig(
        audit_log=Path(f"{db}.audit.jsonl") if audit is None else base / audit,
        key_expiry_seconds=float(expiry),
        link=link,
        qkd=qkd,
        kme_id=_get(data, "kme_id", str),
        host=data.get("host", "127.0.0.1"),
        port=_get(data, "port", int),
        db=db,
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
    """Read and validate a KME's TOML file; :class:`ConfigError` names the file,
    the field and what to do."""
    p = Path(path)
    return load_toml(p, "KME config file", lambda data: parse(data, p.parent), FIX_HINT)


# --- writing -------------------------------------------------------------------------
def _dump_qkd(q: QkdFeed) -> dict[str, Any]:
    table: dict[str, Any] = {
        "role": q.role,
        "listen" if q.role == "transmitter" else "connect": q.address,
        **({"psk_file": str(q.psk_file)} if q.psk_file is not None else {"psk": q.psk.hex()}),
        "preset": q.preset,
        "loss_db": q.loss_db,
        "distance_km": q.distance_km,
        "block_bits": q.block_bits,
        "eve": q.eve,
        "seed": q.seed,
    }
    return {k: v for k, v in table.items() if v is not None}


def dump(cfg: KmeConfig) -> dict[str, Any]:
    """The TOML document of ``cfg`` (what :func:`parse` reads back)."""
    doc: dict[str, Any] = {
        "kme_id": cfg.kme_id,
        "host": cfg.host,
        "port": cfg.port,
        "db": str(cfg.db),
        "cert": str(cfg.cert),
        "key": str(cfg.key),
        "ca": str(cfg.ca),
        "authority": cfg.authority,
        "key_size": cfg.key_size,
        "max_key_per_request": cfg.max_key_per_request,
        "max_key_size": cfg.max_key_size,
        "min_key_size": cfg.min_key_size,
        "max_key_count": cfg.max_key_count,
        "key_expiry_seconds": cfg.key_expiry_seconds,
    }
    if cfg.audit_log is not None:  # else the reader's default, next to the db
        doc["audit_log"] = str(cfg.audit_log)
    doc["saes"] = {"local": list(cfg.local_saes), "remote": list(cfg.remote_saes)}
    doc["peer"] = {"kme_id": cfg.peer_kme_id, "url": cfg.peer_url}
    if cfg.link is not None:
        doc["link"] = {
            "seed": cfg.link.seed.hex(),
            "bits_per_second": cfg.link.bits_per_second,
            "block_bytes": cfg.link.block_bytes,
            "epoch": cfg.link.epoch,
        }
    if cfg.qkd is not None:
        doc["qkd"] = _dump_qkd(cfg.qkd)
    return doc


def write(cfg: KmeConfig, path: str | Path) -> Path:
    """Write ``cfg`` as the TOML file ``path``; returns the path."""
    p = Path(path)
    p.write_text(tomli_w.dumps(dump(cfg)))
    return p
