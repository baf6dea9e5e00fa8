"""The outer packet's wire format: the codec, its layout, and the fast path against it.

The slow path is the reference: :func:`~qkdmeet.vpn.wire.header` packs the
header, :func:`~qkdmeet.vpn.otp.xor` pads the body and
:class:`~qkdmeet.crypto.wegman_carter.WegmanCarterMac` tags it. The fast paths
(the per-packet kernel :func:`~qkdmeet.vpn.fastpath.seal` and the batched
kernels of :mod:`qkdmeet.vpn.pump`, which write and read the fields in place)
must produce and accept the very same bytes, at the edges of every field too.
"""

from __future__ import annotations

import os
import socket
import struct
import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkdmeet.crypto.wegman_carter import WegmanCarterMac
from qkdmeet.vpn import fastpath, pump, wire
from qkdmeet.vpn.constants import (
    HEADER_BYTES,
    KEY_MASK_BYTES,
    MAX_BODY_BYTES,
    OVERHEAD_BYTES,
    TYPE_ANNOUNCE,
    TYPE_DATA,
    VERSION,
)
from qkdmeet.vpn.otp import xor
from qkdmeet.vpn.replay import ReplayWindow
from qkdmeet.vpn.wire import Header, announce_body, pack_header, parse, parse_announce

from . import test_pump
from .test_pump import drain, ip_packet

#: loopback sockets standing in for the TUN device and the WAN (as in test_pump)
sockets = test_pump.sockets


def _datagram(body: bytes, ptype: int = TYPE_DATA) -> bytes:
    h = Header(ptype, len(body), 7, uuid.UUID(int=5), 96)
    return pack_header(h) + body + bytes(range(32))


# --- codec -------------------------------------------------------------------
def test_round_trip() -> None:
    d = _datagram(b"hello")
    p, reason = parse(d)
    assert p is not None and reason == ""
    assert (p.ptype, p.length, p.sequence, p.offset) == (TYPE_DATA, 5, 7, 96)
    assert uuid.UUID(bytes=p.key_id) == uuid.UUID(int=5)
    assert wire.key_id_of(d) == p.key_id
    assert bytes(p.body) == b"hello"
    assert bytes(p.authenticated) == d[: HEADER_BYTES + 5]
    assert p.tag == bytes(range(32))


def test_rejects_malformed() -> None:
    d = _datagram(b"x" * 10)
    assert parse(d[: OVERHEAD_BYTES - 1]) == (None, "truncated")
    assert parse(d[:-1]) == (None, "truncated")
    assert parse(d + b"!") == (None, "bad_length")
    assert parse(b"\x09" + d[1:]) == (None, "bad_version")
    assert parse(d[:1] + b"\x07" + d[2:]) == (None, "bad_type")
    assert parse(b"") == (None, "truncated")


def test_pack_header_checks_the_length() -> None:
    with pytest.raises(ValueError):
        pack_header(Header(TYPE_DATA, MAX_BODY_BYTES + 1, 0, uuid.UUID(int=0), 32))


def test_announce_body() -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    assert parse_announce(announce_body(ids)) == ids
    assert parse_announce(b"x" * 17) is None
    p, _ = parse(_datagram(announce_body(ids), TYPE_ANNOUNCE))
    assert p is not None and p.ptype == TYPE_ANNOUNCE


# --- layout ------------------------------------------------------------------
def test_each_field_stands_at_its_offset() -> None:
    kid = bytes(range(0xA0, 0xB0))
    h = wire.header(0x5A, 0x1234, 0x0102030405060708, kid, 0xCAFEBABE)
    assert len(h) == HEADER_BYTES == wire.BODY_AT
    assert h[wire.VERSION_AT] == VERSION
    assert h[wire.TYPE_AT] == 0x5A
    assert h[wire.LENGTH_AT : wire.LENGTH_AT + 2] == struct.pack("!H", 0x1234)
    assert h[wire.SEQUENCE_AT : wire.SEQUENCE_AT + 8] == struct.pack("!Q", 0x0102030405060708)
    assert h[wire.KEY_ID_AT : wire.KEY_ID_AT + wire.KEY_ID_BYTES] == kid
    assert h[wire.OFFSET_AT : wire.OFFSET_AT + 4] == struct.pack("!I", 0xCAFEBABE)
    assert wire.OFFSET_AT + 4 == HEADER_BYTES  # nothing unaccounted for


_FIELDS = st.tuples(
    st.integers(0, 255),  # type
    st.integers(0, MAX_BODY_BYTES),  # length
    st.integers(0, 2**64 - 1),  # sequence
    st.binary(min_size=16, max_size=16),  # key ID
    st.integers(0, 2**32 - 1),  # offset
)


@settings(deadline=None)  # the first example compiles the kernels
@given(fields=_FIELDS)
def test_the_kernels_write_and_read_the_codecs_bytes(
        fields: tuple[int, int, int, bytes, int]) -> None:
    ptype, length, sequence, kid, offset = fields
    want = wire.header(ptype, length, sequence, kid, offset)
    buf = np.zeros(HEADER_BYTES + 8, np.uint8)
    key_id = np.frombuffer(kid, np.uint8)
    pump.put_header(buf, ptype, length, np.uint64(sequence), key_id, offset)
    assert bytes(buf[:HEADER_BYTES]) == want and not buf[HEADER_BYTES:].any()
    packed = np.frombuffer(want, np.uint8)
    assert pump.header_length(packed) == length
    assert int(pump.header_sequence(packed)) == sequence
    assert pump.header_offset(packed) == offset
    assert pump.header_names_key(packed, key_id)
    for i in (0, 15):
        other = bytearray(kid)
        other[i] ^= 0x80
        assert not pump.header_names_key(packed, np.frombuffer(bytes(other), np.uint8))


# --- the whole datagram: reference, per-packet kernel and batched kernel -----------
#: a key long enough for an offset with its top byte set (the u32's every byte in use)
_KEY_BYTES = (1 << 24) + 8192
_FAR = (1 << 24) + 17


def _reference(key: bytes, ptype: int, packet: bytes, sequence: int, kid: bytes,
               off: int) -> bytes:
    """The slow path: codec, XOR and Wegman-Carter, each on its own."""
    pad = key[off + KEY_MASK_BYTES : off + KEY_MASK_BYTES + len(packet)]
    msg = wire.header(ptype, len(packet), sequence, kid, off) + xor(packet, pad)
    return msg + WegmanCarterMac(key[:32]).tag(msg, key[off : off + KEY_MASK_BYTES])


@pytest.mark.parametrize(("sequence", "off"), [(0, 32), (2**64 - 4, 32), (2**40 + 3, _FAR)])
def test_fast_and_slow_paths_seal_the_same_bytes(sockets: dict[str, socket.socket],
                                                 sequence: int, off: int) -> None:
    data = bytearray(os.urandom(_KEY_BYTES))
    before = bytes(data)
    r = np.frombuffer(before[:32], np.uint8)
    kid = bytes([0xFF]) * 8 + os.urandom(8)
    packets = [ip_packet(n) for n in (20, 257, 1408)]
    want, o = [], off
    for i, p in enumerate(packets):
        want.append(_reference(before, TYPE_DATA, p, sequence + i, kid, o))
        o += KEY_MASK_BYTES + len(p)
    # per-packet kernel (the gateway's Python path), on a copy of the key
    copy = np.frombuffer(bytearray(before), np.uint8)
    o = off
    for i, p in enumerate(packets):
        head = wire.header(TYPE_DATA, len(p), sequence + i, kid, o)
        assert fastpath.seal(head, p, copy, o, r) == want[i]
        o += KEY_MASK_BYTES + len(p)
    # batched kernel
    for p in packets:
        sockets["host"].send(p)
    buf, st, seqs = pump.buffer(), pump.counters(), np.array([sequence], np.uint64)
    pump.seal_run(sockets["tun"].fileno(), sockets["wan_a"].fileno(), buf,
                  np.frombuffer(data, np.uint8), off, r, np.frombuffer(kid, np.uint8), seqs,
                  np.uint64(2**64 - 1), 1408, 64, np.zeros(0, np.int64), st)
    assert st[pump.PACKETS] == len(packets) and int(seqs[0]) == sequence + len(packets)
    assert drain(sockets["wan_b"]) == want
    assert data[off:o] == bytes(o - off) and bytes(copy[off:o]) == bytes(o - off)


@pytest.mark.parametrize(("sequence", "off"), [(2**64 - 2, 32), (2**33 + 5, _FAR)])
def test_the_batched_kernel_opens_what_the_slow_path_seals(sockets: dict[str, socket.socket],
                                                           sequence: int, off: int) -> None:
    key = os.urandom(_KEY_BYTES)
    rx = bytearray(key)
    kid = os.urandom(16)
    packet = ip_packet(600)
    sockets["wan_a"].send(_reference(key, TYPE_DATA, packet, sequence, kid, off))
    window = ReplayWindow()
    buf, st = pump.buffer(), pump.counters()
    seen = np.zeros(_KEY_BYTES // 8 + 1, np.uint8)
    pump.open_run(sockets["wan_b"].fileno(), sockets["tun"].fileno(), buf,
                  np.frombuffer(rx, np.uint8), np.frombuffer(key[:32], np.uint8),
                  np.frombuffer(kid, np.uint8), seen, window.ring, window.state, True, 64, st)
    assert st[pump.ACCEPTED] == st[pump.PACKETS] == 1, list(st)
    assert drain(sockets["host"]) == [packet]
    assert window.highest == sequence  # the sequence number read where the codec wrote it
    assert seen[off >> 3] & (1 << (off & 7))  # and the offset
    used = KEY_MASK_BYTES + len(packet)
    assert rx[off : off + used] == bytes(used) and st[pump.KEY_USED] == used
