"""Signalling message schema for the conference WebSocket.

Every client message is a JSON object with a ``type`` field. :func:`parse_message`
validates it and returns a typed :class:`Message`, or raises
:class:`SignallingError` whose text is sent back to that client only; a malformed
message never closes the room or crashes the server.

The protocol (the contract between the server, the headless bot and the browser
client) is written out in ``PROTOCOL.md`` beside this module; :data:`_SCHEMA`
below is its client -> server half. Server -> client messages are built with
:func:`encode`. Fields may be added to messages, never renamed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGE_BYTES = 256 * 1024
MAX_CHAT_CHARS = 4000
MAX_NAME_CHARS = 64

# type -> required fields and their Python types (client -> server messages)
_SCHEMA: dict[str, dict[str, type]] = {
    # secret: the room's invite or moderator secret (from the link's fragment)
    "join": {"room": str, "name": str, "secret": str},
    "publish": {"pc": str, "kind": str, "sdp": str},
    "unpublish": {"pc": str},
    "answer": {"pc": str, "sdp": str},
    "chat": {"text": str},
    "mute": {"kind": str, "muted": bool},
    "leave": {},
    # moderator only (granted by the moderator link)
    "remove": {"id": str},
    "lock": {"locked": bool},
}
MAX_SECRET_CHARS = 256

#: Stream sets a client may publish.
PUBLISH_KINDS = ("camera", "screen")


class SignallingError(ValueError):
    """A client message that cannot be accepted; the text goes to that client."""


@dataclass(frozen=True)
class Message:
    """A validated signalling message."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)


def parse_message(raw: str | bytes) -> Message:
    """Validate one raw WebSocket message; raise SignallingError if malformed."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise SignallingError(f"message too large ({len(raw)} > {MAX_MESSAGE_BYTES} bytes)")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SignallingError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SignallingError("message must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise SignallingError("missing string field 'type'")
    schema = _SCHEMA.get(kind)
    if schema is None:
        raise SignallingError(f"unknown message type {kind!r}")
    fields: dict[str, Any] = {}
    for name, expected in schema.items():
        value = data.get(name)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise SignallingError(f"{kind}: field {name!r} must be {expected.__name__}")
        fields[name] = value
    _check_limits(kind, fields)
    return Message(kind, fields)


def _check_limits(kind: str, fields: dict[str, Any]) -> None:
    if kind == "join":
        for name in ("room", "name"):
            value = fields[name].strip()
            if not value or len(value) > MAX_NAME_CHARS:
                raise SignallingError(f"join: {name} must be 1..{MAX_NAME_CHARS} characters")
            fields[name] = value
        if not 1 <= len(fields["secret"]) <= MAX_SECRET_CHARS:
            raise SignallingError("join: invalid invite")
    elif kind == "remove" and not 1 <= len(fields["id"]) <= MAX_NAME_CHARS:
        raise SignallingError(f"remove: id must be 1..{MAX_NAME_CHARS} characters")
    elif kind == "chat":
        if not fields["text"] or len(fields["text"]) > MAX_CHAT_CHARS:
            raise SignallingError(f"chat: text must be 1..{MAX_CHAT_CHARS} characters")
    elif kind == "mute" and fields["kind"] not in ("audio", "video"):
        raise SignallingError("mute: kind must be 'audio' or 'video'")
    if "pc" in fields and not 1 <= len(fields["pc"]) <= MAX_NAME_CHARS:
        raise SignallingError(f"{kind}: pc must be 1..{MAX_NAME_CHARS} characters")
    if kind == "publish" and fields["kind"] not in PUBLISH_KINDS:
        raise SignallingError("publish: kind must be 'camera' or 'screen'")
    if "sdp" in fields and not fields["sdp"].strip():
        raise SignallingError(f"{kind}: sdp must not be empty")


def encode(type_: str, **fields: Any) -> str:
    """A server -> client message as JSON text."""
    return json.dumps({"type": type_, **fields})


def error_message(reason: str) -> str:
    """The JSON error sent back to the client that sent a bad message."""
    return json.dumps({"type": "error", "reason": reason})
