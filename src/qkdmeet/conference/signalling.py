"""Signalling message schema for the conference WebSocket.

Every client message is a JSON object with a ``type`` field. :func:`parse_message`
validates it and returns a typed :class:`Message`, or raises
:class:`SignallingError` whose fixed text (``reason``) and stable ``code`` are
sent back to that client only; a malformed message never closes the room or
crashes the server, and no reply carries the text of an exception.

The protocol (the contract between the server, the headless bot and the browser
client) is written out in ``PROTOCOL.md`` beside this module; :data:`SCHEMAS`
below is its client -> server half, as :mod:`msgspec` structs (a union tagged
by ``type``; see :mod:`qkdmeet.conference.validation` for why msgspec). A
message is bounded before parsing: :data:`MAX_MESSAGE_BYTES` and
:data:`MAX_DEPTH` levels of nesting. Server -> client messages are built with
:func:`encode`. Fields may be added to messages, never renamed.

Error codes (the ``code`` of ``{"type": "error", "reason": str, "code": str}``):
``too_large``, ``invalid_json``, ``too_deep``, ``not_an_object``,
``unknown_type``, ``invalid_field`` (missing, wrong type or out of limits),
``not_joined``, ``join_refused``, ``throttled``, ``locked``, ``full``,
``forbidden`` (moderator only: ``remove``, ``lock``, ``mute_participant``),
``unknown_pc``, ``bad_sdp``, ``binary``, ``flood``, ``failed`` (anything else: the
message could not be carried out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from qkdmeet.conference.validation import Invalid, as_bytes, check_json, field_of
from qkdmeet.errors import ConferenceError

MAX_MESSAGE_BYTES = 256 * 1024
MAX_CHAT_CHARS = 4000
MAX_NAME_CHARS = 64
MAX_SECRET_CHARS = 256
#: No client message nests; a little room for fields added later.
MAX_DEPTH = 8

#: The ``code`` of every ``error`` reply (see the module's docstring).
ERROR_CODES = (
    "too_large", "invalid_json", "too_deep", "not_an_object", "unknown_type", "invalid_field",
    "not_joined", "join_refused", "throttled", "locked", "full", "forbidden", "unknown_pc",
    "bad_sdp", "binary", "flood", "failed",
)

#: Stream sets a client may publish.
PUBLISH_KINDS = ("camera", "screen")

_Short = Annotated[str, msgspec.Meta(max_length=4 * MAX_NAME_CHARS)]  # trimmed below
_Sdp = Annotated[str, msgspec.Meta(max_length=MAX_MESSAGE_BYTES)]


class _Msg(msgspec.Struct, tag_field="type"):
    pass


class Join(_Msg, tag="join"):
    room: _Short
    name: _Short
    # the room's invite or moderator secret (from the link's fragment)
    secret: Annotated[str, msgspec.Meta(max_length=4 * MAX_SECRET_CHARS)]


class Publish(_Msg, tag="publish"):
    pc: _Short
    kind: _Short
    sdp: _Sdp


class Unpublish(_Msg, tag="unpublish"):
    pc: _Short


class Answer(_Msg, tag="answer"):
    pc: _Short
    sdp: _Sdp


class Chat(_Msg, tag="chat"):
    text: Annotated[str, msgspec.Meta(max_length=4 * MAX_CHAT_CHARS)]


class Mute(_Msg, tag="mute"):
    kind: _Short
    muted: bool


class Leave(_Msg, tag="leave"):
    pass


class Remove(_Msg, tag="remove"):  # moderator only (granted by the moderator link)
    id: _Short


class Lock(_Msg, tag="lock"):  # moderator only
    locked: bool


class MuteParticipant(_Msg, tag="mute_participant"):  # moderator only
    id: _Short
    kind: _Short  # audio | video


class Hand(_Msg, tag="hand"):  # raise / lower one's own hand
    raised: bool


SCHEMAS: tuple[type[_Msg], ...] = (Join, Publish, Unpublish, Answer, Chat, Mute, Leave, Remove,
                                   Lock, MuteParticipant, Hand)
_TYPES = {str(t.__struct_config__.tag): t for t in SCHEMAS}
_DECODER = msgspec.json.Decoder(Join | Publish | Unpublish | Answer | Chat | Mute | Leave
                                | Remove | Lock | MuteParticipant | Hand)
#: Media kinds of ``mute`` and ``mute_participant``.
MUTE_KINDS = ("audio", "video")


class SignallingError(ConferenceError, ValueError):
    """A client message that cannot be accepted: ``reason`` (fixed text) and ``code``."""

    def __init__(self, reason: str, code: str = "invalid_field") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True)
class Message:
    """A validated signalling message."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)


def _kind_of(data: bytes) -> str | None:
    """The message's ``type`` if it is a known one (for a precise error text)."""
    try:
        obj = msgspec.json.decode(data)
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    kind = obj.get("type") if isinstance(obj, dict) else None
    return kind if isinstance(kind, str) and kind in _TYPES else None


def parse_message(raw: str | bytes) -> Message:
    """Validate one raw WebSocket message; raise SignallingError if malformed."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise SignallingError(f"message too large (> {MAX_MESSAGE_BYTES} bytes)", "too_large")
    data = as_bytes(raw)
    try:
        check_json(data, MAX_MESSAGE_BYTES, MAX_DEPTH)
        msg = _DECODER.decode(data)
    except Invalid as exc:
        if exc.reason == "too_deep":
            raise SignallingError("message nested too deeply", "too_deep") from None
        raise SignallingError("message too large", "too_large") from None
    except msgspec.ValidationError as exc:
        text, name = str(exc), field_of(exc)
        if text.startswith("Expected `object`"):
            raise SignallingError("message must be a JSON object", "not_an_object") from None
        if name == "type" and "Invalid value" in text:
            raise SignallingError("unknown message type", "unknown_type") from None
        if name == "type" or "required field `type`" in text:
            raise SignallingError("missing string field 'type'", "unknown_type") from None
        kind = _kind_of(data) or "message"
        missing = text.split("required field `", 1)[1].split("`", 1)[0] if (
            "required field `" in text) else ""
        name = name or missing
        schema = _TYPES.get(kind)
        expected = schema.__annotations__.get(name, "") if schema else ""
        what = "bool" if "bool" in str(expected) else "str"
        if "length" in text:
            raise SignallingError(f"{kind}: field {name!r} is too long") from None
        raise SignallingError(f"{kind}: field {name!r} must be {what}") from None
    except (msgspec.DecodeError, RecursionError, ValueError):
        raise SignallingError("not valid JSON", "invalid_json") from None
    kind = str(type(msg).__struct_config__.tag)
    fields = {f: getattr(msg, f) for f in msg.__struct_fields__}
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
    elif kind == "chat" and not 1 <= len(fields["text"]) <= MAX_CHAT_CHARS:
        raise SignallingError(f"chat: text must be 1..{MAX_CHAT_CHARS} characters")
    if "id" in fields and not 1 <= len(fields["id"]) <= MAX_NAME_CHARS:
        raise SignallingError(f"{kind}: id must be 1..{MAX_NAME_CHARS} characters")
    if kind in ("mute", "mute_participant") and fields["kind"] not in MUTE_KINDS:
        raise SignallingError(f"{kind}: kind must be 'audio' or 'video'")
    if "pc" in fields and not 1 <= len(fields["pc"]) <= MAX_NAME_CHARS:
        raise SignallingError(f"{kind}: pc must be 1..{MAX_NAME_CHARS} characters")
    if kind == "publish" and fields["kind"] not in PUBLISH_KINDS:
        raise SignallingError("publish: kind must be 'camera' or 'screen'")
    if "sdp" in fields and not fields["sdp"].strip():
        raise SignallingError(f"{kind}: sdp must not be empty")


def encode(type_: str, **fields: Any) -> str:
    """A server -> client message as JSON text."""
    return json.dumps({"type": type_, **fields})


def error_message(reason: str, code: str = "invalid_field") -> str:
    """The JSON error sent back to the client that sent a bad message: a fixed text and
    a stable code (see the module's docstring), never an exception's text."""
    return json.dumps({"type": "error", "reason": reason, "code": code})


def error_of(exc: SignallingError) -> str:
    return error_message(exc.reason, exc.code)
