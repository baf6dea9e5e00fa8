from __future__ import annotations

import numpy as np
import pytest

from qkdmeet.qkd.kernels import privacy
from qkdmeet.qkd.kernels.privacy import (
    PrivacyAmplificationError,
    toeplitz_hash,
    toeplitz_hash_naive,
    toeplitz_seed_bits,
)


def _case(seed: int, n: int, out_len: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, toeplitz_seed_bits(n, out_len), dtype=np.uint8)
    return bits, s


@pytest.mark.parametrize("seed", range(40))
def test_fft_hash_equals_gf2_matrix_product(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(1, 3000))
    out_len = int(rng.integers(1, n + 1))
    bits, s = _case(seed, n, out_len)
    assert np.array_equal(toeplitz_hash(bits, s, out_len), toeplitz_hash_naive(bits, s, out_len))


def test_matrix_layout() -> None:
    # T[i, j] = seed[i - j + n - 1]: with x = e_j the output is column j
    n, out_len = 5, 3
    s = np.array([1, 0, 1, 1, 0, 0, 1], dtype=np.uint8)
    for j in range(n):
        e = np.zeros(n, dtype=np.uint8)
        e[j] = 1
        column = [s[i - j + n - 1] for i in range(out_len)]
        assert toeplitz_hash(e, s, out_len).tolist() == column


def test_large_input_matches_direct_windows() -> None:
    n, out_len = 200_000, 120_000
    bits, s = _case(7, n, out_len)
    fast = toeplitz_hash(bits, s, out_len)
    rows = np.random.default_rng(3).choice(out_len, 40, replace=False)
    for i in rows:
        window = s[i : i + n][::-1].astype(np.int64)
        assert fast[i] == int(window @ bits.astype(np.int64)) & 1


def test_precision_fallback_splits_and_stays_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(privacy, "ROUNDING_TOLERANCE", -1.0)  # force the split path
    bits, s = _case(11, 700, 300)
    assert np.array_equal(toeplitz_hash(bits, s, 300), toeplitz_hash_naive(bits, s, 300))


def test_hash_is_linear() -> None:
    a, s = _case(1, 1000, 400)
    b, _ = _case(2, 1000, 400)
    assert np.array_equal(
        toeplitz_hash(a ^ b, s, 400), toeplitz_hash(a, s, 400) ^ toeplitz_hash(b, s, 400)
    )


def test_wrong_lengths_are_refused() -> None:
    bits, s = _case(0, 100, 50)
    with pytest.raises(PrivacyAmplificationError):
        toeplitz_hash(bits, s[:-1], 50)
    with pytest.raises(PrivacyAmplificationError):
        toeplitz_hash(bits, s, 101)
    assert toeplitz_hash(bits, np.zeros(0, np.uint8), 0).size == 0


@pytest.mark.parametrize("family", privacy.FAMILIES)
def test_amplify_dispatches_to_each_family(family: str) -> None:
    rng = np.random.default_rng(9)
    bits = rng.integers(0, 2, 3000, dtype=np.uint8)
    seed = rng.integers(0, 2, privacy.amplification_seed_bits(family, 3000, 1200), dtype=np.uint8)
    out = privacy.amplify(bits, seed, 1200, family)
    assert out.size == 1200
    assert np.array_equal(out, privacy.amplify(bits.copy(), seed, 1200, family))
    with pytest.raises(PrivacyAmplificationError, match="unknown"):
        privacy.amplify(bits, seed, 1200, "md5")
