"""Gateways against a KME that behaves like a vendor's: 256-bit keys, at most 10 per request.

Our KME is configured with ``key_size = min_key_size = max_key_size = 256``
and ``max_key_per_request = 10``; the gateways (ETSI client wrapped in a
:class:`GroupingSupplier`, as the daemon does) read its ``status``, ask
within those limits and group the small keys. No drops, and the key
accounting identity closes at both sites.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from qkdmeet.kme.client import EtsiClient, KmeBadRequest
from qkdmeet.kme.pair import KmePair, write_pair
from qkdmeet.kme.types import Key, KeyStatus
from qkdmeet.report.identity import site_identity
from qkdmeet.vpn.constants import TUN_MTU
from qkdmeet.vpn.gateway import Gateway, GatewayKeys
from qkdmeet.vpn.keygroups import (
    MAX_GROUP_MEMBERS,
    GroupingSupplier,
    NegotiationError,
    group_body,
    group_id,
    parse_group,
    plan,
)
from qkdmeet.vpn.memkeys import MemoryKeyPair
from qkdmeet.vpn.transport import FakeBindPair
from qkdmeet.vpn.tun import FakeTun

_DEBUG: Callable[[], Any] | None = None
VENDOR = {"key_size": 256, "min_key_size": 256, "max_key_size": 256, "max_key_per_request": 10}


def ip_packet(payload: bytes) -> bytes:
    return struct.pack("!BBH", 0x45, 0, 20 + len(payload)) + bytes(16) + payload


async def settle(cond: Callable[[], bool], limit: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not cond():
        if loop.time() > end:
            raise AssertionError(f"condition not reached: {_DEBUG and _DEBUG()}")
        await asyncio.sleep(0.01)


def status(**kw: int) -> KeyStatus:
    base = {"key_size": 256, "min_key_size": 256, "max_key_size": 256, "max_key_per_request": 10}
    base.update(kw)
    return KeyStatus("K1", "K2", "A", "B", base["key_size"], 100, 1000,
                     base["max_key_per_request"], base["max_key_size"], base["min_key_size"])


def test_plan_within_the_kmes_limits() -> None:
    p = plan(status(), 8 * 65536)
    assert (p.etsi_bits, p.members, p.per_request) == (256, MAX_GROUP_MEMBERS, 10)
    assert p.key_bits // 8 >= TUN_MTU + 64
    # a KME that serves the wanted size: plain keys, nothing grouped
    assert plan(status(max_key_size=8 * 65536), 8 * 65536).members == 1
    # keys too small for a full packet even in the largest group: refused, clearly
    with pytest.raises(NegotiationError):
        plan(status(min_key_size=64, max_key_size=64, key_size=64), 8 * 65536)


def test_group_ids_bind_their_members() -> None:
    ids = [os.urandom(16) for _ in range(5)]
    import uuid

    members = [uuid.UUID(bytes=b) for b in ids]
    gid = group_id(members)
    assert parse_group(group_body(gid, members)) == (gid, tuple(members))
    assert parse_group(group_body(gid, members[::-1])) is None  # order matters
    assert parse_group(group_body(gid, members)[:-1]) is None


class Recorder:
    """Wraps a supplier: records every request's size and count, can refuse."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.enc: list[tuple[int, int]] = []
        self.dec: list[int] = []
        self.status_calls = 0
        self.refuse = 0

    async def status(self, slave: str) -> KeyStatus:
        self.status_calls += 1
        st: KeyStatus = await self.inner.status(slave)
        return st

    async def enc_keys(self, slave: str, number: int, size_bits: int) -> list[Key]:
        if self.refuse:
            self.refuse -= 1
            raise KmeBadRequest("refused (test)")
        self.enc.append((number, size_bits))
        keys: list[Key] = await self.inner.enc_keys(slave, number, size_bits)
        return keys

    async def dec_keys(self, master: str, ids: Any) -> list[Key]:
        self.dec.append(len(ids))
        keys: list[Key] = await self.inner.dec_keys(master, ids)
        return keys


@pytest.fixture
async def vendor_pair(tmp_path: Path) -> AsyncIterator[tuple[KmePair, dict[str, Recorder]]]:
    kmes = KmePair(write_pair(tmp_path, **VENDOR))
    await kmes.start()
    await kmes.fill(16, 65536)
    info = kmes.describe()
    async with AsyncExitStack() as stack:
        rec: dict[str, Recorder] = {}
        for site in ("a", "b"):
            s = info["sites"][site]
            c = EtsiClient(s["kme_url"], cert_file=s["sae_cert"], key_file=s["sae_key"],
                           ca_file=info["ca"], retries=0)
            rec[site] = Recorder(await stack.enter_async_context(c))
        yield kmes, rec
    await kmes.stop()


async def test_gateways_against_a_vendor_like_kme(
    vendor_pair: tuple[KmePair, dict[str, Recorder]],
) -> None:
    kmes, rec = vendor_pair
    binds = FakeBindPair()
    tuns = {"a": FakeTun(), "b": FakeTun()}
    sup = {s: GroupingSupplier(rec[s], in_flight=8) for s in ("a", "b")}
    gws = {
        s: Gateway(tun=tuns[s], bind=getattr(binds, s),
                   keys=GatewayKeys(sup[s], f"SAE-{s.upper()}", f"SAE-{o.upper()}",
                                    8 * 65536, 256 * 1024), name=s)
        for s, o in (("a", "b"), ("b", "a"))
    }
    global _DEBUG
    _DEBUG = lambda: [g.metrics.as_dict() for g in gws.values()]  # noqa: E731
    for g in gws.values():
        await g.start()
    try:
        # the buffer covers the traffic below: this test is about limits, not rate
        # (benchmarks/bench_vendor_kme.py measures the rate)
        await settle(lambda: all(g.sender.buffered > 200 * 1024 for g in gws.values()), 30)
        for s in ("a", "b"):  # negotiated before fetching: status read, sizes within limits
            assert rec[s].status_calls >= 1
            assert rec[s].enc and all(n <= 10 and size == 256 for n, size in rec[s].enc)
            assert gws[s].max_packet >= TUN_MTU
        sent = {"a": 0, "b": 0}
        for _ in range(20):
            for s, o in (("a", "b"), ("b", "a")):
                pkts = [ip_packet(os.urandom(n)) for n in (1380, 600, 40, TUN_MTU - 20)]
                tuns[s].inject(*pkts)
                sent[o] += len(pkts)
            await asyncio.sleep(0.02)
        await settle(lambda: all(len(tuns[s].written) == sent[s] for s in ("a", "b")))
        for s in ("a", "b"):
            assert all(n <= 10 for n in rec[s].dec), rec[s].dec
            for d in (gws[s].metrics.outbound, gws[s].metrics.inbound):
                assert sum(d.drops.values()) == 0, gws[s].metrics.as_dict()
        # the accounting identity closes at both sites (KME delivered == consumed + held),
        # taken at rest: prefetch full, no ETSI request under way
        await settle(lambda: all(
            g.sender.buffered >= 256 * 1024 - g.sender.key_bytes and sup[s].in_flight == 0
            and sup[s].held_bytes == 0 for s, g in gws.items()))
        for s in ("a", "b"):
            snap = kmes.servers[s].snapshot()
            ident = site_identity(s, f"SAE-{s.upper()}", snap, gws[s].metrics.as_dict())
            assert ident.delivered_bytes > 0
            assert ident.closes, ident.as_dict()
    finally:
        for g in gws.values():
            await g.stop()


async def test_a_refusing_kme_is_retried_with_back_off_and_the_tunnel_fails_closed() -> None:
    mem = MemoryKeyPair("A", "B")
    rec = {s: Recorder(mem.supplier(s)) for s in ("A", "B")}
    rec["A"].refuse = 3
    binds = FakeBindPair()
    tun_a, tun_b = FakeTun(), FakeTun()
    a = Gateway(tun=tun_a, bind=binds.a,
                keys=GatewayKeys(GroupingSupplier(rec["A"]), "A", "B", 8 * 4096, 16384))
    b = Gateway(tun=tun_b, bind=binds.b,
                keys=GatewayKeys(GroupingSupplier(rec["B"]), "B", "A", 8 * 4096, 16384))
    await a.start()
    await b.start()
    try:
        await asyncio.sleep(0.05)
        tun_a.inject(ip_packet(b"x" * 100))  # no key yet: dropped, never sent in clear
        await asyncio.sleep(0.05)
        assert a.metrics.outbound.drops.get("no_key", 0) == 1 and not binds.a.sent
        assert a.sender.retry_delay > 0.5  # backing off
        await settle(lambda: a.sender.buffered > 0)
        assert a.sender.kme_errors == 3 and a.sender.retry_delay == 0.5
        tun_a.inject(ip_packet(b"y" * 100))
        await settle(lambda: len(tun_b.written) == 1)
    finally:
        await a.stop()
        await b.stop()


async def test_forged_group_packets_teach_nothing() -> None:
    """A GROUP packet is learned before its tag is checked only when it announces the
    very key that authenticates it and its ID binds its members; else it is dropped
    (unbound) or waits for its key like any packet."""
    import uuid

    from qkdmeet.vpn.constants import TYPE_GROUP
    from qkdmeet.vpn.wire import Header, pack_header

    mem = MemoryKeyPair("A", "B")
    sup = GroupingSupplier(mem.supplier("B"))
    g = Gateway(tun=FakeTun(), bind=FakeBindPair().b,
                keys=GatewayKeys(sup, "B", "A", 8 * 4096, 16384))
    members = [uuid.uuid4() for _ in range(4)]
    gid = group_id(members)

    def datagram(key_id: uuid.UUID, body: bytes, seq: int) -> bytes:
        return pack_header(Header(TYPE_GROUP, len(body), seq, key_id, 32)) + body + bytes(32)

    g._inbound(datagram(gid, group_body(gid, members[::-1]), 1))  # ID does not bind them
    assert g.metrics.inbound.drops == {"bad_group": 1} and sup.members(gid) is None
    g._inbound(datagram(uuid.uuid4(), group_body(gid, members), 2))  # not its own key
    assert sup.members(gid) is None
    g._inbound(datagram(gid, group_body(gid, members), 3))  # self-announced and bound
    assert sup.members(gid) == tuple(members)
    await g.receiver.stop()
