from __future__ import annotations

import dataclasses
import struct

import numpy as np
import pytest

from qkdmeet.qkd.kernels import cascade
from qkdmeet.qkd.kernels.bits import unpack_bits_le
from qkdmeet.qkd.kernels.reconciliation import (
    CascadeLayout,
    ReconcilerAlice,
    ReconcilerBob,
    ReconciliationError,
    cascade_block_sizes,
    reconcile_local,
)


def _pair(seed: int, n: int, qber: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    errors = (rng.random(n) < qber).astype(np.uint8)
    return alice, alice ^ errors


def _run_counting(alice_bits: np.ndarray, bob: ReconcilerBob) -> tuple[ReconcilerAlice, int]:
    """Run the exchange, counting the parity bits actually carried by Alice's replies."""
    alice = ReconcilerAlice(alice_bits)
    carried = 0
    while (request := bob.next_request()) is not None:
        reply = alice.answer(request)
        count = int.from_bytes(reply[1:5], "little")
        assert len(reply) == 5 + (count + 7) // 8
        unpack_bits_le(reply[5:], count)
        carried += count
        bob.handle_reply(reply)
    return alice, carried


@pytest.mark.parametrize(
    ("n", "qber", "frame_bits"),
    [
        (2, 0.5 - 1e-9, 64),
        (64, 0.05, 64),
        (1000, 0.03, 256),
        (2047, 0.04, 1024),
        (5000, 0.01, 1024),
        (70_001, 0.04, 8192),
    ],
)
def test_corrects_random_errors_and_counts_every_parity_bit(
    n: int, qber: float, frame_bits: int
) -> None:
    alice_bits, bob_bits = _pair(n, n, min(qber, 0.2))
    bob = ReconcilerBob(bob_bits, min(qber, 0.2), seed=n, frame_bits=frame_bits)
    alice, carried = _run_counting(alice_bits, bob)
    assert np.array_equal(bob.corrected_bits, alice_bits)
    assert bob.leaked_bits == alice.leaked_bits == carried
    assert bob.flipped_bits >= int(np.count_nonzero(alice_bits != bob_bits))


@pytest.mark.parametrize(
    "pattern",
    ["none", "first", "last", "adjacent pair", "burst of 9", "every 37th", "frame boundary"],
)
def test_known_error_patterns(pattern: str) -> None:
    n, frame_bits = 4096 + 1000, 4096
    alice_bits = np.random.default_rng(5).integers(0, 2, n, dtype=np.uint8)
    positions = {
        "none": [],
        "first": [0],
        "last": [n - 1],
        "adjacent pair": [100, 101],
        "burst of 9": list(range(2000, 2009)),
        "every 37th": list(range(0, n, 37)),
        "frame boundary": [frame_bits - 1, frame_bits],
    }[pattern]
    bob_bits = alice_bits.copy()
    bob_bits[positions] ^= 1
    result = reconcile_local(alice_bits, bob_bits, 0.02, seed=9, frame_bits=frame_bits)
    assert np.array_equal(result.corrected, alice_bits)
    assert result.residual_errors == result.frame_errors == 0
    assert result.initial_errors == len(positions)
    assert result.frames == 2


@pytest.mark.parametrize("qber", [0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04])
def test_efficiency_on_a_megabit_block(qber: float) -> None:
    alice_bits, bob_bits = _pair(int(qber * 1000), 1 << 20, qber)
    result = reconcile_local(alice_bits, bob_bits, qber, seed=1)
    assert result.frame_errors == 0
    assert np.array_equal(result.corrected, alice_bits)
    assert 1.0 < result.efficiency <= 1.10


def test_block_sizes_follow_the_qber() -> None:
    assert cascade_block_sizes(0.01, 1 << 16)[:3] == [64, 256, 4096]
    assert cascade_block_sizes(0.025, 1 << 16)[:2] == [32, 128]
    assert cascade_block_sizes(0.04, 1 << 16)[:2] == [16, 64]
    assert cascade_block_sizes(0.0, 1 << 16)[-1] == 1 << 15
    assert max(cascade_block_sizes(0.01, 100)) <= 50


def test_malformed_requests_are_refused_without_disclosure() -> None:
    alice_bits, bob_bits = _pair(1, 1000, 0.05)
    alice = ReconcilerAlice(alice_bits)
    for bad in [b"", b"\x07", b"\x02\x01\x00\x00\x00", b"\x01\x01"]:
        with pytest.raises(ReconciliationError):
            alice.answer(bad)
    bob = ReconcilerBob(bob_bits, 0.05, seed=3, frame_bits=512)
    init = bob.next_request()
    assert init is not None
    reply = alice.answer(init)
    bob.handle_reply(reply)
    request = bob.next_request()
    assert request is not None
    leaked = alice.leaked_bits
    step = struct.Struct("<BIII")

    def query(prev: int, fate: bytes, path: bytes, npath: int, new: list[int]) -> bytes:
        body = fate + path + np.array(new, "<u4").tobytes()
        return step.pack(0x03, prev, npath, len(new)) + body

    _, prev, npath, nnew = step.unpack_from(request)
    assert prev == 0 and npath == 0 and nnew > 0  # the first pass's bisections
    blocks = np.frombuffer(request, "<u4", offset=step.size).tolist()
    for bad, why in [
        (query(1, b"\x01", b"", 0, []), "bisections"),  # Alice runs none yet
        (query(0, b"", b"", 0, [10**6]), "out of range"),  # no such block
        (query(0, b"", b"", 0, [blocks[0], blocks[0]]), "already running"),
        (query(0, b"", b"\x01", 1, blocks[:1]), "halves"),  # halves of nothing
        (request + b"\x00", "length"),
    ]:
        fresh = ReconcilerAlice(alice_bits)
        fresh.answer(init)
        with pytest.raises(ReconciliationError, match=why):
            fresh.answer(bad)
        assert fresh.leaked_bits == leaked
        with pytest.raises(ReconciliationError):  # the mirror is lost: nothing more
            fresh.answer(request)
    alice.answer(request)  # the genuine one is answered
    assert alice.leaked_bits > leaked


def test_bob_refuses_a_reply_that_does_not_match() -> None:
    _, bob_bits = _pair(2, 1000, 0.05)
    bob = ReconcilerBob(bob_bits, 0.05, seed=3)
    with pytest.raises(ReconciliationError):
        bob.handle_reply(b"\x81\x00\x00\x00\x00")
    request = bob.next_request()
    assert request is not None
    with pytest.raises(ReconciliationError):
        bob.next_request()
    with pytest.raises(ReconciliationError):
        bob.handle_reply(b"\x82\x00\x00\x00\x00")


def test_alice_refuses_a_different_key_length() -> None:
    _, bob_bits = _pair(3, 1000, 0.05)
    bob = ReconcilerBob(bob_bits, 0.05, seed=3)
    with pytest.raises(ReconciliationError):
        ReconcilerAlice(np.zeros(999, np.uint8)).answer(bob.next_request() or b"")


def test_init_asking_for_too_much_memory_is_refused() -> None:
    from qkdmeet.qkd.kernels.reconciliation import MAX_FRAME_BITS, MAX_PASSES, _encode_init

    alice = ReconcilerAlice(np.zeros(1 << 21, np.uint8))
    with pytest.raises(ReconciliationError, match="passes"):
        alice.answer(_encode_init(1 << 21, 1 << 16, 1, [64] * (MAX_PASSES + 1), (0, 1)))
    with pytest.raises(ReconciliationError, match="frame_bits"):
        alice.answer(_encode_init(1 << 21, 2 * MAX_FRAME_BITS, 1, [64] * 4, (0, 1)))
    with pytest.raises(ReconciliationError, match="levels"):
        alice.answer(_encode_init(1 << 21, 1 << 16, 1, [64] * 4, (10, 40)))
    assert alice.leaked_bits == 0


@pytest.mark.parametrize("case", range(30))
def test_random_layouts_converge_and_count_exactly(case: int) -> None:
    rng = np.random.default_rng(10_000 + case)
    n = int(rng.integers(2, 30_000))
    qber = float(rng.uniform(0.002, 0.1))
    frame_bits = int(rng.choice([64, 100, 1000, 4096, 1 << 16]))
    alice_bits, bob_bits = _pair(case, n, qber)
    bob = ReconcilerBob(bob_bits, qber, seed=case, frame_bits=frame_bits)
    alice, carried = _run_counting(alice_bits, bob)
    assert bob.leaked_bits == alice.leaked_bits == carried
    # with these fixed seeds every frame converges; in general a frame may keep an even
    # number of errors (all its blocks are even at the end), which verification catches
    assert np.array_equal(bob.corrected_bits, alice_bits)


@pytest.mark.slow
def test_ten_megabit_block() -> None:
    alice_bits, bob_bits = _pair(77, 10_000_000, 0.03)
    result = reconcile_local(alice_bits, bob_bits, 0.03, seed=77)
    assert result.frames == 153
    assert result.frame_errors == 0
    assert np.array_equal(result.corrected, alice_bits)
    assert result.efficiency <= 1.10
    assert result.rounds < 1000


@pytest.mark.parametrize("when", [0, 1, 5])
def test_precompute_changes_nothing_but_timing(when: int) -> None:
    alice_bits, bob_bits = _pair(31, 150_000, 0.03)
    plain = ReconcilerBob(bob_bits, 0.03, seed=4)
    _run_counting(alice_bits, plain)
    early = ReconcilerBob(bob_bits, 0.03, seed=4)
    alice = ReconcilerAlice(alice_bits)
    replies = 0
    while (request := early.next_request()) is not None:
        if replies == when:
            early.precompute()
        early.handle_reply(alice.answer(request))
        replies += 1
    assert np.array_equal(early.corrected_bits, alice_bits)
    assert early.leaked_bits == plain.leaked_bits == alice.leaked_bits
    assert early.rounds == plain.rounds


def _eager(layout: CascadeLayout) -> CascadeLayout:
    """The same layout with every pass built whole (no rows on demand)."""
    passes = layout.passes._replace(lazy=np.zeros_like(layout.passes.lazy))
    return dataclasses.replace(layout, passes=passes)


@pytest.mark.parametrize(
    ("n", "qber", "frame_bits"), [(400_000, 0.03, 1 << 14), (70_001, 0.01, 4096)]
)
def test_rows_on_demand_change_no_message(
    n: int, qber: float, frame_bits: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Late passes' rows built on demand: every request and reply is byte-identical to
    building every pass whole, and most late rows are never built."""
    alice_bits, bob_bits = _pair(n + 1, n, qber)
    build = CascadeLayout.build
    transcripts = []
    built = []
    for lazy in (True, False):
        if not lazy:
            monkeypatch.setattr(
                CascadeLayout, "build", classmethod(lambda cls, *a: _eager(build(*a)))
            )
        bob = ReconcilerBob(bob_bits, qber, seed=9, frame_bits=frame_bits)
        alice = ReconcilerAlice(alice_bits)
        messages = []
        while (request := bob.next_request()) is not None:
            reply = alice.answer(request)
            messages += [request, reply]
            bob.handle_reply(reply)
        assert np.array_equal(bob.corrected_bits, alice_bits)
        transcripts.append(messages)
        assert alice._rows is not None
        late = build(n, frame_bits, bob.block_sizes, 9).passes.lazy.astype(bool)
        built.append((int(alice._rows.built[late].sum()), int(bob._rows.built[late].sum())))
        late_rows = int(late.sum()) * alice._rows.built.shape[1]
    assert transcripts[0] == transcripts[1]
    assert late_rows > 0
    # on demand: a few late rows at either end (the last frames, a frame with an error)
    assert max(built[0]) < late_rows // 4, (built, late_rows)
    # all built otherwise (Alice builds every row at INIT)
    assert built[1][0] == late_rows


def test_natural_order_parities_match_the_rows() -> None:
    """A lazy pass's top-level parities from the masks equal those of its built rows."""
    rng = np.random.default_rng(5)
    bits = rng.integers(0, 2, 100_003, dtype=np.uint8)
    lay = CascadeLayout.build(bits.size, 8192, [16, 64, 4096, 4096], 3)
    assert lay.passes.lazy.tolist() == [0, 0, 1, 1]
    lazy_top = np.zeros(lay.total_blocks, np.uint8)
    cascade.alice_init(lay.rows(bits), lay.passes, lazy_top)
    eager = _eager(lay)
    eager_top = np.zeros(lay.total_blocks, np.uint8)
    cascade.alice_init(eager.rows(bits), eager.passes, eager_top)
    assert np.array_equal(lazy_top, eager_top)


@pytest.mark.parametrize("seed", [0, 1, 2**63 - 1, 2**63, 2**64 - 1])
def test_layout_permutations_are_permutations_from_the_seed(seed: int) -> None:
    """Every pass's shuffle is a permutation with its inverse, the same for the same seed
    at both ends (any u64 seed, as INIT carries), different across passes and seeds."""
    lay = CascadeLayout.build(3 * 4096 + 1000, 4096, [8, 32, 2048, 2048], seed)
    for perm, inv in ((lay.perm, lay.inv), (lay.perm_last, lay.inv_last)):
        size = perm.shape[1]
        for q in range(perm.shape[0]):
            assert np.array_equal(np.sort(perm[q]), np.arange(size))
            assert np.array_equal(inv[q][perm[q]], np.arange(size))
        assert not np.array_equal(perm[0], perm[1])
    again = CascadeLayout.build(3 * 4096 + 1000, 4096, [8, 32, 2048, 2048], seed)
    assert np.array_equal(again.perm, lay.perm) and np.array_equal(again.perm_last, lay.perm_last)
    other = CascadeLayout.build(3 * 4096 + 1000, 4096, [8, 32, 2048, 2048], seed ^ 1)
    assert not np.array_equal(other.perm, lay.perm)


def test_shuffle_positions_are_uniform() -> None:
    """Each value lands in each position with probability 1/n (chi-square, 4 x 4)."""
    perm = np.empty((40_000, 4), np.uint16)
    cascade.shuffles(np.uint64(7), perm, np.empty_like(perm))
    counts = np.stack([np.bincount(perm[:, i], minlength=4) for i in range(4)])
    expected = perm.shape[0] / 4
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 30.0  # 9 degrees of freedom: p ~ 4e-4


@pytest.mark.parametrize("levels", [2, 3, 5])
def test_tail_bisections_descend_several_levels_per_round(levels: int) -> None:
    """In a pass's tail each bisection asks 2^d - 1 parities and descends d levels: fewer
    rounds, the key still corrected, every parity carried counted at both ends."""
    alice_bits, bob_bits = _pair(41, 300_000, 0.03)
    one = ReconcilerBob(bob_bits, 0.03, seed=2, frame_bits=1 << 14, tail_levels=1)
    _run_counting(alice_bits, one)
    many = ReconcilerBob(
        bob_bits, 0.03, seed=2, frame_bits=1 << 14, tail_per_frame=1.0, tail_levels=levels
    )
    alice, carried = _run_counting(alice_bits, many)
    assert np.array_equal(many.corrected_bits, alice_bits)
    assert many.leaked_bits == alice.leaked_bits == carried
    assert many.rounds < one.rounds
    assert many.leaked_bits > one.leaked_bits  # the halves not taken are disclosed too


def test_tail_levels_and_the_tree_alice_answers_in_heap_order() -> None:
    """A 16-bit range descends three levels (its tree's seven left halves, heap order),
    a 3-bit one a single level; above the tail's size every bisection one level."""
    bis = np.zeros((2, 6), dtype=np.int64)
    bis[0, :5] = (1, 3, 0, 16, 7)
    bis[1, :5] = (2, 0, 10, 13, 9)
    assert cascade.bob_levels(bis, 2, 2, 3) == 7 + 1
    assert bis[:, 5].tolist() == [3, 1]
    assert cascade.bob_levels(bis, 2, 1, 3) == 2 and bis[:, 5].tolist() == [1, 1]
    bits = np.random.default_rng(4).integers(0, 2, 64, dtype=np.uint8)
    lay = CascadeLayout.build(64, 64, [16], 1)  # one frame, four blocks of 16
    rows = lay.rows(bits)
    top = np.zeros(lay.total_blocks, np.uint8)
    cascade.alice_init(rows, lay.passes, top)
    state = cascade.AliceState(
        np.zeros((4, 6), np.int64), np.zeros(4, np.uint8), np.zeros(1, np.int64)
    )
    none = np.zeros(0, np.uint8)
    status, parities = cascade.alice_step(
        rows, lay.passes, state, none, none, 0, np.array([2], np.uint32), 4, 3
    )
    shuffled = bits[lay.perm_last[0]]  # pass order: block 2 is shuffled bits 32..47
    ranges = [(0, 8), (0, 4), (8, 12), (0, 2), (4, 6), (8, 10), (12, 14)]
    expect = [int(shuffled[32 + a : 32 + b].sum() % 2) for a, b in ranges]
    assert status == cascade.STEP_OK and parities.tolist() == expect
