"""The conference server's validation layer: JSON limits, admin bodies, request paths.

Every JSON input of the server goes through :mod:`msgspec` schemas: the
signalling messages (``signalling.py``, a tagged union on ``type``) and the
admin API's bodies (:class:`CreateRoom`, :class:`RoomCap`,
:class:`ParticipantCap`; the link status is a free-form object). msgspec was
chosen by measurement (decode *and* validate a typical body: 0.1-1 us, against
0.8-5 us for pydantic and 16-114 us for ``json.loads`` plus jsonschema; see
:mod:`qkdmeet.kme.validation` for the table), and because it is strict (no
``"5"``, ``5.0`` or ``true`` for an integer, no ``1`` for a boolean).

Before any parsing a body is bounded in size and in nesting depth
(:func:`check_json`: the depth is counted on the raw text, strings skipped, so
no parser recursion can be reached). A refusal is an :class:`Invalid` with a
stable ``reason`` code and a fixed text from :data:`REASONS`; the server
answers it with 400 (413 for ``too_large``, 415 for ``unsupported_media_type``)
and never with the text of an exception.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from qkdmeet.errors import ConferenceError
from qkdmeet.jsondepth import json_depth as depth

#: Admin bodies: size and nesting limits.
MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 16
#: Longest request path the static handler looks up (a file name is at most 255
#: bytes, the web app's paths are far shorter).
MAX_STATIC_PATH = 255

REASONS: dict[str, str] = {
    "too_large": "body too large",
    "unsupported_media_type": "Content-Type must be application/json",
    "invalid_json": "body is not valid JSON",
    "too_deep": "body nested too deeply",
    "not_an_object": "body must be a JSON object",
    "schema": "body does not match the request's schema",
}

_FIELD = re.compile(r"at `\$\.?([A-Za-z0-9_]{0,64})")
_STATIC = re.compile(r"[A-Za-z0-9._/-]+")


class Invalid(ConferenceError, ValueError):
    """A refused input: a stable ``reason`` code, a fixed text, the field (or "")."""

    def __init__(self, reason: str, field: str = "", text: str | None = None) -> None:
        self.reason = reason
        self.field = field
        self.text = text or REASONS.get(reason, "invalid input")
        if field and text is None:
            self.text = f"{self.text} (field {field!r})"
        super().__init__(self.text)

    @property
    def status(self) -> int:
        return {"too_large": 413, "unsupported_media_type": 415}.get(self.reason, 400)


def as_bytes(raw: str | bytes) -> bytes:
    if isinstance(raw, bytes):
        return raw
    return raw.encode("utf-8", "surrogatepass")


def check_json(raw: bytes, max_bytes: int = MAX_BODY_BYTES, max_depth: int = MAX_DEPTH) -> None:
    if len(raw) > max_bytes:
        raise Invalid("too_large")
    if depth(raw) > max_depth:
        raise Invalid("too_deep")


def field_of(exc: msgspec.ValidationError) -> str:
    """The top-level field a msgspec error is about (only the path is taken from it)."""
    m = _FIELD.search(str(exc))
    return m.group(1) if m else ""


def decode(raw: str | bytes, decoder: msgspec.json.Decoder[Any], **limits: int) -> Any:
    """``raw`` decoded by ``decoder`` within the limits, or :class:`Invalid`."""
    data = as_bytes(raw)
    check_json(data, **limits)
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        if str(exc).startswith("Expected `object`"):
            raise Invalid("not_an_object") from None
        raise Invalid("schema", field_of(exc)) from None
    except (msgspec.DecodeError, RecursionError, ValueError):
        raise Invalid("invalid_json") from None


# -- the admin API's bodies (PROTOCOL.md) ---------------------------------------------

Seconds = Annotated[float, msgspec.Meta(gt=0, le=100 * 365 * 86400)]
Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Bytes = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
Bps = Annotated[int, msgspec.Meta(ge=0, le=10**12)]


class CreateRoom(msgspec.Struct):
    """``POST /api/rooms``."""

    name: Annotated[str, msgspec.Meta(max_length=256)]
    expires_in_s: Seconds | None = None
    retention_s: Seconds | None = None
    max_documents: Count | None = None
    max_document_bytes: Bytes | None = None


class RoomCap(msgspec.Struct):
    """``POST /api/rooms/{room}/cap``: ``audio_bps``/``camera_bps`` set only when given."""

    bps: Bps | None
    audio_bps: Bps | msgspec.UnsetType | None = msgspec.UNSET
    camera_bps: Bps | msgspec.UnsetType | None = msgspec.UNSET


class ParticipantCap(msgspec.Struct):
    """``POST /api/rooms/{room}/participants/{id}/cap``."""

    bps: Bps | None


DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "create_room": msgspec.json.Decoder(CreateRoom),
    "room_cap": msgspec.json.Decoder(RoomCap),
    "participant_cap": msgspec.json.Decoder(ParticipantCap),
    "object": msgspec.json.Decoder(dict[str, Any]),
}


# -- request paths of the static file handler ----------------------------------------


def static_path(rel: str) -> str | None:
    """The relative path if it may name a file of the web app, else None (404):
    printable ASCII letters, digits, ``. _ - /`` only, at most :data:`MAX_STATIC_PATH`
    characters, no empty, ``.`` or ``..`` component. No NUL byte reaches the file system."""
    if not rel or len(rel) > MAX_STATIC_PATH or not _STATIC.fullmatch(rel):
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return rel
