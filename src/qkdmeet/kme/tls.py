"""Mutual TLS for the KME: server and client contexts, SAE ID from the peer certificate.

The server context requires a client certificate signed by the site CA
(``CERT_REQUIRED``): a client without one fails the handshake and never reaches
the API. The caller is a :class:`Peer`: the role and ID of the certificate's SAN
URI ``urn:qkdmeet:sae:<ID>`` (an SAE) or ``urn:qkdmeet:kme:<ID>`` (a KME). The
role travels with the ID so that an SAE certificate never passes for a KME,
whatever its name: one CA signs both kinds. A certificate without such a URI
(or with URIs of both roles) names no caller; there is no fallback to the
subject common name, which the role does not bind.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from qkdmeet.errors import ConfigError

Role = Literal["sae", "kme"]
SAN_PREFIXES: dict[Role, str] = {"sae": "urn:qkdmeet:sae:", "kme": "urn:qkdmeet:kme:"}


class CertificateError(ConfigError, OSError):
    """TLS files that cannot be loaded (missing, unreadable, not PEM, key not the
    certificate's); still an ``OSError``, as ``ssl`` raised before."""


def _load(ctx: ssl.SSLContext, cert_file: str | Path, key_file: str | Path) -> None:
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    except OSError as exc:  # ssl.SSLError is one too
        raise CertificateError(
            f"cannot load the certificate {cert_file} with its key {key_file}: "
            f"{exc.strerror or exc}",
            hint="check both paths; `qkdmeet pki init DIR` writes a CA and the KME "
            "and SAE certificates",
        ) from exc


def _ca(ca_file: str | Path) -> str:
    """``ca_file`` as a string, once it is known to be readable."""
    try:
        with open(ca_file, "rb"):
            pass
    except OSError as exc:
        raise CertificateError(
            f"cannot read the CA certificate {ca_file}: {exc.strerror or exc}",
            hint="give the site CA's certificate (ca.pem of `qkdmeet pki init DIR`)",
        ) from exc
    return str(ca_file)


@dataclass(frozen=True, slots=True)
class Peer:
    """Who a verified certificate names: an SAE or a KME, and its ID."""

    role: Role
    name: str

    @property
    def is_sae(self) -> bool:
        return self.role == "sae"

    @property
    def is_kme(self) -> bool:
        return self.role == "kme"


def server_context(
    cert_file: str | Path, key_file: str | Path, ca_file: str | Path
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, cert_file, key_file)
    ctx.load_verify_locations(cafile=_ca(ca_file))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(
    cert_file: str | Path, key_file: str | Path, ca_file: str | Path
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=_ca(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(ctx, cert_file, key_file)
    return ctx


def identity(peercert: dict[str, Any] | None) -> Peer | None:
    """The role and ID named by a verified peer certificate (``getpeercert()``).

    ``None`` when the certificate has no ``urn:qkdmeet:sae:``/``kme:`` URI, an
    empty ID, or names more than one caller (the request is then refused).
    """
    if not peercert:
        return None
    found: set[Peer] = set()
    for kind, value in peercert.get("subjectAltName", ()):
        if kind != "URI":
            continue
        for role, prefix in SAN_PREFIXES.items():
            text = str(value)
            if text.startswith(prefix) and len(text) > len(prefix):
                found.add(Peer(role, text[len(prefix) :]))
    return found.pop() if len(found) == 1 else None
