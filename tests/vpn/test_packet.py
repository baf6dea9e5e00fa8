import uuid

from qkdmeet.vpn.constants import HEADER_BYTES, OVERHEAD_BYTES, TYPE_ANNOUNCE, TYPE_DATA
from qkdmeet.vpn.packet import Header, announce_body, pack_header, parse, parse_announce


def _datagram(body: bytes, ptype: int = TYPE_DATA) -> bytes:
    h = Header(ptype, len(body), 7, uuid.UUID(int=5), 96)
    return pack_header(h) + body + bytes(range(32))


def test_round_trip() -> None:
    d = _datagram(b"hello")
    p, reason = parse(d)
    assert p is not None and reason == ""
    assert (p.ptype, p.length, p.sequence, p.offset) == (TYPE_DATA, 5, 7, 96)
    assert uuid.UUID(bytes=p.key_id) == uuid.UUID(int=5)
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


def test_announce_body() -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    assert parse_announce(announce_body(ids)) == ids
    assert parse_announce(b"x" * 17) is None
    p, _ = parse(_datagram(announce_body(ids), TYPE_ANNOUNCE))
    assert p is not None and p.ptype == TYPE_ANNOUNCE
