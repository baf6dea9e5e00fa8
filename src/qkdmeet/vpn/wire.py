"""The outer packet's wire format: layout, field offsets and codec, in this module only.

One outer UDP payload (all integers big-endian)::

    0      1      2        4                 12                    28        32
    +------+------+--------+-----------------+---------------------+---------+
    | ver  | type | length |   sequence u64  |   key ID (UUID)     | offset  |
    +------+------+--------+-----------------+---------------------+---------+
    | body: inner IP packet XOR pad (DATA), key IDs in clear (ANNOUNCE),    |
    | group ID then member key IDs in clear (GROUP), or nothing (REKEY)     |
    +-----------------------------------------------------------------------+
    | tag (32 bytes): Wegman-Carter over header || body                     |
    +-----------------------------------------------------------------------+

``offset`` addresses the first byte of this packet's key in the key ``key ID``:
``key[offset:offset+32]`` masks the tag, ``key[offset+32:offset+32+length]``
is the pad (DATA only). ``key[0:32]`` of every key is the Poly1305 hash key
pair r1 || r2 used by all packets of that key.

Who writes and reads it: the gateway's Python path packs headers with
:func:`header` and splits datagrams with :func:`parse`; the batched kernels
(:mod:`qkdmeet.vpn.pump`) write and read the fields in place at the ``*_AT``
offsets below; the WAN audit (:mod:`qkdmeet.report.wan_audit`) parses
captures with :func:`parse`. ``tests/vpn/test_wire.py`` checks that the
offsets are the struct's and that both paths produce the same bytes. The
numbers the format is built from (version, types, sizes) are
:mod:`qkdmeet.vpn.constants`' specification constants.

The numba kernels freeze these offsets when they compile, and numba's cache
is keyed on the kernel's own source file: a change here needs the cache
(``__pycache__/*.nbi``, ``*.nbc``) cleared, and a new :data:`VERSION`.

Pure functions over bytes; no key, no I/O. Parsing never raises on hostile
input: :func:`parse` returns ``None`` and a reason string instead, which the
gateway counts as a drop.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import Final

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

# --- layout: where each header field stands ----------------------------------
VERSION_AT: Final = 0  # u8: VERSION
TYPE_AT: Final = 1  # u8: TYPE_*
LENGTH_AT: Final = 2  # u16: body bytes
SEQUENCE_AT: Final = 4  # u64: sequence number
KEY_ID_AT: Final = 12  # KEY_ID_BYTES: the key ID (a UUID's bytes) of this packet's key
KEY_ID_BYTES: Final = 16
OFFSET_AT: Final = 28  # u32: offset of this packet's key bytes in that key
BODY_AT: Final = HEADER_BYTES  # the end of the header

_HEADER = struct.Struct("!BBHQ16sI")


def _check_layout() -> None:
    """The offsets above are the struct's (import fails if they part)."""
    fields = ("B", "B", "H", "Q", "16s", "I")
    starts = [struct.calcsize("!" + "".join(fields[:i])) for i in range(len(fields))]
    want = [VERSION_AT, TYPE_AT, LENGTH_AT, SEQUENCE_AT, KEY_ID_AT, OFFSET_AT]
    if starts != want or _HEADER.size != HEADER_BYTES or _HEADER.format != "!" + "".join(fields):
        raise RuntimeError(f"wire layout {want} is not the struct's {starts}")


_check_layout()


# --- header ------------------------------------------------------------------
def header(ptype: int, length: int, sequence: int, key_id: bytes, offset: int) -> bytes:
    """The 32 header bytes (the hot path: no objects, no range checks)."""
    return _HEADER.pack(VERSION, ptype, length, sequence, key_id, offset)


@dataclass(frozen=True, slots=True)
class Header:
    """The authenticated outer header of one packet."""

    ptype: int
    length: int
    sequence: int
    key_id: uuid.UUID
    offset: int


def pack_header(h: Header) -> bytes:
    """The 32 wire bytes of ``h``, its length checked."""
    if not 0 <= h.length <= MAX_BODY_BYTES:
        raise ValueError(f"body length {h.length} out of range")
    return header(h.ptype, h.length, h.sequence, h.key_id.bytes, h.offset)


def key_id_of(datagram: bytes | bytearray | memoryview) -> bytes:
    """The raw key ID a datagram names (unchecked: for a datagram this side sent)."""
    return bytes(datagram[KEY_ID_AT : KEY_ID_AT + KEY_ID_BYTES])


# --- datagram ----------------------------------------------------------------
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
    end = BODY_AT + length
    return (
        Parsed(
            ptype,
            length,
            sequence,
            key_id,
            offset,
            view[:end],
            view[BODY_AT:end],
            bytes(view[end : end + TAG_LEN]),
        ),
        "",
    )


# --- ANNOUNCE body -----------------------------------------------------------
def announce_body(key_ids: list[uuid.UUID]) -> bytes:
    """Body of an ANNOUNCE packet: the key IDs the master will use next."""
    return b"".join(k.bytes for k in key_ids)


def parse_announce(body: bytes | memoryview) -> list[uuid.UUID] | None:
    """Key IDs of an ANNOUNCE body, or ``None`` when its length is wrong."""
    if len(body) % KEY_ID_BYTES:
        return None
    raw = bytes(body)
    return [uuid.UUID(bytes=raw[i : i + KEY_ID_BYTES]) for i in range(0, len(raw), KEY_ID_BYTES)]
