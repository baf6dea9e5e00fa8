"""Conference server configuration (TOML) and its self-signed certificate.

```toml
host = "0.0.0.0"
port = 8443
state_dir = "/var/lib/qkdmeet/conference"   # self-signed cert and uploads
cert = "/etc/qkdmeet/conference.pem"         # optional; with key
key = "/etc/qkdmeet/conference.key"
tls = true                                   # false: plain HTTP (behind a proxy)

public_url = "https://conf.site-a.example:8443"  # optional: the base of invite URLs

[rooms]
max_participants = 16
max_documents = 50           # per room; beyond: 413
max_bytes = 209715200        # all documents of a room together; beyond: 413
retention_s = 86400          # documents deleted this long after upload (default: kept
                             # until the room is closed)

[[room]]                     # rooms the server serves (fresh secrets at every start)
name = "tumour-board"
expires_in_s = 604800        # optional: the invite and moderator links expire
retention_s = 3600           # optional, this room's own retention and quotas
max_documents = 20
max_document_bytes = 52428800

[uploads]
dir = "/var/lib/qkdmeet/conference/uploads"  # default: <state_dir>/uploads
max_bytes = 20971520                         # one upload

[admin]
socket = "/run/qkdmeet/conference-admin.sock"  # default: <state_dir>/admin.sock (0600)

[security]
max_failed_joins_per_minute = 10  # per source address
allowed_origins = ["https://conf.site-a.example"]  # besides the server's own
```

Rooms exist only when the operator creates them: in ``[[room]]`` tables (or
``serve --room NAME``), whose invite and moderator links are minted at every
start and printed in the start-up line, or at run time with
``qkdmeet conference room create`` over the admin socket (those persist in
``<state_dir>/rooms.json``, as hashes). See ``access.py``.

Browsers allow camera and microphone only in a secure context, so without a
certificate the server creates a self-signed one on first run in
``state_dir`` and reuses it afterwards.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import socket
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from qkdmeet.conference.access import AccessError, check_room_name
from qkdmeet.errors import ConfigError as ConfigError  # the one ConfigError (errors.py)

DEFAULT_PORT = 8443
DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
DEFAULT_MAX_PARTICIPANTS = 16
DEFAULT_MAX_DOCUMENTS = 50
DEFAULT_MAX_ROOM_BYTES = 200 * 1024 * 1024
DEFAULT_MAX_FAILED_JOINS = 10
#: sun_path of a Unix socket holds 108 bytes
MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class RoomSpec:
    """A room of the configuration: created (fresh secrets) at every start."""

    name: str
    expires_in_s: float | None = None
    retention_s: float | None = None
    max_documents: int | None = None
    max_document_bytes: int | None = None


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
    rooms: list[RoomSpec] = field(default_factory=list)
    max_documents: int = DEFAULT_MAX_DOCUMENTS
    max_room_bytes: int = DEFAULT_MAX_ROOM_BYTES
    retention_s: float | None = None
    admin_socket: Path | None = None
    max_failed_joins: int = DEFAULT_MAX_FAILED_JOINS
    allowed_origins: list[str] = field(default_factory=list)
    public_url: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError("cert and key must be given together")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} out of range")
        if self.max_upload_bytes <= 0 or self.max_participants <= 0:
            raise ConfigError("limits must be positive")
        if self.max_documents < 0 or self.max_room_bytes < 0 or self.max_failed_joins <= 0:
            raise ConfigError("room quotas must be >= 0 and max_failed_joins > 0")
        if self.retention_s is not None and not self.retention_s > 0:
            raise ConfigError("retention_s must be positive")
        for spec in self.rooms:
            try:
                check_room_name(spec.name)
            except AccessError as exc:
                raise ConfigError(f"[[room]] {spec.name!r}: {exc}") from exc
        names = [r.name for r in self.rooms]
        if len(set(names)) != len(names):
            raise ConfigError("a room is configured twice")
        if len(str(self.admin_path)) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"admin socket path {self.admin_path} is longer than {MAX_SOCKET_PATH} "
                "characters: set [admin] socket"
            )

    @property
    def admin_path(self) -> Path:
        """The admin interface's Unix socket (mode 0600)."""
        return self.admin_socket if self.admin_socket is not None else self.state_dir / "admin.sock"

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
        admin = data.get("admin", {})
        security = data.get("security", {})
        kwargs: dict[str, Any] = {}
        try:
            for name, value in (
                ("host", data.get("host")),
                ("port", data.get("port")),
                ("tls", data.get("tls")),
                ("public_url", data.get("public_url")),
                ("max_participants", rooms.get("max_participants")),
                ("max_documents", rooms.get("max_documents")),
                ("max_room_bytes", rooms.get("max_bytes")),
                ("retention_s", rooms.get("retention_s")),
                ("max_upload_bytes", uploads.get("max_bytes")),
                ("max_failed_joins", security.get("max_failed_joins_per_minute")),
                ("allowed_origins", security.get("allowed_origins")),
            ):
                if value is not None:
                    kwargs[name] = value
            for name, value in (
                ("state_dir", data.get("state_dir")),
                ("cert", data.get("cert")),
                ("key", data.get("key")),
                ("upload_dir", uploads.get("dir")),
                ("web_dir", data.get("web_dir")),
                ("admin_socket", admin.get("socket")),
            ):
                if value is not None:
                    kwargs[name] = Path(str(value))
            specs = data.get("room", [])
            if not isinstance(specs, list) or not all(isinstance(r, dict) for r in specs):
                raise ConfigError("[[room]] must be tables")
            kwargs["rooms"] = [RoomSpec(**r) for r in specs]
        except AttributeError as exc:
            raise ConfigError(f"bad configuration table: {exc}") from exc
        except TypeError as exc:
            raise ConfigError(f"bad [[room]] table: {exc}") from exc
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        for name, typ in (
            ("port", int),
            ("max_participants", int),
            ("max_upload_bytes", int),
            ("max_documents", int),
            ("max_room_bytes", int),
            ("max_failed_joins", int),
        ):
            if name in kwargs and (
                not isinstance(kwargs[name], typ) or isinstance(kwargs[name], bool)
            ):
                raise ConfigError(f"{name} must be an integer")
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc

    def to_dict(self) -> dict[str, Any]:
        """The TOML tables :meth:`from_dict` reads (the one place both directions of
        the format meet: a field added here is added to both)."""
        def put(table: dict[str, Any], key: str, value: Any) -> None:
            if value is not None:
                table[key] = str(value) if isinstance(value, Path) else value

        out: dict[str, Any] = {}
        for key in ("host", "port", "state_dir", "cert", "key", "tls", "public_url"):
            put(out, key, getattr(self, key))
        if self.web_dir != ServerConfig.web_dir:
            put(out, "web_dir", self.web_dir)
        rooms: dict[str, Any] = {}
        for key, value in (("max_participants", self.max_participants),
                           ("max_documents", self.max_documents),
                           ("max_bytes", self.max_room_bytes),
                           ("retention_s", self.retention_s)):
            put(rooms, key, value)
        out["rooms"] = rooms
        uploads: dict[str, Any] = {"max_bytes": self.max_upload_bytes}
        put(uploads, "dir", self.upload_dir)
        out["uploads"] = uploads
        if self.admin_socket is not None:
            out["admin"] = {"socket": str(self.admin_socket)}
        out["security"] = {"max_failed_joins_per_minute": self.max_failed_joins,
                           "allowed_origins": list(self.allowed_origins)}
        if self.rooms:
            out["room"] = [{k: v for k, v in dataclasses.asdict(r).items() if v is not None}
                           for r in self.rooms]
        return out

    def write(self, path: str | Path) -> Path:
        """This configuration as the TOML file ``path`` (read back by :meth:`load`)."""
        out = Path(path)
        out.write_text(tomli_w.dumps(self.to_dict()))
        return out

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
