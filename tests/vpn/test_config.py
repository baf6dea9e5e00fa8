import dataclasses
from pathlib import Path

import pytest

from qkdmeet.vpn.config import (
    ConfigError,
    GatewayConfig,
    KeysConfig,
    dump_config,
    load_config,
    parse_config,
    write_config,
)
from qkdmeet.vpn.constants import TUN_MTU
from tests.roundtrip import unset_fields

GOOD = """
[gateway]
name = "gw-a"
routes = ["10.2.0.0/24"]
listen = "172.30.1.1:51900"
peer = "172.30.1.2:51900"
state_dir = "state"
budget_listen = "10.1.0.1:9180"
[keys]
source = "etsi"
sae_id = "gw-a"
peer_sae_id = "gw-b"
kme_url = "https://127.0.0.1:8443"
cert_file = "sae.pem"
key_file = "sae.key"
ca_file = "/etc/ca.pem"
"""


def test_load_good(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    f.write_text(GOOD)
    cfg = load_config(f)
    assert cfg.listen == ("172.30.1.1", 51900)
    assert cfg.mtu == TUN_MTU == 1408
    assert cfg.routes == ("10.2.0.0/24",)
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.keys.cert_file == tmp_path / "sae.pem"
    assert cfg.keys.ca_file == Path("/etc/ca.pem")
    assert cfg.budget_listen == ("10.1.0.1", 9180)
    assert cfg.data_path == "batched"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('source = "etsi"', 'source = "carrier-pigeon"'), "source"),
        (('kme_url = "https://127.0.0.1:8443"', ""), "kme_url"),
        (('peer = "172.30.1.2:51900"', 'peer = "nowhere"'), "HOST:PORT"),
        (('routes = ["10.2.0.0/24"]', "routes = [1]"), "routes"),
        (('name = "gw-a"', 'name = "gw-a"\nmtu = 100'), "mtu"),
        (('sae_id = "gw-a"', "sae_id = 3"), "sae_id"),
        (("[keys]", "[nokeys]"), "[keys]"),
        (('name = "gw-a"', 'name = "gw-a"\ndata_path = "gso"'), "data_path"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    f = tmp_path / "gw.toml"
    f.write_text(GOOD.replace(*change))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(f)


def test_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[gateway\n")
    with pytest.raises(ConfigError):
        load_config(tmp_path / "bad.toml")


# --- the model both ways -------------------------------------------------------------
def _model(base: Path, source: str = "etsi") -> GatewayConfig:
    """Every field away from its default (``source`` picks which key fields apply)."""
    etsi = source == "etsi"
    keys = KeysConfig(
        source, "gw-x", "gw-y", key_size_bits=8 * 4096, prefetch_bytes=65536,
        kme_url="https://10.0.0.3:8443" if etsi else "",
        cert_file=base / "sae.pem" if etsi else None, key_file=base / "sae.key" if etsi else None,
        ca_file=base / "ca.pem" if etsi else None, dir=None if etsi else base / "keys",
        in_flight=4,
    )
    return GatewayConfig(
        name="gw-x", tun="tun-x", listen=("172.30.1.1", 51900), peer=("fd00::2", 51901),
        keys=keys, routes=("10.2.0.0/24", "10.2.9.0/30"), mtu=1300, state_dir=base / "state",
        budget_listen=("10.1.0.1", 9180), data_path="per-packet",
    )


@pytest.mark.parametrize("source", ["etsi", "files"])
def test_every_field_survives_the_round_trip(tmp_path: Path, source: str) -> None:
    cfg = _model(tmp_path, source)
    etsi_only = ["keys.kme_url", "keys.cert_file", "keys.key_file", "keys.ca_file"]
    assert unset_fields(cfg) == (["keys.dir"] if source == "etsi" else etsi_only)
    assert load_config(write_config(cfg, tmp_path / "gw.toml")) == cfg


def test_unset_values_take_the_readers_defaults(tmp_path: Path) -> None:
    cfg = dataclasses.replace(_model(tmp_path), state_dir=None, budget_listen=None,
                              routes=(), mtu=TUN_MTU)
    doc = dump_config(cfg)
    assert "state_dir" not in doc["gateway"] and "budget_listen" not in doc["gateway"]
    assert parse_config(doc, tmp_path) == cfg
    rel = dataclasses.replace(cfg, state_dir=Path("state"))
    assert load_config(write_config(rel, tmp_path / "gw.toml")).state_dir == tmp_path / "state"
