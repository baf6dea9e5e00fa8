"""An audit of the WAN capture, from what crossed the wire alone.

The gateways' own counters say that no key byte was used twice; this audit
checks it independently, from the outer packets the WAN relay recorded: every
datagram's authenticated header names the key (key ID) and the offset of the
key bytes it used (:mod:`qkdmeet.vpn.wire`: ``key[offset:offset+32]``
masks the tag, ``key[offset+32:offset+32+length]`` is the pad of a DATA
packet; ANNOUNCE and REKEY packets use a tag mask only), and the first 32
bytes of every key are its hash key. Two datagrams whose key byte ranges
overlap under the same key ID would be a reused pad or mask; the audit counts
those bytes (``reused_key_bytes``, which must be 0) and also counts datagrams
that carry any of the given plaintext markers (``marker_hits``, must be 0).

A datagram captured twice (the relay's duplication impairment, or a replay)
is the same ciphertext, not a second use of key: identical datagrams are
counted as ``duplicates`` and checked once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qkdmeet.testbed.wanrelay import read_capture
from qkdmeet.vpn.constants import KEY_HASH_BYTES
from qkdmeet.vpn.wire import key_bytes_used, parse


def key_span(ptype: int, length: int, offset: int) -> tuple[int, int]:
    """The key byte range ``[start, end)`` one outer packet used."""
    return offset, offset + key_bytes_used(ptype, length)


def audit_datagrams(datagrams: Iterable[tuple[str, bytes]],
                    markers: Iterable[bytes] = ()) -> dict[str, Any]:
    """Audit ``(side, datagram)`` pairs (side: where the relay received it)."""
    marks = [m for m in markers if m]
    spans: dict[bytes, list[tuple[int, int]]] = {}
    seen: set[bytes] = set()
    by_side: dict[str, int] = {}
    total = malformed = duplicates = marker_hits = into_hash_key = 0
    for side, data in datagrams:
        total += 1
        by_side[side] = by_side.get(side, 0) + 1
        if any(m in data for m in marks):
            marker_hits += 1
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if digest in seen:
            duplicates += 1
            continue
        seen.add(digest)
        parsed, _ = parse(data)
        if parsed is None:
            malformed += 1
            continue
        start, end = key_span(parsed.ptype, parsed.length, parsed.offset)
        if start < KEY_HASH_BYTES:
            into_hash_key += 1
        spans.setdefault(parsed.key_id, []).append((start, end))
    reused = 0
    key_bytes = 0
    for ranges in spans.values():
        ranges.sort()
        reach = 0
        for start, end in ranges:
            key_bytes += end - start
            if start < reach:
                reused += min(end, reach) - start
            reach = max(reach, end)
    return {
        "datagrams": total,
        "by_side": dict(sorted(by_side.items())),
        "malformed": malformed,
        "duplicates": duplicates,
        "key_ids": len(spans),
        "key_bytes_on_wire": key_bytes,
        "reused_key_bytes": reused,
        "datagrams_into_hash_key": into_hash_key,
        "marker_hits": marker_hits,
        "clean": reused == 0 and into_hash_key == 0 and marker_hits == 0,
    }


def audit_capture(path: Path, markers: Iterable[bytes] = ()) -> dict[str, Any]:
    """:func:`audit_datagrams` over a WAN relay capture file."""
    return audit_datagrams(read_capture(path), markers)
