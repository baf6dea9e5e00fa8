"""The documented vendor-KME configuration (deploy/vendor-kme/) parses and pairs up."""

from __future__ import annotations

from pathlib import Path

from qkdmeet.vpn.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "vendor-kme"


def test_vendor_kme_gateway_pair_is_consistent() -> None:
    a = load_config(DEPLOY / "gateway-a.toml")
    b = load_config(DEPLOY / "gateway-b.toml")
    assert a.keys.source == b.keys.source == "etsi"
    assert (a.keys.sae_id, a.keys.peer_sae_id) == (b.keys.peer_sae_id, b.keys.sae_id)
    assert a.listen == b.peer and b.listen == a.peer
    assert a.keys.kme_url != b.keys.kme_url and a.keys.in_flight >= 8
    assert all(k.cert_file and k.key_file and k.ca_file for k in (a.keys, b.keys))
