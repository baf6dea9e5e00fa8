"""Outer packet codec: header pack/unpack, body and tag split.

Pure functions over bytes; no key, no I/O. See :mod:`.constants` for the
wire layout. Parsing never raises on hostile input: :func:`parse` returns
``None`` and a reason string instead, which the gateway counts as a drop.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass

from qkdmeet.vpn.constants import (
    HEADER_BYTES,
    KEY_MASK_BYTES,
    MAX_BODY_BYTES,
    OVERHEAD_BYTES,
    TAG_LEN,
    TYPE_ANNOUNCE,
    TYPE_DATA,
    TYPE_GROUP,
    TYPE_REKEY,
    VERSION,
)

_HEADER = struct.Struct("!BBHQ16sI")
assert _HEADER.size == HEADER_BYTES


@dataclass(frozen=True, slots=True)
class Header:
    """The authenticated outer header of one packet."""

    ptype: int
    length: int
    sequence: int
    key_id: uuid.UUID
    offset: int


def pack_header(header: Header) -> bytes:
    """The 32 wire bytes of ``header``."""
    if not 0 <= header.length <= MAX_BODY_BYTES:
        raise ValueError(f"body length {header.length} out of range")
    return _HEADER.pack(
        VERSION, header.ptype, header.length, header.sequence, header.key_id.bytes, header.offset
    )


def pack_header_into(
    buf: bytearray, ptype: int, length: int, sequence: int, key_id: bytes, offset: int
) -> None:
    """Write the header at the front of ``buf`` (the hot path: no objects)."""
    _HEADER.pack_into(buf, 0, VERSION, ptype, length, sequence, key_id, offset)


@dataclass(frozen=True, slots=True)
class Parsed:
    """A packet split into its parts; nothing verified yet."""

    ptype: int
    length: int
    sequence: int
    key_id: bytes
    offset: int
    authenticated: memoryview
    body: memoryview
    tag: bytes


def key_bytes_used(ptype: int, length: int) -> int:
    """Key bytes one outer packet uses from its offset on: the tag mask, and the
    pad of a DATA packet's body (ANNOUNCE and REKEY bodies travel in clear)."""
    return KEY_MASK_BYTES + (length if ptype == TYPE_DATA else 0)


def parse(datagram: bytes) -> tuple[Parsed | None, str]:
    """Split a received datagram, or ``(None, reason)`` when malformed."""
    n = len(datagram)
    if n < OVERHEAD_BYTES:
        return None, "truncated"
    version, ptype, length, sequence, key_id, offset = _HEADER.unpack_from(datagram, 0)
    if version != VERSION:
        return None, "bad_version"
    if ptype not in (TYPE_DATA, TYPE_ANNOUNCE, TYPE_REKEY, TYPE_GROUP):
        return None, "bad_type"
    if n != OVERHEAD_BYTES + length:
        return None, "truncated" if n < OVERHEAD_BYTES + length else "bad_length"
    view = memoryview(datagram)
    end = HEADER_BYTES + length
    return (
        Parsed(
            ptype,
            length,
            sequence,
            key_id,
            offset,
            view[:end],
            view[HEADER_BYTES:end],
            bytes(view[end : end + TAG_LEN]),
        ),
        "",
    )


def announce_body(key_ids: list[uuid.UUID]) -> bytes:
    """Body of an ANNOUNCE packet: the key IDs the master will use next."""
    return b"".join(k.bytes for k in key_ids)


def parse_announce(body: bytes | memoryview) -> list[uuid.UUID] | None:
    """Key IDs of an ANNOUNCE body, or ``None`` when its length is wrong."""
    if len(body) % 16:
        return None
    raw = bytes(body)
    return [uuid.UUID(bytes=raw[i : i + 16]) for i in range(0, len(raw), 16)]
