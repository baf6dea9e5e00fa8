"""The two actors through the real-time link in one process: keys, bounds, attacks, tampering."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from qkdmeet.qkd import finite_key as fk
from qkdmeet.qkd.classical import memory_pair
from qkdmeet.qkd.link import QkdLink, link_params
from qkdmeet.qkd.params import LinkParams
from qkdmeet.qkd.protocol import BlockReport, ProtocolConfig
from qkdmeet.qkd.sink import ListSink

BLOCK = 100_000
CONFIG = ProtocolConfig(block_bits=BLOCK)


@pytest.fixture(scope="module")
def params_2db() -> LinkParams:
    return link_params("toshiba", loss_db=2.0, block_bits=BLOCK)


def _link(params: LinkParams, seed: int, **kw: object) -> QkdLink:
    return QkdLink(
        params,
        config=CONFIG,
        seed=seed,
        realtime=False,
        chunk_pulses=2_000_000,
        **kw,  # type: ignore[arg-type]
    )


def _sinks(link: QkdLink) -> tuple[ListSink, ListSink]:
    a, b = link.sinks
    assert isinstance(a, ListSink) and isinstance(b, ListSink)
    return a, b


def _bound(report: BlockReport, params: LinkParams) -> int:
    assert report.counts is not None
    est = fk.estimate(report.counts, params)
    return fk.secret_key_length(est, report.leaked_bits, params)


async def test_clean_link_gives_identical_keys_within_the_finite_key_bound(
    params_2db: LinkParams,
) -> None:
    link = _link(params_2db, 11, auth_target_masks=0)  # all key delivered: auth from the secret
    async with link:
        await link.wait_blocks(3)
    alice, bob = _sinks(link)
    assert len(bob.blocks) >= 3
    assert [b.block_id for b in alice.blocks[:3]] == [b.block_id for b in bob.blocks[:3]]
    for x, y in zip(alice.blocks, bob.blocks, strict=False):
        assert x.key == y.key and x.block_id == y.block_id and len(x.key) > 1000
    for report in link.bob.stats.reports:
        assert report.ok
        l_bound = _bound(report, params_2db)
        assert report.key_length == l_bound
        assert report.secure_bits + report.auth_bits <= l_bound
        assert 0.02 < report.qber_x < 0.04
        assert 1.0 < report.ec_efficiency < 1.2
    # randomness of the output key (NIST SP 800-22 monobit and runs tests)
    bits = np.unpackbits(np.frombuffer(b"".join(b.key for b in bob.blocks), np.uint8))
    n = bits.size
    s = abs(int(bits.sum()) * 2 - n) / math.sqrt(n)
    assert math.erfc(s / math.sqrt(2)) > 0.01
    pi = bits.mean()
    runs = 1 + int(np.count_nonzero(bits[1:] != bits[:-1]))
    p_runs = math.erfc(abs(runs - 2 * n * pi * (1 - pi)) / (2 * math.sqrt(2 * n) * pi * (1 - pi)))
    assert p_runs > 0.01


async def test_intercept_resend_gives_no_key(params_2db: LinkParams) -> None:
    link = _link(params_2db, 12, eve="intercept-resend:1.0")
    async with link:
        await link.wait_blocks(2)
    alice, bob = _sinks(link)
    assert alice.blocks == [] and bob.blocks == []
    assert link.bob.stats.blocks == 0 and link.bob.stats.aborted_blocks >= 2
    assert link.alice.stats.aborted_blocks >= 2
    last = link.bob.stats.last
    assert last is not None and last.qber_z > 0.2
    assert "phase-error" in last.reason or "single-photon" in last.reason


async def test_pns_gives_no_key_where_the_clean_link_does() -> None:
    params = link_params("toshiba", loss_db=10.0, block_bits=BLOCK)
    clean = _link(params, 13, auth_target_masks=0)
    async with clean:
        await clean.wait_blocks(1)
    assert clean.bob.stats.blocks >= 1
    attacked = _link(params, 13, eve="pns")
    async with attacked:
        await attacked.wait_blocks(2)
    assert attacked.bob.stats.blocks == 0 and attacked.bob.stats.aborted_blocks >= 2
    assert _sinks(attacked)[1].blocks == []


async def test_eve_and_cut_switch_at_run_time(params_2db: LinkParams) -> None:
    link = _link(params_2db, 14, auth_target_masks=0, backlog_blocks=0.5)
    async with link:
        await link.wait_blocks(1)
        link.set_eve("intercept-resend:1.0")
        done = link.bob.stats.blocks + link.bob.stats.aborted_blocks
        # the blocks in flight and the source's backlog still hold pulses from before Eve
        await link.wait_blocks(done + 3 + link.bob.pipeline_depth)
        assert link.bob.stats.aborted_blocks >= 1
        link.set_eve(None)
        link.set_cut(True)
        assert link.stats()["cut"] is True
        link.set_cut(False)
        ok_before = link.bob.stats.blocks
        await link.wait_blocks(ok_before + 1, include_aborted=False)  # key again once Eve left
    alice, bob = _sinks(link)
    assert [(b.block_id, b.key) for b in alice.blocks] == [(b.block_id, b.key) for b in bob.blocks]


async def test_tampered_classical_message_aborts_only_that_block(params_2db: LinkParams) -> None:
    import struct

    from qkdmeet.qkd import messages as m

    link = _link(params_2db, 15, auth_target_masks=0)
    ta, _ = link.transports
    count = {"n": 0, "block": -1}

    def flip_fifth(frame: bytes) -> list[bytes]:
        count["n"] += 1
        if count["n"] == 5:  # an open message inside a block (HELLO was the first)
            count["block"] = m.decode(frame[struct.calcsize("<QI"):]).block_id
            return [frame[:-40] + bytes([frame[-40] ^ 1]) + frame[-39:]]
        return [frame]

    ta.tamper = flip_fifth  # Alice -> Bob
    async with link:
        await link.wait_blocks(4)
    alice, bob = _sinks(link)
    hit = count["block"]
    reports = {r.block_id: r for r in link.bob.stats.reports}
    # the block fails at its checkpoint ("authentication"), or earlier when the changed
    # parity sends Bob's Cascade astray (it then hits MAX_EC_REQUESTS)
    assert hit >= 0 and not reports[hit].ok
    assert "authentication" in reports[hit].reason or "round trips" in reports[hit].reason
    assert not {r.block_id: r for r in link.alice.stats.reports}[hit].ok
    assert link.bob.channel.rejected <= 1
    assert all(r.ok for bid, r in reports.items() if bid != hit)
    assert [(b.block_id, b.key) for b in alice.blocks] == [(b.block_id, b.key) for b in bob.blocks]
    assert all(b.block_id != hit for b in bob.blocks)


async def test_authentication_key_is_accounted_and_kept_back(params_2db: LinkParams) -> None:
    big = link_params("toshiba", loss_db=0.0, block_bits=400_000)
    link = QkdLink(big, config=ProtocolConfig(block_bits=400_000), seed=16, realtime=False,
                   chunk_pulses=2_000_000)  # fmt: skip
    async with link:
        await link.wait_blocks(2)
    a, b = link.alice.channel, link.bob.channel
    messages = a.next_send + a.next_recv
    assert a.keys.spent_bits == b.keys.spent_bits == (32 + 32 * messages) * 8
    kept = sum(r.auth_bits for r in link.bob.stats.reports)
    assert kept == b.keys.refilled_bits == a.keys.refilled_bits > 0
    for r in link.bob.stats.reports:
        assert r.secure_bits + r.auth_bits <= r.key_length
    st = link.stats()
    assert st["auth_key_spent_bits"] == b.keys.spent_bits
    assert st["secure_bits"] == sum(len(x.key) * 8 for x in _sinks(link)[1].blocks)


def test_memory_pair_is_symmetric() -> None:
    ta, tb = memory_pair()
    assert ta is not tb


def test_abort_backoff_doubles_to_its_cap() -> None:
    from qkdmeet.qkd.protocol import ABORT_BACKOFF_MAX_S, ABORT_BACKOFF_S, abort_backoff

    assert abort_backoff(0) == 0.0
    assert abort_backoff(1) == ABORT_BACKOFF_S
    assert abort_backoff(2) == 2 * ABORT_BACKOFF_S
    assert abort_backoff(50) == ABORT_BACKOFF_MAX_S
    waits = [abort_backoff(k) for k in range(1, 12)]
    assert waits == sorted(waits)


def test_transcript_hash_keeps_message_boundaries_and_directions() -> None:
    from qkdmeet.qkd.protocol import transcript_piece

    def hashed(*msgs: tuple[bool, bytes]) -> bytes:
        return b"".join(transcript_piece(a, p) + p for a, p in msgs)

    assert hashed((False, b"ab"), (True, b"c")) != hashed((False, b"a"), (True, b"bc"))
    assert hashed((False, b"ab")) != hashed((True, b"ab"))
    assert hashed((False, b"")) != hashed()


async def test_forged_checkpoint_is_refused(params_2db: LinkParams) -> None:
    """A VERDICT whose tag was changed on the way gives Alice no key of that block."""
    import struct

    from qkdmeet.qkd import messages as m
    from qkdmeet.qkd.classical import OPEN_SEQ

    link = _link(params_2db, 19, auth_target_masks=0)
    _, tb = link.transports
    state = {"done": False}

    def forge_first_verdict(frame: bytes) -> list[bytes]:
        seq, _ = struct.unpack_from("<QI", frame)
        if seq != OPEN_SEQ and not state["done"]:
            msg = m.decode(frame[12:-32])
            if msg.kind == m.VERDICT:
                state["done"] = True
                return [frame[:-1] + bytes([frame[-1] ^ 1])]
        return [frame]

    tb.tamper = forge_first_verdict  # type: ignore[attr-defined]
    async with link:
        await link.wait_blocks(1)
    first = link.alice.stats.reports[0]
    assert state["done"] and not first.ok and "authentication" in first.reason
    assert link.alice.channel.rejected == 1


async def test_one_mask_per_direction_per_block(params_2db: LinkParams) -> None:
    """Authentication per block: only HELLO and the two checkpoints are tagged."""
    link = _link(params_2db, 17, auth_target_masks=0)
    async with link:
        await link.wait_blocks(3)
    a = link.alice.channel
    ok = [r for r in link.alice.stats.reports if r.ok]
    assert len(ok) >= 3
    # HELLO plus one checkpoint per completed block, each direction (blocks still in
    # flight at the stop may have sent theirs)
    assert len(ok) + 1 <= a.next_send <= len(ok) + 1 + 3
    assert a.sent_open > 20 * len(ok)  # the Cascade messages travel open
    for r in ok:
        assert r.messages > 2 * r.ec_rounds


async def test_disclosed_bits_on_the_wire_equal_lambda_ec(params_2db: LinkParams) -> None:
    """Every parity Alice sends and Bob's EC_DONE count are charged to the key length."""
    import struct

    from qkdmeet.qkd import messages as m
    from qkdmeet.qkd.classical import OPEN_SEQ
    from qkdmeet.qkd.protocol import EC_DONE_DISCLOSED_BITS

    link = _link(params_2db, 18, auth_target_masks=0)
    ta, tb = link.transports
    wire: dict[int, int] = {}

    def count(frame: bytes) -> list[bytes]:
        seq, _ = struct.unpack_from("<QI", frame)
        if seq == OPEN_SEQ:
            msg = m.decode(frame[12:])
            if msg.kind == m.EC_REPLY:  # parities: kind u8, count u32, packed bits
                (n,) = struct.unpack_from("<I", msg.body, 1)
                wire[msg.block_id] = wire.get(msg.block_id, 0) + n
            elif msg.kind == m.EC_DONE:
                wire[msg.block_id] = wire.get(msg.block_id, 0) + 8 * len(msg.body)
        return [frame]

    ta.tamper = count  # type: ignore[attr-defined]
    tb.tamper = count  # type: ignore[attr-defined]
    async with link:
        await link.wait_blocks(2)
    reports = [r for r in link.alice.stats.reports if r.ok]
    assert reports
    for r in reports:
        assert wire[r.block_id] == r.leaked_bits
        assert EC_DONE_DISCLOSED_BITS == 64


async def test_injected_announcement_far_ahead_does_not_stop_the_link(
    params_2db: LinkParams,
) -> None:
    """ANNOUNCE travels open: a forged one with a huge block id is ignored (it would have
    made every real block stale for good), one within the window costs only itself."""
    import struct

    from qkdmeet.qkd import messages as m
    from qkdmeet.qkd.classical import OPEN_SEQ
    from qkdmeet.qkd.protocol import ANNOUNCE_WINDOW

    link = _link(params_2db, 20, auth_target_masks=0)
    _, tb = link.transports
    state = {"sent": 0}

    def inject(frame: bytes) -> list[bytes]:
        seq, _ = struct.unpack_from("<QI", frame)
        if seq == OPEN_SEQ and state["sent"] < 2:
            msg = m.decode(frame[12:])
            if msg.kind == m.ANNOUNCE:
                state["sent"] += 1
                bid = msg.block_id + (ANNOUNCE_WINDOW + 5 if state["sent"] == 1 else 8)
                forged = m.encode(m.ANNOUNCE, bid, msg.body)
                return [frame, struct.pack("<QI", OPEN_SEQ, len(forged)) + forged]
        return [frame]

    tb.tamper = inject  # Bob -> Alice
    async with link:
        await link.wait_blocks(16)
    assert state["sent"] == 2
    alice, bob = _sinks(link)
    ok = [r for r in link.bob.stats.reports if r.ok]
    assert len(ok) >= 12  # the link went on after both forgeries
    assert link.alice.next_block < ANNOUNCE_WINDOW
    common = {b.block_id for b in alice.blocks} & {b.block_id for b in bob.blocks}
    assert common and all(
        x.key == y.key for x in alice.blocks for y in bob.blocks if x.block_id == y.block_id
    )


async def test_a_defect_in_one_block_aborts_that_block_and_the_link_goes_on(
    params_2db: LinkParams, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception inside a block (here Bob's reconciler failing once, as an
    OverflowError in the layout once did) aborts that block with a reported reason;
    it neither hangs the link nor outputs key, and the next blocks give key."""
    from qkdmeet.qkd import protocol

    real = protocol.ReconcilerBob
    calls = {"n": 0}

    def flaky(*args: object, **kw: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OverflowError("int too big to convert")
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(protocol, "ReconcilerBob", flaky)
    link = _link(params_2db, 13, auth_target_masks=0)
    async with link:
        await asyncio.wait_for(link.wait_blocks(4, include_aborted=False), 60)
    reports = link.bob.stats.reports
    broken = [r for r in reports if not r.ok]
    assert len(broken) == 1 and "internal error" in broken[0].reason
    assert "OverflowError" in broken[0].reason
    alice, bob = _sinks(link)
    assert broken[0].block_id not in {b.block_id for b in bob.blocks + alice.blocks}
    assert [b.key for b in alice.blocks[:3]] == [b.key for b in bob.blocks[:3]]
