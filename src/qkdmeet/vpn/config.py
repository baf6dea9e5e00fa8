"""Gateway configuration: one model (:class:`GatewayConfig`) read from TOML
(:func:`load_config`, :func:`parse_config`) and written to it
(:func:`write_config`, :func:`dump_config`) by whoever sets gateways up
(:meth:`qkdmeet.testbed.topology.Topology.gateway_config`), so a field is
added in this module alone; ``tests/vpn/test_config.py`` checks that every
field survives the round trip.

Example (every key shown; ``[keys].source`` picks the key supply)::

    [gateway]
    name = "gw-a"
    tun = "qkm-tun"                 # TUN interface name (<= 15 characters)
    mtu = 1408                      # TUN MTU; default fits a 1500-byte WAN
    routes = ["10.2.0.0/24"]        # the other site's subnets, routed into the TUN
    listen = "172.30.1.1:51900"     # UDP address of this gateway on the WAN
    peer = "172.30.1.2:51900"       # UDP address of the peer (or the WAN relay)
    state_dir = "/var/lib/qkdmeet/gw-a"   # sequence reservation, used-key journal
    budget_listen = "10.1.0.1:9180" # GET /budget, /metrics, /metrics.json ("" = off)
    data_path = "batched"           # or "per-packet" (Python per packet; see vpn/pump.py)

    [keys]
    source = "etsi"                 # "etsi" (a KME over ETSI 014) or "files"
    sae_id = "gw-a"                 # this gateway's SAE ID
    peer_sae_id = "gw-b"            # the peer gateway's SAE ID
    key_size_bits = 524288
    prefetch_bytes = 8388608
    kme_url = "https://127.0.0.1:8443"   # etsi: this site's KME
    cert_file = "sae.pem"           # etsi: client certificate (mutual TLS)
    key_file = "sae.key"
    ca_file = "ca.pem"
    in_flight = 16                  # etsi: ETSI requests in flight at most (pipelining)
    dir = "/run/qkdmeet/keys"       # files: key store directory (see filekeys)

With ``source = "etsi"`` the gateway reads the KME's ``status`` first and
asks only for key sizes and counts within its limits; a KME whose keys are
smaller than ``key_size_bits`` (a vendor's 256-bit keys) is served in key
groups (see :mod:`qkdmeet.vpn.keygroups`).

Relative file paths are resolved against the configuration file's folder
(and written as given).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from qkdmeet.configfile import load_toml
from qkdmeet.errors import ConfigError as ConfigError  # one ConfigError for every layer
from qkdmeet.vpn.constants import DEFAULT_KEY_SIZE_BITS, DEFAULT_PREFETCH_BYTES, TUN_MTU
from qkdmeet.vpn.transport import Address, format_address, parse_address

#: What to do about a gateway config file that cannot be used.
FIX_HINT = "correct it in the gateway's TOML file (its tables are described in qkdmeet.vpn.config)"


@dataclass(frozen=True, slots=True)
class KeysConfig:
    source: str
    sae_id: str
    peer_sae_id: str
    key_size_bits: int = DEFAULT_KEY_SIZE_BITS
    prefetch_bytes: int = DEFAULT_PREFETCH_BYTES
    kme_url: str = ""
    cert_file: Path | None = None
    key_file: Path | None = None
    ca_file: Path | None = None
    dir: Path | None = None
    in_flight: int = 16


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    name: str
    tun: str
    listen: Address
    peer: Address
    keys: KeysConfig
    routes: tuple[str, ...] = ()
    mtu: int = TUN_MTU
    state_dir: Path | None = None
    budget_listen: Address | None = None
    #: "batched" (:mod:`.pump`: 350 Mb/s on the testbed) or "per-packet" (the
    #: Python path the batched one falls back to between keys: 176 Mb/s).
    data_path: str = "batched"


def _get(table: dict[str, Any], key: str, kind: type, section: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise ConfigError(f"[{section}] {key} is required")
        return default
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"[{section}] {key} must be {kind.__name__}, got {value!r}")
    return value


def _path(base: Path, value: str | None) -> Path | None:
    if not value:
        return None
    p = Path(value)
    return p if p.is_absolute() else base / p


def _addr(value: str, where: str) -> Address:
    try:
        return parse_address(value)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def parse_config(data: dict[str, Any], base: Path) -> GatewayConfig:
    """Validate a parsed TOML document."""
    gw = data.get("gateway")
    kt = data.get("keys")
    if not isinstance(gw, dict) or not isinstance(kt, dict):
        raise ConfigError("the file needs [gateway] and [keys] tables")
    source = _get(kt, "source", str, "keys")
    if source not in ("etsi", "files"):
        raise ConfigError(f'[keys] source must be "etsi" or "files", got {source!r}')
    keys = KeysConfig(
        source=source,
        sae_id=_get(kt, "sae_id", str, "keys"),
        peer_sae_id=_get(kt, "peer_sae_id", str, "keys"),
        key_size_bits=_get(kt, "key_size_bits", int, "keys", DEFAULT_KEY_SIZE_BITS),
        prefetch_bytes=_get(kt, "prefetch_bytes", int, "keys", DEFAULT_PREFETCH_BYTES),
        kme_url=_get(kt, "kme_url", str, "keys", ""),
        cert_file=_path(base, _get(kt, "cert_file", str, "keys", "")),
        key_file=_path(base, _get(kt, "key_file", str, "keys", "")),
        ca_file=_path(base, _get(kt, "ca_file", str, "keys", "")),
        dir=_path(base, _get(kt, "dir", str, "keys", "")),
        in_flight=_get(kt, "in_flight", int, "keys", 16),
    )
    if not 1 <= keys.in_flight <= 256:
        raise ConfigError("[keys] in_flight must be between 1 and 256")
    tls = (keys.cert_file, keys.key_file, keys.ca_file)
    if source == "etsi" and not (keys.kme_url and all(tls)):
        raise ConfigError("[keys] source etsi needs kme_url, cert_file, key_file and ca_file")
    if source == "files" and keys.dir is None:
        raise ConfigError("[keys] source files needs dir")
    if keys.key_size_bits % 8 or keys.key_size_bits < 8 * 128:
        raise ConfigError("[keys] key_size_bits must be a multiple of 8 and >= 1024")
    routes = _get(gw, "routes", list, "gateway", [])
    if not all(isinstance(r, str) for r in routes):
        raise ConfigError("[gateway] routes must be a list of CIDR strings")
    mtu = _get(gw, "mtu", int, "gateway", TUN_MTU)
    if not 576 <= mtu <= 65535 - 64:
        raise ConfigError(f"[gateway] mtu {mtu} out of range")
    budget = _get(gw, "budget_listen", str, "gateway", "")
    tun = _get(gw, "tun", str, "gateway", "qkm-tun")
    if not 0 < len(tun) < 16:
        raise ConfigError("[gateway] tun must be 1-15 characters")
    return GatewayConfig(
        name=_get(gw, "name", str, "gateway", keys.sae_id),
        tun=tun,
        listen=_addr(_get(gw, "listen", str, "gateway"), "[gateway] listen"),
        peer=_addr(_get(gw, "peer", str, "gateway"), "[gateway] peer"),
        keys=keys,
        routes=tuple(routes),
        mtu=mtu,
        state_dir=_path(base, _get(gw, "state_dir", str, "gateway", "")),
        budget_listen=_addr(budget, "[gateway] budget_listen") if budget else None,
        data_path=_data_path(_get(gw, "data_path", str, "gateway", "batched")),
    )


DATA_PATHS = ("batched", "per-packet")


def _data_path(value: str) -> str:
    if value not in DATA_PATHS:
        raise ConfigError(f"[gateway] data_path must be one of {', '.join(DATA_PATHS)}")
    return value


def load_config(path: Path) -> GatewayConfig:
    """Read and validate a gateway TOML file; :class:`ConfigError` names the file,
    the field and what to do."""
    base = path.resolve().parent
    return load_toml(path, "gateway config file", lambda data: parse_config(data, base), FIX_HINT)


# --- writing -------------------------------------------------------------------------
def dump_config(cfg: GatewayConfig) -> dict[str, Any]:
    """The TOML document of ``cfg`` (what :func:`parse_config` reads back); unset
    optional values are left out, so the reader's defaults apply."""
    gateway: dict[str, Any] = {
        "name": cfg.name,
        "tun": cfg.tun,
        "mtu": cfg.mtu,
        "routes": list(cfg.routes),
        "listen": format_address(cfg.listen),
        "peer": format_address(cfg.peer),
        "state_dir": cfg.state_dir,
        "budget_listen": None if cfg.budget_listen is None else format_address(cfg.budget_listen),
        "data_path": cfg.data_path,
    }
    # [keys] is KeysConfig field by field: a field added there is written as it is
    keys = {f.name: getattr(cfg.keys, f.name) for f in dataclasses.fields(cfg.keys)}
    keys["kme_url"] = keys["kme_url"] or None  # "" is the reader's default
    return {
        name: {key: str(v) if isinstance(v, Path) else v
               for key, v in table.items() if v is not None}
        for name, table in (("gateway", gateway), ("keys", keys))
    }


def write_config(cfg: GatewayConfig, path: Path) -> Path:
    """Write ``cfg`` as the TOML file ``path``; returns the path."""
    path.write_text(tomli_w.dumps(dump_config(cfg)))
    return path
