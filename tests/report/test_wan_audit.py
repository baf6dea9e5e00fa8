"""The WAN audit: key reuse and plaintext found from the outer packets alone."""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

from qkdmeet.report.wan_audit import audit_capture, audit_datagrams, key_span
from qkdmeet.vpn.constants import KEY_MASK_BYTES, TYPE_ANNOUNCE, TYPE_DATA
from qkdmeet.vpn.wire import Header, pack_header
from tests.vpn.test_gateway import Pair, ip_packet, pair, send_and_wait

__all__ = ["pair"]  # the two-gateway fixture, shared with tests/vpn/test_gateway.py


def datagram(key_id: uuid.UUID, offset: int, body: bytes, ptype: int = TYPE_DATA,
             sequence: int = 0) -> bytes:
    head = pack_header(Header(ptype, len(body), sequence, key_id, offset))
    return head + body + bytes(32)


def test_key_span_of_data_and_control_packets() -> None:
    assert key_span(TYPE_DATA, 100, 32) == (32, 32 + KEY_MASK_BYTES + 100)
    assert key_span(TYPE_ANNOUNCE, 48, 500) == (500, 500 + KEY_MASK_BYTES)


def test_disjoint_spans_are_clean_overlaps_are_counted() -> None:
    k1, k2 = uuid.uuid4(), uuid.uuid4()
    a = datagram(k1, 32, b"x" * 100, sequence=1)  # key bytes [32, 164)
    b = datagram(k1, 164, b"y" * 100, sequence=2)  # [164, 296)
    c = datagram(k2, 32, b"z" * 10, sequence=1)
    clean = audit_datagrams([("a", a), ("a", b), ("b", c)])
    assert clean["clean"] and clean["reused_key_bytes"] == 0
    assert clean["key_ids"] == 2 and clean["by_side"] == {"a": 2, "b": 1}
    assert clean["key_bytes_on_wire"] == 132 + 132 + 42
    # a packet whose key range starts 10 bytes inside the previous one's
    reuse = datagram(k1, 286, b"w" * 100, sequence=3)
    bad = audit_datagrams([("a", a), ("a", b), ("a", reuse)])
    assert bad["reused_key_bytes"] == 10 and not bad["clean"]
    # the hash key at the start of a key is never a pad or a mask
    assert audit_datagrams([("a", datagram(k2, 0, b"v"))])["datagrams_into_hash_key"] == 1


def test_duplicates_markers_and_malformed() -> None:
    k = uuid.uuid4()
    d = datagram(k, 32, b"q" * 50)
    out = audit_datagrams([("a", d), ("a", d), ("b", b"short"), ("b", b"..SECRET..")],
                          markers=[b"SECRET"])
    assert out["duplicates"] == 1 and out["reused_key_bytes"] == 0
    assert out["malformed"] == 2 and out["marker_hits"] == 1 and not out["clean"]


async def test_real_gateway_traffic_passes_and_matches_its_ledger(pair: Pair,
                                                                    tmp_path: Path) -> None:
    marker = b"QKDMEET-AUDIT-MARKER"
    for round_ in range(3):  # ~6 kB a round: more than one 4 kB key, within the prefetch
        await send_and_wait(pair, [ip_packet(marker + bytes([round_, i]) * (100 + 7 * i))
                                   for i in range(20)])
    sent = [("a", d) for d in pair.binds.a.sent]
    # the capture file format of the WAN relay: side byte, u32 length, datagram
    capture = tmp_path / "wan.capture"
    capture.write_bytes(b"".join(struct.pack("!cI", s.encode(), len(d)) + d for s, d in sent))
    out = audit_capture(capture, [marker])
    assert out["clean"] and out["marker_hits"] == 0 and out["malformed"] == 0
    assert out["datagrams"] == len(sent) >= 60
    # the key bytes read off the wire are exactly the gateway's own ledger of the
    # packets it sent (the ledger also lists each key's hash key, at offset 0)
    assert out["key_bytes_on_wire"] == sum(n for _, off, n in pair.ledger if off > 0)
    assert out["key_ids"] == len({kid for kid, _, _ in pair.ledger}) >= 2
    # a replayed datagram is a duplicate, not a reuse; a forged overlap is caught
    first = pair.binds.a.sent[0]
    forged = bytearray(pair.binds.a.sent[-1])
    forged[8] ^= 1  # another sequence number under the same key ID and offset
    again = audit_datagrams([*sent, ("a", first), ("a", bytes(forged))])
    assert again["duplicates"] == 1 and again["reused_key_bytes"] > 0
