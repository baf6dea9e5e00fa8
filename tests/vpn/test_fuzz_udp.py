"""Fuzzing the gateway's WAN input: random, truncated, bit-flipped, forged and replayed
datagrams (Hypothesis) fed to the receive path of a running gateway pair.

Invariants: no exception escapes the receive path; every datagram ends as exactly
one counted drop (nothing reaches the TUN device, nothing counts as received);
no inbound key is spent on them; the tunnel carries a normal packet afterwards.
"""

from __future__ import annotations

import os
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qkdmeet.vpn.constants import HEADER_BYTES
from qkdmeet.vpn.wire import VERSION_AT, header, key_id_of

from . import test_gateway
from .test_gateway import (
    Pair,
    ip_packet,
    send_and_wait,
    settle,
)

#: the gateway tests' running pair of gateways serves these cases too
pair = test_gateway.pair
pytestmark = pytest.mark.timeout(120)


def _forged(version: int, ptype: int, length: int, sequence: int, key_id: bytes, offset: int,
            body: bytes) -> bytes:
    """A well-formed header with any field value, the version byte included."""
    head = bytearray(header(ptype, length, sequence, key_id, offset))
    head[VERSION_AT] = version
    return bytes(head) + body


def _flip(d: bytes, i: int, bit: int) -> bytes:
    b = bytearray(d)
    b[i % len(b)] ^= 1 << bit
    return bytes(b)


async def test_random_and_replayed_datagrams_are_counted_drops(pair: Pair) -> None:
    held: list[bytes] = []
    pair.binds.a.tap = lambda d: (held.append(d), [d])[1]
    await send_and_wait(pair, [ip_packet(b"seed %d" % i) for i in range(8)])
    pair.binds.a.tap = None
    assert held
    key_ids = sorted({key_id_of(d) for d in held if len(d) >= HEADER_BYTES})
    m = pair.b.metrics.inbound
    before = (m.packets, len(pair.tun_b.written), m.key_pad_bytes, m.key_mask_bytes,
              sum(m.drops.values()))
    fed = 0

    genuine = st.sampled_from(held)
    datagrams = st.one_of(
        st.binary(max_size=120),
        st.binary(min_size=HEADER_BYTES, max_size=HEADER_BYTES + 64),
        genuine,  # replayed
        st.tuples(genuine, st.integers(0, 200)).map(lambda t: t[0][: t[1]]),  # truncated
        st.tuples(genuine, st.integers(0, 4000), st.integers(0, 7)).map(lambda t: _flip(*t)),
        st.builds(  # well-formed headers: any type, length, sequence, key ID, offset
            _forged,
            st.integers(0, 3), st.integers(0, 255), st.integers(0, 0xFFFF),
            st.integers(0, 2**64 - 1), st.sampled_from(key_ids) | st.binary(min_size=16,
                                                                             max_size=16),
            st.integers(0, 2**32 - 1), st.binary(max_size=64),
        ),
    )

    @settings(max_examples=400, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(datagram=datagrams)
    def feed(datagram: bytes) -> None:
        nonlocal fed
        fed += 1
        pair.binds.b.receive([datagram], pair.binds.a.addr)  # must not raise

    feed()
    # a line-rate burst of random datagrams in one batch
    burst = [os.urandom(64) for _ in range(2000)]
    pair.binds.b.receive(burst, pair.binds.a.addr)
    fed += len(burst)
    # held datagrams (unknown key IDs being fetched) end as drops as well
    await settle(lambda: not pair.b._pending and sum(m.drops.values()) - before[4] >= fed,
                 limit=20)
    after = (m.packets, len(pair.tun_b.written), m.key_pad_bytes, m.key_mask_bytes,
             sum(m.drops.values()))
    assert after[:4] == before[:4], (before, after, dict(m.drops))
    assert after[4] - before[4] == fed, dict(m.drops)
    await send_and_wait(pair, [ip_packet(b"after the fuzz")])
    assert pair.tun_b.written[-1][20:] == b"after the fuzz"
    assert uuid.UUID(bytes=key_ids[0])  # the key IDs fed were real ones too
