"""Gateway configurations written by the topology load as valid configs (no root)."""

from pathlib import Path

import pytest

from qkdmeet.testbed.topology import Topology
from qkdmeet.vpn.config import load_config


@pytest.fixture
def topo(tmp_path: Path) -> Topology:
    t = Topology("qkg-")
    t.run_dir = tmp_path
    return t


def test_file_store_configs(topo: Topology, tmp_path: Path) -> None:
    a = load_config(topo.gateway_config("a", tmp_path / "keys"))
    b = load_config(topo.gateway_config("b", tmp_path / "keys"))
    assert a.routes == ("10.2.0.0/24",) and b.routes == ("10.1.0.0/24",)
    assert a.keys.sae_id == b.keys.peer_sae_id == "gw-a"
    assert a.peer == ("172.30.1.2", 51900)  # the relay, facing A
    assert a.budget_listen == ("10.1.0.1", 9180)
    assert a.keys.source == "files" and a.keys.dir == tmp_path / "keys"


def test_etsi_config_and_routed_mode(tmp_path: Path) -> None:
    t = Topology("qkg-", mode="routed")
    t.run_dir = tmp_path
    etsi = {"kme_url": "https://10.1.0.3:8443", "cert_file": "/p/sae.pem",
            "key_file": "/p/sae.key", "ca_file": "/p/ca.pem", "sae_id": "SAE_A"}
    cfg = load_config(t.gateway_config("a", etsi=etsi))
    assert cfg.keys.source == "etsi" and cfg.keys.kme_url == etsi["kme_url"]
    assert cfg.keys.sae_id == "SAE_A" and cfg.keys.peer_sae_id == "gw-b"
    assert cfg.peer == ("172.30.2.1", 51900)  # straight to gateway B
    with pytest.raises(ValueError):
        t.gateway_config("a")


def test_bad_prefix() -> None:
    with pytest.raises(ValueError):
        Topology("x" * 20)
    with pytest.raises(ValueError):
        Topology("qk-", mode="bridge")
