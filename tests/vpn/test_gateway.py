"""Two gateways over a fake TUN and an in-memory bind, with key from a MemoryKeyPair."""

from __future__ import annotations

import asyncio
import itertools
import os
import struct
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from qkdmeet.vpn.constants import OVERHEAD_BYTES
from qkdmeet.vpn.gateway import Gateway, GatewayKeys, payload_per_key_byte
from qkdmeet.vpn.memkeys import MemoryKeyPair
from qkdmeet.vpn.transport import FakeBindPair
from qkdmeet.vpn.tun import FakeTun

KEY_BITS = 8 * 4096
_ACTIVE: list[Gateway] = []


def ip_packet(payload: bytes) -> bytes:
    """A minimal IPv4 header with a correct total length, then ``payload``."""
    total = 20 + len(payload)
    return struct.pack("!BBH", 0x45, 0, total) + bytes(16) + payload


@dataclass
class Pair:
    keys: MemoryKeyPair
    binds: FakeBindPair
    tun_a: FakeTun
    tun_b: FakeTun
    a: Gateway
    b: Gateway
    ledger: list[tuple[uuid.UUID, int, int]] = field(default_factory=list)


def make_gateway(pair_keys: MemoryKeyPair, me: str, peer: str, tun: FakeTun, bind: object,
                 ledger: Callable[[uuid.UUID, int, int], None] | None = None,
                 state_dir: Path | None = None, prefetch: int = 4 * 4096) -> Gateway:
    g = Gateway(
        tun=tun,
        bind=bind,  # type: ignore[arg-type]
        keys=GatewayKeys(pair_keys.supplier(me), me, peer, KEY_BITS, prefetch),
        name=me,
        ledger=ledger,
        state_dir=state_dir,
    )
    _ACTIVE.append(g)
    return g


async def settle(cond: Callable[[], bool], limit: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    await asyncio.sleep(0.01)  # let the key prefetch tasks run, as a real loop would
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"condition not reached: {[g.metrics.as_dict() for g in _ACTIVE]}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    keys = MemoryKeyPair("A", "B")
    binds = FakeBindPair()
    tun_a, tun_b = FakeTun(), FakeTun()
    ledger: list[tuple[uuid.UUID, int, int]] = []
    a = make_gateway(keys, "A", "B", tun_a, binds.a, lambda *r: ledger.append(r))
    b = make_gateway(keys, "B", "A", tun_b, binds.b)
    await a.start()
    await b.start()
    await settle(lambda: a.sender.buffered > 0 and b.sender.buffered > 0)
    p = Pair(keys, binds, tun_a, tun_b, a, b, ledger)
    yield p
    await a.stop()
    await b.stop()


async def send_and_wait(p: Pair, packets: list[bytes], expect: int | None = None) -> None:
    before = len(p.tun_b.written)
    p.tun_a.inject(*packets)
    want = before + (len(packets) if expect is None else expect)
    await settle(lambda: len(p.tun_b.written) >= want)


async def test_round_trip_both_ways(pair: Pair) -> None:
    pkts = [ip_packet(os.urandom(n)) for n in (0, 1, 100, 1350, 1388)]
    await send_and_wait(pair, pkts)
    assert pair.tun_b.written == pkts
    back = [ip_packet(b"reply %d" % i) for i in range(5)]
    pair.tun_b.inject(*back)
    await settle(lambda: len(pair.tun_a.written) == 5)
    assert pair.tun_a.written == back
    out, inb = pair.a.metrics.outbound, pair.b.metrics.inbound
    assert out.packets == inb.packets == 5
    assert out.payload_bytes == inb.payload_bytes == sum(map(len, pkts))
    assert out.key_pad_bytes == inb.key_pad_bytes == sum(map(len, pkts))
    assert not inb.drops


async def test_no_plaintext_on_wire_and_overhead(pair: Pair) -> None:
    marker = b"QKDMEET-MARKER-" * 20
    await send_and_wait(pair, [ip_packet(marker)])
    data = [d for d in pair.binds.a.sent if d[1] == 1]
    assert len(data) == 1 and marker[:15] not in data[0]
    assert len(data[0]) == 20 + len(marker) + OVERHEAD_BYTES


def _tamper(datagram: bytes, index: int) -> bytes:
    b = bytearray(datagram)
    b[index] ^= 0x01
    return bytes(b)


async def test_tampered_truncated_dropped_tunnel_keeps_working(pair: Pair) -> None:
    await send_and_wait(pair, [ip_packet(b"first")])
    # a flipped bit in length, sequence, offset, body or tag; then a truncated datagram
    for index in (3, 10, 29, 30, 40, -1):
        pair.binds.a.tap = lambda d, i=index: [_tamper(d, i)]
        pair.tun_a.inject(ip_packet(b"victim"))
    pair.binds.a.tap = lambda d: [d[:-5]]
    pair.tun_a.inject(ip_packet(b"victim"))
    pair.binds.a.tap = None
    await send_and_wait(pair, [ip_packet(b"after")])
    assert [p[20:] for p in pair.tun_b.written] == [b"first", b"after"]
    drops = pair.b.metrics.inbound.drops
    assert sum(drops.values()) == 7
    assert drops["bad_tag"] >= 3 and drops["truncated"] >= 1


async def test_replay_duplicate_reorder_as_window_allows(pair: Pair) -> None:
    held: list[bytes] = []
    pair.binds.a.tap = lambda d: (held.append(d), [])[1]
    pair.tun_a.inject(*[ip_packet(b"p%d" % i) for i in range(5)])
    pair.binds.a.tap = None
    data = [d for d in held if d[1] == 1]
    assert len(data) == 5
    # reordered: delivered in reverse, all accepted
    pair.binds.b.receive(list(reversed(data)), pair.binds.a.addr)
    await settle(lambda: len(pair.tun_b.written) == 5)
    # duplicated and replayed later: all refused, counted
    pair.binds.b.receive([*data, data[2]], pair.binds.a.addr)
    assert len(pair.tun_b.written) == 5
    assert pair.b.metrics.inbound.drops["replayed"] == 6
    await send_and_wait(pair, [ip_packet(b"still working")])


async def test_too_old_and_wrong_source(pair: Pair) -> None:
    held: list[bytes] = []
    pair.binds.a.tap = lambda d: (held.append(d), [])[1]
    pair.tun_a.inject(ip_packet(b"old"))
    pair.binds.a.tap = None
    old = [d for d in held if d[1] == 1]
    pair.binds.b.receive(old, ("203.0.113.9", 1))
    assert pair.b.metrics.inbound.drops["bad_source"] == 1
    for _ in range(42):  # 2,100 newer packets push it out of the 2,048-wide window
        await send_and_wait(pair, [ip_packet(b"x")] * 50)
    pair.binds.b.receive(old, pair.binds.a.addr)
    assert pair.b.metrics.inbound.drops["too_old"] == 1


async def test_key_exhaustion_fails_closed_and_recovers() -> None:
    keys = MemoryKeyPair("A", "B", budget_bytes=2 * 4096)
    binds = FakeBindPair()
    tun_a, tun_b = FakeTun(), FakeTun()
    a = make_gateway(keys, "A", "B", tun_a, binds.a)
    b = make_gateway(keys, "B", "A", tun_b, binds.b)
    await a.start()
    await b.start()
    try:
        await settle(lambda: a.sender.buffered > 0)
        marker = b"SECRET!" * 100
        pkts = [ip_packet(marker) for _ in range(20)]  # needs ~15 KB, has 8 KB
        tun_a.inject(*pkts)
        m = a.metrics.outbound
        assert m.drops["no_key"] > 0
        assert m.packets + m.drops["no_key"] == 20
        assert all(marker[:7] not in d for d in binds.a.sent)
        await settle(lambda: len(tun_b.written) == m.packets)
        sent_before = len(binds.a.sent)
        tun_a.inject(ip_packet(marker))
        assert len(binds.a.sent) == sent_before  # nothing leaves without key
        keys.refill("A", "B", 8 * 4096)
        await settle(lambda: a.sender.buffered > 0)
        delivered = len(tun_b.written)
        tun_a.inject(ip_packet(b"back"))
        await settle(lambda: len(tun_b.written) == delivered + 1)
        assert tun_b.written[-1][20:] == b"back"
    finally:
        await a.stop()
        await b.stop()


async def test_kme_outage_then_recovery(pair: Pair) -> None:
    pair.keys.failing = True
    # use up everything buffered
    for _ in range(40):
        pair.tun_a.inject(ip_packet(os.urandom(1000)))
    assert pair.a.metrics.outbound.drops["no_key"] > 0
    pair.keys.failing = False
    await settle(lambda: pair.a.sender.buffered > 0)
    await send_and_wait(pair, [ip_packet(b"resumed")])


async def test_restart_never_reuses_key_bytes(tmp_path: Path) -> None:
    keys = MemoryKeyPair("A", "B")
    binds = FakeBindPair()
    tun_b = FakeTun()
    b = make_gateway(keys, "B", "A", tun_b, binds.b)
    await b.start()
    ledger: list[tuple[uuid.UUID, int, int]] = []
    total = 0
    try:
        for round_ in range(3):
            tun_a = FakeTun()
            a = make_gateway(keys, "A", "B", tun_a, binds.a, lambda *r: ledger.append(r),
                             state_dir=tmp_path / "a")
            await a.start()
            await settle(lambda a=a: a.sender.buffered > 0)
            pkts = [ip_packet(b"%d-%d" % (round_, i) * 30) for i in range(25)]
            tun_a.inject(*pkts)
            total += 25
            await settle(lambda t=total: len(tun_b.written) == t)
            await a.stop()  # mid-key: the rest of the current key is discarded
    finally:
        await b.stop()
    # every key byte range used is disjoint from every other
    by_key: dict[uuid.UUID, list[tuple[int, int]]] = {}
    for kid, off, n in ledger:
        by_key.setdefault(kid, []).append((off, off + n))
    for ranges in by_key.values():
        ranges.sort()
        for (_, e1), (s2, _) in itertools.pairwise(ranges):
            assert e1 <= s2
    assert len(by_key) >= 3  # each run opened its own keys
    seq = int((tmp_path / "a" / "sequence").read_text())
    assert seq >= 3 * 25
    assert len(tun_b.written) == 75 and not b.metrics.inbound.drops


async def test_key_accounting_efficiency(pair: Pair) -> None:
    for _ in range(3):  # 10 packets at a time: the fixture prefetches only 16 KB
        await send_and_wait(pair, [ip_packet(os.urandom(1180)) for _ in range(10)])
    out = pair.a.metrics.outbound
    assert out.payload_bytes == 30 * 1200
    used = out.key_pad_bytes + out.key_mask_bytes
    assert used == 30 * 1232 + 32 * out.announces
    assert out.key_hash_bytes % 32 == 0 and out.key_hash_bytes > 0
    text = pair.a.metrics.prometheus()
    assert 'qkdmeet_vpn_payload_bytes_total{gateway="A",direction="outbound"} 36000' in text
    budget = pair.a.budget()
    assert budget["key_buffered_bytes"] == pair.a.sender.buffered
    assert budget["payload_per_key_byte"] == payload_per_key_byte(1200, 4096) == 3 * 1200 / 4096


async def test_restarted_slave_gets_fresh_keys_via_rekey() -> None:
    keys = MemoryKeyPair("A", "B")
    binds = FakeBindPair()
    tun_a, tun_b = FakeTun(), FakeTun()
    a = make_gateway(keys, "A", "B", tun_a, binds.a)
    b = make_gateway(keys, "B", "A", tun_b, binds.b)
    await a.start()
    await b.start()
    try:
        await settle(lambda: a.sender.buffered > 0 and b.sender.buffered > 0)
        tun_a.inject(ip_packet(b"before"))
        await settle(lambda: len(tun_b.written) == 1)
        # B restarts: every key of A that B had fetched is gone with it
        await b.stop()
        tun_b = FakeTun()
        b = make_gateway(keys, "B", "A", tun_b, binds.b)
        await b.start()
        await settle(lambda: b.sender.buffered > 0)
        tun_a.inject(ip_packet(b"lost"))  # under a key B can no longer fetch
        await settle(lambda: a.rekeys_received == 1, limit=5)
        assert b.rekeys_sent == 1
        assert b.metrics.inbound.drops["key_unavailable"] >= 1
        await settle(lambda: a.sender.buffered > 0)
        tun_a.inject(ip_packet(b"after"))
        await settle(lambda: len(tun_b.written) == 1)
        assert tun_b.written[0][20:] == b"after"
    finally:
        await a.stop()
        await b.stop()


async def test_restart_with_state_rekeys_at_start(tmp_path: Path) -> None:
    keys = MemoryKeyPair("A", "B")
    binds = FakeBindPair()
    tun_a, tun_b = FakeTun(), FakeTun()
    a = make_gateway(keys, "A", "B", tun_a, binds.a)
    b = make_gateway(keys, "B", "A", tun_b, binds.b, state_dir=tmp_path / "b")
    await a.start()
    await b.start()
    try:
        await settle(lambda: b.sender.buffered > 0)
        assert b.rekeys_sent == 0  # first run: nothing to recover
        await b.stop()
        b = make_gateway(keys, "B", "A", FakeTun(), binds.b, state_dir=tmp_path / "b")
        await b.start()
        await settle(lambda: a.rekeys_received == 1)
        assert a.metrics.outbound.key_discarded_bytes > 0
    finally:
        await a.stop()
        await b.stop()


async def test_forged_unknown_key_ids_cause_bounded_rekeys(pair: Pair) -> None:
    from qkdmeet.vpn.constants import REKEY_MAX, TYPE_DATA
    from qkdmeet.vpn.wire import Header, pack_header

    pair.b._last_rekey = float("-inf")
    for i in range(REKEY_MAX + 3):
        forged = pack_header(Header(TYPE_DATA, 20, 10**6 + i, uuid.uuid4(), 32))
        pair.binds.b.receive([forged + ip_packet(b"")[:20] + bytes(32)], pair.binds.a.addr)
        pair.b._last_rekey = float("-inf")  # let each failure try, to show the cap
        await settle(lambda i=i: pair.b.metrics.inbound.drops["key_unavailable"] == i + 1,
                     limit=5)
    assert pair.b.rekeys_sent == REKEY_MAX


async def test_packet_larger_than_a_key_is_dropped_without_wasting_key(pair: Pair) -> None:
    buffered = pair.a.sender.buffered
    pair.tun_a.inject(ip_packet(bytes(pair.a.max_packet)))  # 20 bytes too many
    assert pair.a.metrics.outbound.drops["bad_size"] == 1
    assert pair.a.sender.buffered == buffered
    await send_and_wait(pair, [ip_packet(bytes(pair.a.max_packet - 20))])


def test_public_names() -> None:
    import qkdmeet.vpn

    assert sorted(qkdmeet.vpn.__all__) == qkdmeet.vpn.__all__
    for name in qkdmeet.vpn.__all__:
        assert hasattr(qkdmeet.vpn, name)


async def test_key_arrived_equals_consumed_plus_buffered_both_sides(pair: Pair) -> None:
    """The identity the demo's report closes with the KMEs' delivery counters."""
    for _ in range(3):
        await send_and_wait(pair, [ip_packet(os.urandom(900)) for _ in range(10)])
    await settle(lambda: pair.b.receiver.get(pair.a.sender._queue[0].key_id.bytes) is not None
                 if pair.a.sender._queue else True)
    for g in (pair.a, pair.b):
        for d in (g.metrics.outbound, g.metrics.inbound):
            assert d.key_arrived_bytes == d.key_bytes + d.key_buffered_bytes, g.metrics.as_dict()
    assert pair.b.metrics.inbound.key_arrived_bytes > pair.b.metrics.inbound.key_bytes > 0
    await pair.a.stop()
    await pair.b.stop()
    for g in (pair.a, pair.b):  # a stopped gateway has discarded, and counted, the rest
        for d in (g.metrics.outbound, g.metrics.inbound):
            assert d.key_buffered_bytes == 0
            assert d.key_arrived_bytes == d.key_bytes, g.metrics.as_dict()


async def test_lost_announcements_and_a_full_prefetch_room_do_not_stall_a_key() -> None:
    """An overloaded WAN drops ANNOUNCEs; the receiver's room for announced keys may
    be full of later ones. Packets waiting for the key in use fetch it anyway."""
    from qkdmeet.vpn.constants import TYPE_ANNOUNCE
    from qkdmeet.vpn.wire import parse

    keys = MemoryKeyPair("A", "B")
    binds = FakeBindPair()
    tun_a, tun_b = FakeTun(), FakeTun()

    def no_announce(datagram: bytes) -> list[bytes]:
        parsed, _ = parse(datagram)
        return [] if parsed is not None and parsed.ptype == TYPE_ANNOUNCE else [datagram]

    binds.a.tap = no_announce
    a = make_gateway(keys, "A", "B", tun_a, binds.a)
    b = make_gateway(keys, "B", "A", tun_b, binds.b)
    b.receiver._max_held = 0  # no room at all for announced keys
    await a.start()
    await b.start()
    try:
        await settle(lambda: a.sender.buffered > 0)
        packets = [ip_packet(os.urandom(300)) for _ in range(40)]  # 13 kB: spans 4 keys
        tun_a.inject(*packets)
        await settle(lambda: len(tun_b.written) == len(packets), limit=10)
        assert tun_b.written == packets
        assert b.metrics.inbound.announces == 0  # every key was fetched on demand
        assert not b.metrics.inbound.drops
    finally:
        await a.stop()
        await b.stop()


async def test_announced_keys_beyond_the_receivers_room_are_fetched_ahead_later() -> None:
    """The master buffers (and announces) more keys than the slave has room for; the
    slave keeps the announcements and fetches each key as room frees, so no packet
    ever waits for its key (before: every key past the room was an on-demand fetch
    with its packets held, ``pending_full`` drops under load)."""
    keys = MemoryKeyPair("A", "B")
    binds = FakeBindPair()
    tun_a, tun_b = FakeTun(), FakeTun()
    a = make_gateway(keys, "A", "B", tun_a, binds.a, prefetch=12 * 4096)
    b = make_gateway(keys, "B", "A", tun_b, binds.b)
    b.receiver._max_held = 2
    held: list[bytes] = []
    hold = b._hold

    def counting_hold(raw_id: bytes, datagram: bytes) -> None:
        held.append(raw_id)
        hold(raw_id, datagram)

    b._hold = counting_hold  # type: ignore[method-assign]
    await a.start()
    await b.start()
    try:
        await settle(lambda: a.sender.buffered >= 10 * 4096 and len(b.receiver._held) == 2)
        assert len(b.receiver._announced) >= 6  # announced past the room: remembered
        held.clear()  # the first announcement itself waited for the first key
        packets = [ip_packet(os.urandom(300)) for _ in range(80)]  # ~26 kB: 7 keys
        for i in range(0, len(packets), 4):  # a key's worth takes three steps
            tun_a.inject(*packets[i : i + 4])
            await settle(lambda i=i: len(tun_b.written) == i + 4)
            await asyncio.sleep(0.02)  # the fetch of the next announced key completes
        assert tun_b.written == packets
        assert held == []
        assert not b.metrics.inbound.drops
    finally:
        await a.stop()
        await b.stop()


async def test_a_key_delivered_twice_is_refused_and_journaled_before_use(tmp_path: Path) -> None:
    """A KME that delivers a key ID again (also to a restarted master): the key is
    refused and counted, never used; every key was journaled before its first use."""
    from qkdmeet.kme.types import Key

    keys = MemoryKeyPair("A", "B")
    supplier = keys.supplier("A")
    first: list[Key] = []
    real_enc = supplier.enc_keys

    async def enc_keys(slave: str, number: int, size_bits: int) -> list[Key]:
        got = await real_enc(slave, number, size_bits)
        if not first:
            first.extend(got)
            return got
        return [first[0], *got]  # the first key ID once more, with fresh ones

    supplier.enc_keys = enc_keys  # type: ignore[method-assign]
    binds = FakeBindPair()
    tun_a, tun_b = FakeTun(), FakeTun()
    ledger: list[tuple[uuid.UUID, int, int]] = []
    a = Gateway(tun=tun_a, bind=binds.a, keys=GatewayKeys(supplier, "A", "B", KEY_BITS, 4 * 4096),
                name="A", state_dir=tmp_path, ledger=lambda *r: ledger.append(r))
    b = make_gateway(keys, "B", "A", tun_b, binds.b)
    await a.start()
    await b.start()
    try:
        await settle(lambda: a.sender.buffered > 0)
        packets = [ip_packet(os.urandom(300)) for _ in range(60)]  # ~20 kB: new fetches
        for i in range(0, 60, 10):
            tun_a.inject(*packets[i : i + 10])
            await settle(lambda i=i: len(tun_b.written) == i + 10)
        assert tun_b.written == packets
        assert a.metrics.outbound.drops["key_reissued"] >= 1
        opened = {kid for kid, off, n in ledger if off == 0}
        assert sum(1 for kid, off, n in ledger if off == 0 and kid == first[0].key_id) == 1
        journal = set((tmp_path / "used_keys").read_text().split())
        assert {str(k) for k in opened} <= journal
        m = a.metrics.outbound
        assert m.key_arrived_bytes == m.key_bytes + m.key_buffered_bytes
    finally:
        await a.stop()
        await b.stop()
