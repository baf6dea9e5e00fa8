"""Who may enter a room: operator-created rooms, invite and moderator secrets, sessions.

A room exists only when the operator creates it (the server's configuration,
``qkdmeet conference serve --room``, or ``qkdmeet conference room create``
through the admin interface). Creating it mints two secrets of
:data:`SECRET_BYTES` random bytes (192 bits): the *invite* (join as a
participant) and the *moderator* secret (join with moderator rights). They are
shown once, as URLs, and stored only as SHA-256 hashes (the secrets are
uniformly random, so a fast hash is enough: there is nothing to brute-force
below 2^192), compared in constant time (:func:`hmac.compare_digest`). Both
can expire (``expires_at``) and be revoked or rotated.

The secret travels in the URL's *fragment* (``/?room=R#invite=S``): a browser
never sends the fragment to the server in an HTTP request, so it stays out of
access logs and ``Referer`` headers; the page reads it and sends it in the
WebSocket ``join`` message.

A joined participant gets a *session token* (another 256-bit random value)
in its ``joined`` message; every HTTP request of that participant carries it
(``Authorization: Bearer``) and is answered for that participant's room only.
The token dies with the WebSocket.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from qkdmeet.errors import ConferenceError

#: Random bytes per invite or moderator secret (192 bits).
SECRET_BYTES = 24
#: Random bytes per session token (256 bits).
TOKEN_BYTES = 32
ROOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ROLES = ("invite", "moderator")


class AccessError(ConferenceError, ValueError):
    """A refused room operation (bad name, unknown room, duplicate)."""


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def check_room_name(name: str) -> str:
    if not isinstance(name, str) or not ROOM_NAME.fullmatch(name):
        raise AccessError(
            "room name must be 1..64 letters, digits, '.', '_' or '-' (starting with a "
            "letter or digit)"
        )
    return name


@dataclass
class RoomRecord:
    """A room the operator created: its secrets' hashes and its limits."""

    name: str
    invite_hash: str
    moderator_hash: str
    created: float = field(default_factory=time.time)
    expires_at: float | None = None  # secrets refused from then on
    revoked: bool = False  # both secrets refused (the room stays until closed)
    retention_s: float | None = None  # documents deleted this long after upload
    max_documents: int | None = None
    max_document_bytes: int | None = None

    def role_of(self, secret: str, now: float | None = None) -> str | None:
        """``"invite"``, ``"moderator"`` or None (wrong, expired or revoked secret)."""
        if self.revoked or not isinstance(secret, str) or not secret:
            return None
        if self.expires_at is not None and (now or time.time()) >= self.expires_at:
            return None
        digest = secret_hash(secret)
        # both compared, always, in constant time
        is_invite = hmac.compare_digest(digest, self.invite_hash)
        is_moderator = hmac.compare_digest(digest, self.moderator_hash)
        if is_moderator:
            return "moderator"
        return "invite" if is_invite else None

    def public(self) -> dict[str, Any]:
        """The record without its hashes (admin listings)."""
        d = asdict(self)
        d.pop("invite_hash")
        d.pop("moderator_hash")
        return d


@dataclass(frozen=True)
class Invite:
    """A room's freshly minted secrets and the URLs carrying them (shown once)."""

    room: str
    invite: str
    moderator: str

    def urls(self, base: str) -> dict[str, str]:
        return {
            "room": self.room,
            "invite_url": invite_url(base, self.room, "invite", self.invite),
            "moderator_url": invite_url(base, self.room, "moderator", self.moderator),
        }


def invite_url(base: str, room: str, role: str, secret: str) -> str:
    return f"{base.rstrip('/')}/?room={quote(room)}#{role}={secret}"


@dataclass(frozen=True)
class ParsedInvite:
    base: str  # scheme://host:port
    room: str | None
    role: str | None  # invite | moderator
    secret: str | None


def parse_invite(url: str) -> ParsedInvite:
    """Split an invite or moderator URL into server base, room and secret."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}" if parts.scheme else url.rstrip("/")
    rooms = parse_qs(parts.query).get("room")
    room = rooms[0] if rooms else None
    role = secret = None
    frag = parse_qs(parts.fragment)
    for r in ROLES:
        if frag.get(r):
            role, secret = r, frag[r][0]
            break
    return ParsedInvite(base, room, role, secret)


class RoomRegistry:
    """The operator's rooms, persisted (hashes only) in ``path`` (mode 0600)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.rooms: dict[str, RoomRecord] = {}
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
                for item in data.get("rooms", []):
                    rec = RoomRecord(**item)
                    self.rooms[rec.name] = rec
            except (OSError, ValueError, TypeError) as exc:
                raise AccessError(f"cannot read the room registry {path}: {exc}") from exc

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"rooms": [asdict(r) for r in self.rooms.values()]}, f)
        os.replace(tmp, self.path)

    def create(
        self,
        name: str,
        *,
        expires_in_s: float | None = None,
        retention_s: float | None = None,
        max_documents: int | None = None,
        max_document_bytes: int | None = None,
        replace: bool = False,
    ) -> Invite:
        """A new room (or, with ``replace``, new secrets for an existing one)."""
        check_room_name(name)
        if name in self.rooms and not replace:
            raise AccessError(f"room {name!r} exists")
        for label, value in (("expires_in_s", expires_in_s), ("retention_s", retention_s)):
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise AccessError(f"{label} must be a positive number of seconds")
        for label, value in (
            ("max_documents", max_documents),
            ("max_document_bytes", max_document_bytes),
        ):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise AccessError(f"{label} must be a non-negative integer")
        invite = Invite(name, new_secret(), new_secret())
        self.rooms[name] = RoomRecord(
            name,
            secret_hash(invite.invite),
            secret_hash(invite.moderator),
            expires_at=time.time() + expires_in_s if expires_in_s else None,
            retention_s=retention_s,
            max_documents=max_documents,
            max_document_bytes=max_document_bytes,
        )
        self._save()
        return invite

    def rotate(self, name: str) -> Invite:
        """New secrets for a room (the old invite and moderator links stop working)."""
        old = self.get(name)
        invite = Invite(name, new_secret(), new_secret())
        old.invite_hash, old.moderator_hash = secret_hash(invite.invite), secret_hash(
            invite.moderator
        )
        old.revoked = False
        self._save()
        return invite

    def revoke(self, name: str) -> None:
        self.get(name).revoked = True
        self._save()

    def remove(self, name: str) -> None:
        self.get(name)
        del self.rooms[name]
        self._save()

    def get(self, name: str) -> RoomRecord:
        rec = self.rooms.get(name)
        if rec is None:
            raise AccessError(f"no room {name!r}")
        return rec

    def authorise(self, name: str, secret: str) -> str | None:
        """The role a secret grants in a room; None for any failure (same answer
        for an unknown room and a wrong secret)."""
        rec = self.rooms.get(name)
        if rec is None:
            secret_hash(secret if isinstance(secret, str) else "")  # same work either way
            return None
        return rec.role_of(secret)


class FailureLimiter:
    """At most ``limit`` failures per source in a sliding ``window_s``."""

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, source: str, now: float) -> deque[float]:
        q = self._failures.setdefault(source, deque())
        while q and now - q[0] >= self.window_s:
            q.popleft()
        if not q:
            del self._failures[source]
            q = self._failures.setdefault(source, deque())
        return q

    def blocked(self, source: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        blocked = len(self._recent(source, now)) >= self.limit
        if not self._failures.get(source):
            self._failures.pop(source, None)
        return blocked

    def fail(self, source: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._recent(source, now).append(now)
        if len(self._failures) > 10_000:  # bounded memory under a spray of sources
            oldest = min(self._failures, key=lambda s: self._failures[s][-1])
            del self._failures[oldest]
