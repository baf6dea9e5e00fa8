"""Sifted key through error correction, verification and privacy amplification at both ends."""

from __future__ import annotations

import math

import numpy as np

from qkdmeet.qkd.kernels import (
    ReconcilerAlice,
    ReconcilerBob,
    binary_entropy,
    toeplitz_hash,
    toeplitz_seed_bits,
    verification_seed_bits,
    verification_tag,
    verification_tag_bits,
)


def test_both_ends_distil_the_same_key() -> None:
    rng = np.random.default_rng(2024)
    n, qber = 300_000, 0.025
    alice_key = rng.integers(0, 2, n, dtype=np.uint8)
    bob_key = alice_key ^ (rng.random(n) < qber).astype(np.uint8)

    # error correction over bytes only
    alice = ReconcilerAlice(alice_key)
    bob = ReconcilerBob(bob_key, qber, seed=int(rng.integers(1 << 62)))
    while (request := bob.next_request()) is not None:
        bob.handle_reply(alice.answer(request))
    corrected = bob.corrected_bits

    # error verification: Alice's seed and tag are public
    t = verification_tag_bits(1e-15)
    v_seed = rng.integers(0, 2, verification_seed_bits(n, t), dtype=np.uint8)
    assert verification_tag(alice_key, v_seed, t) == verification_tag(corrected, v_seed, t)

    # privacy amplification to a length that charges the disclosed bits
    length = math.floor(n * (1 - binary_entropy(qber)) - alice.leaked_bits - t)
    length = max(length, 1)
    pa_seed = rng.integers(0, 2, toeplitz_seed_bits(n, length), dtype=np.uint8)
    final_a = toeplitz_hash(alice_key, pa_seed, length)
    final_b = toeplitz_hash(corrected, pa_seed, length)
    assert np.array_equal(final_a, final_b)
    assert final_a.size == length
    assert 0.45 < final_a.mean() < 0.55


def test_uncorrected_key_fails_verification_and_hashes_differently() -> None:
    rng = np.random.default_rng(7)
    n = 10_000
    key = rng.integers(0, 2, n, dtype=np.uint8)
    other = key.copy()
    other[1234] ^= 1
    t = verification_tag_bits(1e-15)
    v_seed = rng.integers(0, 2, verification_seed_bits(n, t), dtype=np.uint8)
    assert verification_tag(key, v_seed, t) != verification_tag(other, v_seed, t)
    pa_seed = rng.integers(0, 2, toeplitz_seed_bits(n, 4000), dtype=np.uint8)
    assert not np.array_equal(
        toeplitz_hash(key, pa_seed, 4000), toeplitz_hash(other, pa_seed, 4000)
    )
