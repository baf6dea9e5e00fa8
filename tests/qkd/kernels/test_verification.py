from __future__ import annotations

import numpy as np
import pytest

from qkdmeet.qkd.kernels.verification import (
    VerificationError,
    verification_seed_bits,
    verification_tag,
    verification_tag_bits,
    verification_tag_naive,
)


def test_tag_bits_from_eps_cor() -> None:
    assert verification_tag_bits(1e-15) == 50
    assert verification_tag_bits(2**-64) == 64
    with pytest.raises(VerificationError):
        verification_tag_bits(0.0)


@pytest.mark.parametrize("seed", range(25))
def test_tag_equals_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 5000))
    t = int(rng.integers(1, 130))
    bits = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, verification_seed_bits(n, t), dtype=np.uint8)
    tag = verification_tag(bits, s, t)
    assert len(tag) == (t + 7) // 8
    assert tag == verification_tag_naive(bits, s, t)


@pytest.mark.parametrize("n", [1, 64, 1000, 100_003])
def test_single_residual_error_is_detected(n: int) -> None:
    rng = np.random.default_rng(n)
    t = verification_tag_bits(1e-15)
    key = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, verification_seed_bits(n, t), dtype=np.uint8)
    for pos in rng.choice(n, min(n, 20), replace=False):
        bad = key.copy()
        bad[pos] ^= 1
        assert verification_tag(bad, s, t) != verification_tag(key, s, t)


def test_wrong_seed_length_is_refused() -> None:
    with pytest.raises(VerificationError):
        verification_tag(np.zeros(10, np.uint8), np.zeros(10, np.uint8), 50)
