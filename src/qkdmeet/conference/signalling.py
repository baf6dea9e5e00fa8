"""Signalling message schema for the conference WebSocket.

Every client message is a JSON object with a ``type`` field. :func:`parse_message`
validates it and returns a typed :class:`Message`, or raises
:class:`SignallingError` whose text is sent back to that client only; a malformed
message never closes the room or crashes the server.

THE PROTOCOL (contract between server, headless bot and browser client;
the lead engineer's spec: implement exactly, fields may be added, not renamed).
This replaces PROTOCOL_PLACEHOLDER in the server task. Also in PROTOCOL.md.

## Conference signalling protocol (shared contract between the server, the headless bot and the browser client)
HTTPS server (aiohttp). Static browser app at `/` (files in src/qkdmeet/conference/web/: index.html, app.js, style.css; no build step). WebSocket at `/ws`. JSON text messages, each with `"type"`. ICE is NOT trickled (aiortc does not trickle): each side sends its SDP after ICE gathering has completed (browser: wait for `icegatheringstatechange` == complete, then send `pc.localDescription.sdp`). One RTCPeerConnection per published stream set and one per subscribed remote stream set (robust with aiortc; no renegotiation needed):

Client -> server
- `{"type":"join","room":str,"name":str}` (first message)
- `{"type":"publish","pc":str,"kind":"camera"|"screen","sdp":str}`: an SDP offer from a client-created send-only PeerConnection. "camera": one video (VP8) + one audio (Opus) track; "screen": one video track. `pc` is chosen by the client (e.g. "camera", "screen").
- `{"type":"unpublish","pc":str}`: the client stopped that stream set (e.g. ended screen share).
- `{"type":"answer","pc":str,"sdp":str}`: answer to a server `subscribe` offer.
- `{"type":"chat","text":str}`
- `{"type":"mute","kind":"audio"|"video","muted":bool}`
- `{"type":"leave"}`

Server -> client
- `{"type":"joined","id":str,"room":str,"participants":[{"id":str,"name":str}],"bitrates":{"camera":int,"screen":int,"audio":int},"documents":[<document>...],"link":<link or null>}`
- `{"type":"participant_joined","id":str,"name":str}` / `{"type":"participant_left","id":str}`
- `{"type":"answer","pc":str,"sdp":str}`: the answer to a `publish`.
- `{"type":"subscribe","pc":str,"from":str,"name":str,"kind":"camera"|"screen","sdp":str}`: a server-created offer carrying one remote participant's published stream set (receive-only for the client); the client answers with `answer`. `pc` is chosen by the server (e.g. "sub-p2-camera").
- `{"type":"unsubscribe","pc":str}`: that remote stream set ended; the client closes that PeerConnection.
- `{"type":"chat","from":str,"name":str,"text":str,"ts":float}` (broadcast to everyone in the room, sender included)
- `{"type":"mute","id":str,"kind":str,"muted":bool}`
- `{"type":"bitrate","camera":int,"screen":int,"audio":int}`: the caps changed (per participant/room cap from the HTTP API); the client applies them with RTCRtpSender.setParameters (encodings[0].maxBitrate).
- `{"type":"document","document":{"id":str,"name":str,"size":int,"content_type":str,"from":str,"url":str}}`: someone uploaded a document.
- `{"type":"link","link":{...}}`: protection status of the link for the indicator (free-form JSON object posted by the demo: e.g. {"protected":true,"key_buffered_bytes":...,"sustainable_bps":...,"qber":...,"alarm":null}).
- `{"type":"error","reason":str}`: a bad message (the connection stays open).

HTTP API (same server)
- `POST /api/rooms/{room}/documents` multipart/form-data field `file` (+ header or form field `participant` id): stores the upload (limit e.g. 20 MB; allowed types PDF, HTML, PNG, JPEG, plain text; others 415, oversize 413, malformed 400), broadcasts `document`; returns the document JSON. `GET /api/documents/{id}` returns the bytes unchanged (Content-Disposition with the file name).
- `GET /api/rooms` and `GET /api/rooms/{room}`: participants, streams, forwarding stats (JSON).
- `POST /api/rooms/{room}/cap` `{"bps":int|null}` room-wide video cap; `POST /api/rooms/{room}/participants/{id}/cap` `{"bps":int|null}`.
- `POST /api/link` `{...}`: sets the link status broadcast as `link` to every room.
- `GET /healthz`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_MESSAGE_BYTES = 256 * 1024
MAX_CHAT_CHARS = 4000
MAX_NAME_CHARS = 64

# type -> required fields and their Python types
_SCHEMA: dict[str, dict[str, type]] = {
    "join": {"room": str, "name": str},
    "offer": {"sdp": str},
    "answer": {"sdp": str},
    "candidate": {"candidate": str},
    "chat": {"text": str},
    "mute": {"kind": str, "muted": bool},
    "leave": {},
}


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
    elif kind == "chat":
        if not fields["text"] or len(fields["text"]) > MAX_CHAT_CHARS:
            raise SignallingError(f"chat: text must be 1..{MAX_CHAT_CHARS} characters")
    elif kind == "mute" and fields["kind"] not in ("audio", "video"):
        raise SignallingError("mute: kind must be 'audio' or 'video'")


def error_message(reason: str) -> str:
    """The JSON error sent back to the client that sent a bad message."""
    return json.dumps({"type": "error", "reason": reason})
