"""Conference server configuration (TOML) and its self-signed certificate.

```toml
host = "0.0.0.0"
port = 8443
state_dir = "/var/lib/qkdmeet/conference"   # self-signed cert and uploads
cert = "/etc/qkdmeet/conference.pem"         # optional; with key
key = "/etc/qkdmeet/conference.key"
tls = true                                   # false: plain HTTP (behind a proxy)

[rooms]
max_participants = 16

[uploads]
dir = "/var/lib/qkdmeet/conference/uploads"  # default: <state_dir>/uploads
max_bytes = 20971520
```

Browsers allow camera and microphone only in a secure context, so without a
certificate the server creates a self-signed one on first run in
``state_dir`` and reuses it afterwards.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_PORT = 8443
DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
DEFAULT_MAX_PARTICIPANTS = 16


class ConfigError(ValueError):
    """An invalid configuration file or option."""


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    state_dir: Path = Path("conference-state")
    cert: Path | None = None
    key: Path | None = None
    tls: bool = True
    max_participants: int = DEFAULT_MAX_PARTICIPANTS
    upload_dir: Path | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    web_dir: Path = Path(__file__).parent / "web"

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError("cert and key must be given together")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} out of range")
        if self.max_upload_bytes <= 0 or self.max_participants <= 0:
            raise ConfigError("limits must be positive")

    @property
    def uploads(self) -> Path:
        return self.upload_dir if self.upload_dir is not None else self.state_dir / "uploads"

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> ServerConfig:
        """Read a TOML file; ``overrides`` that are not None win (command-line flags)."""
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        return cls.from_dict(data, **overrides)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> ServerConfig:
        rooms = data.get("rooms", {})
        uploads = data.get("uploads", {})
        kwargs: dict[str, Any] = {}
        try:
            for name, value in (
                ("host", data.get("host")),
                ("port", data.get("port")),
                ("tls", data.get("tls")),
                ("max_participants", rooms.get("max_participants")),
                ("max_upload_bytes", uploads.get("max_bytes")),
            ):
                if value is not None:
                    kwargs[name] = value
            for name, value in (
                ("state_dir", data.get("state_dir")),
                ("cert", data.get("cert")),
                ("key", data.get("key")),
                ("upload_dir", uploads.get("dir")),
                ("web_dir", data.get("web_dir")),
            ):
                if value is not None:
                    kwargs[name] = Path(str(value))
        except AttributeError as exc:
            raise ConfigError(f"bad configuration table: {exc}") from exc
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        for name, typ in (("port", int), ("max_participants", int), ("max_upload_bytes", int)):
            if name in kwargs and (
                not isinstance(kwargs[name], typ) or isinstance(kwargs[name], bool)
            ):
                raise ConfigError(f"{name} must be an integer")
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context to serve with (None when tls is off)."""
        if not self.tls:
            return None
        cert, key = (self.cert, self.key) if self.cert else self_signed(self.state_dir, self.host)
        assert key is not None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load certificate {cert}: {exc}") from exc
        return ctx


def self_signed(state_dir: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """The state dir's self-signed certificate and key, created on first use."""
    cert_path, key_path = state_dir / "conference-cert.pem", state_dir / "conference-key.pem"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    state_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName(socket.gethostname()),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    try:
        if host not in ("127.0.0.1", "0.0.0.0", "::"):
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qkdmeet conference")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
