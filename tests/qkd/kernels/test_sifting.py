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
