from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from qkdmeet.qkd.kernels.sifting import (
    BASIS_X,
    BASIS_Z,
    UNKNOWN_BASIS,
    SiftingError,
    alice_sift,
    bob_announcement,
    bob_sift,
    z_errors_per_intensity,
)


@dataclass
class Alice:
    pulse_index: npt.NDArray[np.int64]
    bit: npt.NDArray[np.uint8]
    basis: npt.NDArray[np.uint8]
    intensity: npt.NDArray[np.uint8]


@dataclass
class Bob:
    pulse_index: npt.NDArray[np.int64]
    basis: npt.NDArray[np.uint8]
    bit: npt.NDArray[np.uint8]


def _events(seed: int, n: int, extra_alice: float = 0.0) -> tuple[Alice, Bob]:
    rng = np.random.default_rng(seed)
    pulses = np.sort(rng.choice(10 * n + 10, size=n, replace=False)).astype(np.int64)
    a_bits = rng.integers(0, 2, n, dtype=np.uint8)
    a_basis = (rng.random(n) > 0.8).astype(np.uint8)
    intensity = rng.integers(0, 3, n, dtype=np.uint8)
    b_basis = (rng.random(n) > 0.8).astype(np.uint8)
    flips = (rng.random(n) < 0.03).astype(np.uint8)
    b_bits = np.where(b_basis == a_basis, a_bits ^ flips, rng.integers(0, 2, n)).astype(np.uint8)
    keep_bob = rng.random(n) >= extra_alice  # Alice may hold pulses Bob never detected
    alice = Alice(pulses, a_bits, a_basis, intensity)
    bob = Bob(pulses[keep_bob], b_basis[keep_bob], b_bits[keep_bob])
    return alice, bob


def _reference(alice: Alice, bob: Bob) -> dict[str, list[int]]:
    """Plain Python loop over Bob's announcement."""
    where = {int(p): i for i, p in enumerate(alice.pulse_index)}
    out: dict[str, list[int]] = {"x": [], "z": [], "xa": [], "xb": [], "xi": [], "za": []}
    for j, p in enumerate(bob.pulse_index):
        i = where.get(int(p))
        if i is None or alice.basis[i] != bob.basis[j]:
            continue
        key = "x" if bob.basis[j] == BASIS_X else "z"
        out[key].append(j)
        if key == "x":
            out["xa"].append(int(alice.bit[i]))
            out["xb"].append(int(bob.bit[j]))
            out["xi"].append(int(alice.intensity[i]))
        else:
            out["za"].append(int(alice.bit[i]))
    return out


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("extra", [0.0, 0.3])
def test_sifting_matches_python_loop(seed: int, extra: float) -> None:
    alice, bob = _events(seed, 500 + 97 * seed, extra)
    pulse, basis = bob_announcement(bob)
    a = alice_sift(alice, pulse, basis)
    b = bob_sift(bob, a.reply_basis, a.reply_intensity)
    ref = _reference(alice, bob)
    assert a.x_index.tolist() == ref["x"] == b.x_index.tolist()
    assert a.z_index.tolist() == ref["z"] == b.z_index.tolist()
    assert a.x_bits.tolist() == ref["xa"]
    assert b.x_bits.tolist() == ref["xb"]
    assert a.z_bits.tolist() == ref["za"]
    assert a.x_intensity.tolist() == ref["xi"] == b.x_intensity.tolist()
    assert a.n_x.tolist() == np.bincount(ref["xi"], minlength=3).tolist() == b.n_x.tolist()
    assert a.n_z.sum() == len(ref["z"]) == b.n_z.sum()
    assert a.unmatched == b.unmatched == 0


def test_unknown_pulses_are_dropped_and_counted() -> None:
    alice, bob = _events(1, 200)
    pulse, basis = bob_announcement(bob)
    forged = np.concatenate([pulse, [pulse[-1] + 1, pulse[-1] + 5]])
    a = alice_sift(alice, forged, np.concatenate([basis, [BASIS_X, BASIS_Z]]))
    assert a.unmatched == 2
    assert a.reply_basis[-2:].tolist() == [UNKNOWN_BASIS, UNKNOWN_BASIS]
    assert a.sifted == alice_sift(alice, pulse, basis).sifted


def test_unsorted_or_repeated_announcement_is_answered_safely() -> None:
    alice, bob = _events(2, 100)
    pulse, basis = bob_announcement(bob)
    order = np.random.default_rng(0).permutation(pulse.size)
    shuffled = alice_sift(alice, pulse[order], basis[order])
    straight = alice_sift(alice, pulse, basis)
    assert shuffled.unmatched == 0
    assert sorted(shuffled.x_bits.tolist()) == sorted(straight.x_bits.tolist())
    repeated = alice_sift(alice, np.r_[pulse[order], pulse[:3]], np.r_[basis[order], basis[:3]])
    assert repeated.unmatched == 3


def test_bob_sift_refuses_a_reply_of_the_wrong_length() -> None:
    alice, bob = _events(3, 50)
    pulse, basis = bob_announcement(bob)
    a = alice_sift(alice, pulse, basis)
    with pytest.raises(SiftingError):
        bob_sift(bob, a.reply_basis[:-1], a.reply_intensity[:-1])


def test_z_error_counts_per_intensity() -> None:
    alice, bob = _events(4, 3000)
    pulse, basis = bob_announcement(bob)
    a = alice_sift(alice, pulse, basis)
    b = bob_sift(bob, a.reply_basis, a.reply_intensity)
    m = z_errors_per_intensity(a.z_bits, b.z_bits, a.z_intensity)
    expected = [int(np.sum((a.z_bits != b.z_bits) & (a.z_intensity == k))) for k in range(3)]
    assert m.tolist() == expected
    assert 0 < m.sum() < a.z_bits.size


def test_intensity_codes_out_of_range_are_refused() -> None:
    alice, bob = _events(5, 300)
    pulse, basis = bob_announcement(bob)
    a = alice_sift(alice, pulse, basis)
    forged = a.reply_intensity.copy()
    forged[a.x_index[0]] = 7
    with pytest.raises(SiftingError, match="intensity"):
        bob_sift(bob, a.reply_basis, forged)


def test_sifting_large_block_counts_add_up() -> None:
    alice, bob = _events(6, 200_000)
    pulse, basis = bob_announcement(bob)
    a = alice_sift(alice, pulse, basis)
    b = bob_sift(bob, a.reply_basis, a.reply_intensity)
    same = alice.basis == bob.basis
    assert a.sifted == b.sifted == int(same.sum())
    assert a.n_x.sum() == int((same & (bob.basis == BASIS_X)).sum())
    assert np.array_equal(a.x_index, b.x_index)
    assert np.mean(a.x_bits != b.x_bits) == pytest.approx(0.03, abs=0.005)


def _check_against_reference(alice: Alice, bob: Bob) -> None:
    pulse, basis = bob_announcement(bob)
    a = alice_sift(alice, pulse, basis)
    b = bob_sift(bob, a.reply_basis, a.reply_intensity)
    ref = _reference(alice, bob)
    assert a.x_index.tolist() == ref["x"] == b.x_index.tolist()
    assert a.z_index.tolist() == ref["z"] == b.z_index.tolist()
    assert a.x_bits.tolist() == ref["xa"] and b.x_bits.tolist() == ref["xb"]
    assert a.z_bits.tolist() == ref["za"]
    assert a.x_intensity.tolist() == ref["xi"] == b.x_intensity.tolist()
    assert a.n_x.tolist() == np.bincount(ref["xi"], minlength=3).tolist() == b.n_x.tolist()
    assert a.n_z.tolist() == np.bincount(a.z_intensity, minlength=3).tolist() == b.n_z.tolist()
    where = {int(p): i for i, p in enumerate(alice.pulse_index)}
    expect_basis = [int(alice.basis[where[int(p)]]) if int(p) in where else UNKNOWN_BASIS
                    for p in pulse]  # fmt: skip
    assert a.reply_basis.tolist() == expect_basis
    assert a.unmatched == b.unmatched == expect_basis.count(UNKNOWN_BASIS)
    for r in (a, b):
        for name in ("reply_basis", "reply_intensity", "x_bits", "z_bits", "x_intensity",
                     "z_intensity"):  # fmt: skip
            assert getattr(r, name).dtype == np.uint8, name
        for name in ("x_index", "z_index"):  # positions in the announcement: u32
            assert getattr(r, name).dtype == np.uint32, name
        for name in ("n_x", "n_z"):
            assert getattr(r, name).dtype == np.int64, name
        assert r.announced == pulse.size


@pytest.mark.parametrize("extra", [0.0, 0.0005, 0.02, 0.5])
def test_many_blocks_with_sporadic_extra_records(extra: float) -> None:
    # several merge blocks (2048 announcements each): one-to-one blocks, blocks
    # where Alice holds a few pulses Bob did not announce, and everything in between
    alice, bob = _events(40, 9000, extra)
    _check_against_reference(alice, bob)


def test_announced_pulses_before_between_and_after_alices_records() -> None:
    alice, bob = _events(41, 6000)
    pulse = bob.pulse_index
    forged = np.unique(np.concatenate([[0], pulse[:3000], pulse[3000:] + 1, [pulse[-1] + 99]]))
    rng = np.random.default_rng(1)
    forged_bob = Bob(forged.astype(np.int64), rng.integers(0, 2, forged.size, dtype=np.uint8),
                     rng.integers(0, 2, forged.size, dtype=np.uint8))  # fmt: skip
    _check_against_reference(alice, forged_bob)


@pytest.mark.parametrize("where", [1, 2500, 5000, 5999])
def test_unsorted_alice_records_are_refused(where: int) -> None:
    alice, bob = _events(42, 6000)
    pulse, basis = bob_announcement(bob)
    bad = alice.pulse_index.copy()
    bad[where] = bad[where - 1]
    broken = Alice(bad, alice.bit, alice.basis, alice.intensity)
    with pytest.raises(SiftingError, match="Alice's pulse indices"):
        alice_sift(broken, pulse, basis)
    # also when Bob's announcement is out of order (the look-up by search)
    with pytest.raises(SiftingError, match="Alice's pulse indices"):
        alice_sift(broken, pulse[::-1], basis[::-1])
    # and past Bob's last announced pulse
    with pytest.raises(SiftingError, match="Alice's pulse indices"):
        alice_sift(broken, pulse[:1], basis[:1])


def test_unsorted_announcement_in_a_later_block_is_answered_safely() -> None:
    alice, bob = _events(43, 7000)
    pulse, basis = bob_announcement(bob)
    swapped = pulse.copy()
    swapped[[5000, 5001]] = swapped[[5001, 5000]]
    a = alice_sift(alice, swapped, basis)
    assert a.unmatched == 0 and a.announced == pulse.size
    assert a.reply_basis[5000] == alice.basis[5001]
    straight = alice_sift(alice, pulse, basis)
    assert a.sifted <= straight.sifted + 2


def test_alice_intensity_codes_out_of_range_are_refused() -> None:
    alice, bob = _events(44, 3000)
    pulse, basis = bob_announcement(bob)
    inten = alice.intensity.copy()
    inten[np.flatnonzero(alice.basis == bob.basis)[0]] = 9
    with pytest.raises(SiftingError, match="intensity"):
        alice_sift(Alice(alice.pulse_index, alice.bit, alice.basis, inten), pulse, basis)
    with pytest.raises(SiftingError, match="n_intensities"):
        alice_sift(alice, pulse, basis, n_intensities=0)


def test_bad_shapes_are_refused() -> None:
    alice, bob = _events(45, 100)
    pulse, basis = bob_announcement(bob)
    with pytest.raises(SiftingError, match="1-D"):
        alice_sift(alice, pulse, basis[:-1])
    with pytest.raises(SiftingError, match="differ in length"):
        alice_sift(Alice(alice.pulse_index, alice.bit[:-1], alice.basis, alice.intensity),
                   pulse, basis)  # fmt: skip


def test_empty_announcement_and_read_only_input() -> None:
    alice, bob = _events(46, 3000)
    empty = alice_sift(alice, np.zeros(0, np.int64), np.zeros(0, np.uint8))
    assert empty.sifted == 0 and empty.n_x.tolist() == [0, 0, 0] and empty.announced == 0
    for arr in (alice.pulse_index, alice.bit, alice.basis, alice.intensity, bob.pulse_index):
        arr.flags.writeable = False
    _check_against_reference(alice, bob)
