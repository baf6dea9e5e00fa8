"""Mutual TLS for the KME: server and client contexts, SAE ID from the peer certificate.

The server context requires a client certificate signed by the site CA
(``CERT_REQUIRED``): a client without one fails the handshake and never reaches
the API. The caller's ID is the certificate's SAN URI ``urn:qkdmeet:sae:<ID>``
(or ``...:kme:<ID>``) if present, else its subject common name.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

SAN_PREFIXES = ("urn:qkdmeet:sae:", "urn:qkdmeet:kme:")


def server_context(
    cert_file: str | Path, key_file: str | Path, ca_file: str | Path
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    ctx.load_verify_locations(cafile=str(ca_file))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(
    cert_file: str | Path, key_file: str | Path, ca_file: str | Path
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


def identity(peercert: dict[str, Any] | None) -> str | None:
    """The SAE or KME ID named by a verified peer certificate (``getpeercert()``)."""
    if not peercert:
        return None
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "URI":
            for prefix in SAN_PREFIXES:
                if str(value).startswith(prefix):
                    return str(value)[len(prefix) :]
    for rdn in peercert.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None
