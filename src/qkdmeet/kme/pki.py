"""A throwaway PKI for a two-site deployment: ``qkdmeet pki init DIR``.

Layout (PEM): ``ca.pem``; for each site ``kme-<site>.pem``/``.key``
(server and client auth, SAN DNS ``localhost`` and IP 127.0.0.1, URI
``urn:qkdmeet:kme:<KME ID>``) and ``sae-<site>.pem``/``.key`` (client auth, URI
``urn:qkdmeet:sae:<SAE ID>``).

The CA's private key is never left beside the services' files (issue 14): it
is written only to a directory of its own that the caller names (``ca_dir``,
mode 0700; ``qkdmeet pki init DIR --ca-dir CADIR``), to issue more
certificates later, and otherwise forgotten once the certificates are issued.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SITES = ("a", "b")


@dataclass(frozen=True, slots=True)
class Identity:
    cert: Path
    key: Path


def kme_id(site: str) -> str:
    return f"KME-{site.upper()}"


def sae_id(site: str) -> str:
    return f"SAE-{site.upper()}"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


class CertificateAuthority:
    """An EC P-256 CA that issues KME and SAE certificates."""

    @classmethod
    def load(cls, ca_dir: str | Path) -> CertificateAuthority:
        """The CA whose private key :meth:`write` kept in ``ca_dir`` (``ca.pem``,
        ``ca.key``)."""
        d = Path(ca_dir)
        ca = cls.__new__(cls)
        key = serialization.load_pem_private_key((d / "ca.key").read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{d / 'ca.key'} is not an EC private key")
        ca.key = key
        ca.cert = x509.load_pem_x509_certificate((d / "ca.pem").read_bytes())
        return ca

    def __init__(self, name: str = "qkdmeet CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    def write(self, directory: Path, ca_dir: Path | None = None) -> Path:
        """``ca.pem`` into ``directory``; the private key only into ``ca_dir``
        (created 0700, with its own ``ca.pem``), never into ``directory``."""
        pem = self.cert.public_bytes(serialization.Encoding.PEM)
        (directory / "ca.pem").write_bytes(pem)
        if ca_dir is not None:
            if ca_dir.resolve() == directory.resolve():
                raise ValueError("the CA's private key goes to a directory of its own")
            ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            ca_dir.chmod(0o700)
            (ca_dir / "ca.pem").write_bytes(pem)
            _write_key(ca_dir / "ca.key", self.key)
        return directory / "ca.pem"

    def issue(
        self,
        directory: Path,
        stem: str,
        common_name: str,
        uri: str,
        *,
        server: bool,
        hosts: Sequence[str] = (),
    ) -> Identity:
        """A certificate for ``common_name``; a server one also names ``localhost``,
        127.0.0.1 and each of ``hosts`` (IP addresses or DNS names) in its SAN."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            sans += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            sans += [_host_name(h) for h in hosts]
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        cert_path = directory / f"{stem}.pem"
        key_path = directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return Identity(cert_path, key_path)


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def init(
    directory: str | Path,
    sites: tuple[str, ...] = SITES,
    *,
    hosts: Mapping[str, Sequence[str]] | None = None,
    ca_dir: str | Path | None = None,
) -> Path:
    """Create the CA and, per site, a KME and an SAE identity; returns the directory.

    ``hosts`` adds addresses or names to a site's KME certificate (e.g. the
    address its peer KME and its SAEs reach it at, when not on loopback).
    The CA's private key is kept in ``ca_dir`` (not ``directory``), or nowhere.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority()
    ca.write(out, None if ca_dir is None else Path(ca_dir))
    for site in sites:
        ca.issue(
            out,
            f"kme-{site}",
            kme_id(site),
            f"urn:qkdmeet:kme:{kme_id(site)}",
            server=True,
            hosts=(hosts or {}).get(site, ()),
        )
        ca.issue(out, f"sae-{site}", sae_id(site), f"urn:qkdmeet:sae:{sae_id(site)}", server=False)
    return out
