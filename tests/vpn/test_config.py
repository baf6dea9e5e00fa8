from pathlib import Path

import pytest

from qkdmeet.vpn.config import ConfigError, load_config
from qkdmeet.vpn.constants import TUN_MTU

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
