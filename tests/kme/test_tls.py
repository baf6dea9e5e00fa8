"""Identity from certificates, PKI layout, config parsing."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from qkdmeet.kme import config, pki, tls
from qkdmeet.kme.pair import write_pair


def test_identity_keeps_the_role_and_never_falls_back_to_the_common_name() -> None:
    cert = {
        "subject": ((("commonName", "cn-name"),),),
        "subjectAltName": (("DNS", "x"), ("URI", "urn:qkdmeet:sae:SAE-Q")),
    }
    assert tls.identity(cert) == tls.Peer("sae", "SAE-Q")
    kme = {"subjectAltName": (("URI", "urn:qkdmeet:kme:KME-B"),)}
    assert tls.identity(kme) == tls.Peer("kme", "KME-B")
    # the defect: a certificate without a role URI passed as its common name
    assert tls.identity({"subject": ((("commonName", "KME-B"),),)}) is None
    both = {"subjectAltName": (("URI", "urn:qkdmeet:sae:X"), ("URI", "urn:qkdmeet:kme:X"))}
    assert tls.identity(both) is None
    assert tls.identity({"subjectAltName": (("URI", "urn:qkdmeet:kme:"),)}) is None
    assert tls.identity(None) is None
    assert tls.identity({}) is None


def test_pki_layout_and_contexts(tmp_path: Path) -> None:
    d = pki.init(tmp_path)
    for name in ("kme-a", "kme-b", "sae-a", "sae-b"):
        assert (d / f"{name}.pem").exists() and (d / f"{name}.key").exists()
    assert (d / "ca.pem").exists()
    assert (d / "sae-a.key").stat().st_mode & 0o077 == 0
    ctx = tls.server_context(d / "kme-a.pem", d / "kme-a.key", d / "ca.pem")
    assert ctx.verify_mode == ssl.CERT_REQUIRED


def test_the_ca_private_key_is_never_beside_the_services_files(tmp_path: Path) -> None:
    """Issue 14: `ca.key` sat in the directory the KMEs and gateways read their files
    from, so anyone who could read a service's key could mint certificates."""
    d = pki.init(tmp_path / "pair")
    assert not list(d.glob("ca*.key")) and not list(tmp_path.rglob("ca.key"))  # not kept
    kept = pki.init(tmp_path / "pair2", ca_dir=tmp_path / "ca-private")
    assert not (kept / "ca.key").exists()
    assert (tmp_path / "ca-private").stat().st_mode & 0o077 == 0
    assert (tmp_path / "ca-private" / "ca.key").stat().st_mode & 0o077 == 0
    ca = pki.CertificateAuthority.load(tmp_path / "ca-private")  # and it can issue more
    ident = ca.issue(kept, "sae-c", "SAE-C", "urn:qkdmeet:sae:SAE-C", server=False)
    ctx = tls.client_context(ident.cert, ident.key, kept / "ca.pem")
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ValueError, match="directory of its own"):
        pki.init(tmp_path / "pair3", ca_dir=tmp_path / "pair3")


def test_config_roundtrip_and_errors(tmp_path: Path) -> None:
    files = write_pair(tmp_path, max_key_per_request=32)
    cfg = config.load(files.configs["b"])
    assert cfg.kme_id == "KME-B" and not cfg.authority and cfg.max_key_per_request == 32
    assert cfg.local_saes == ("SAE-B",) and cfg.peer_kme_id == "KME-A"
    bad = tmp_path / "bad.toml"
    bad.write_text("kme_id = 3\nport = 1\n[peer]\n[saes]\n")
    with pytest.raises(config.ConfigError, match=r"missing field|must be"):
        config.load(bad)
    bad.write_text("not toml [")
    with pytest.raises(config.ConfigError):
        config.load(bad)
