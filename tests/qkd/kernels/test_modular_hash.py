from __future__ import annotations

import numpy as np
import pytest

from qkdmeet.qkd.kernels.modular_hash import (
    multiply_add_shift_hash,
    multiply_add_shift_hash_naive,
    multiply_add_shift_seed_bits,
)
from qkdmeet.qkd.kernels.privacy import PrivacyAmplificationError


def _case(seed: int, n: int, out_len: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, multiply_add_shift_seed_bits(n, out_len), dtype=np.uint8)
    return bits, s


@pytest.mark.parametrize("seed", range(40))
def test_gmp_product_equals_python_integers(seed: int) -> None:
    rng = np.random.default_rng(500 + seed)
    n = int(rng.integers(1, 20_000))
    out_len = int(rng.integers(1, n + 1))
    bits, s = _case(seed, n, out_len)
    fast = multiply_add_shift_hash(bits, s, out_len)
    assert np.array_equal(fast, multiply_add_shift_hash_naive(bits, s, out_len))


def test_large_input_equals_python_integers() -> None:
    bits, s = _case(1, 400_000, 250_000)
    fast = multiply_add_shift_hash(bits, s, 250_000)
    assert np.array_equal(fast, multiply_add_shift_hash_naive(bits, s, 250_000))


def test_definition_on_a_small_case() -> None:
    # n = 3, l = 2, w = 4: x = 0b110 = 6, a = 0b1011 = 11, b = 0b0101 = 5
    bits = np.array([0, 1, 1], np.uint8)
    a = [1, 1, 0, 1]  # least significant bit first
    b = [1, 0, 1, 0]
    value = ((11 * 6 + 5) % 16) >> 2  # 71 % 16 = 7 -> 0b01
    out = multiply_add_shift_hash(bits, np.array(a + b, np.uint8), 2)
    assert out.tolist() == [value & 1, value >> 1 & 1]


def test_every_input_bit_matters() -> None:
    bits, s = _case(4, 5000, 2000)
    base = multiply_add_shift_hash(bits, s, 2000)
    for pos in (0, 1, 2500, 4999):
        other = bits.copy()
        other[pos] ^= 1
        assert not np.array_equal(multiply_add_shift_hash(other, s, 2000), base)


def test_wrong_lengths_are_refused() -> None:
    bits, s = _case(0, 100, 50)
    with pytest.raises(PrivacyAmplificationError):
        multiply_add_shift_hash(bits, s[:-1], 50)
    with pytest.raises(PrivacyAmplificationError):
        multiply_add_shift_hash(bits, s, 101)
    assert multiply_add_shift_hash(bits, s, 0).size == 0


@pytest.mark.parametrize("seed", range(30))
def test_odd_sizes_and_extreme_output_lengths(seed: int) -> None:
    rng = np.random.default_rng(900 + seed)
    n = int(rng.integers(1, 3000)) | 1 if seed % 2 else int(rng.integers(1, 40))
    for out_len in sorted({0, 1, n, int(rng.integers(1, n + 1))}):
        bits, s = _case(seed * 7 + out_len, n, out_len)
        fast = multiply_add_shift_hash(bits, s, out_len)
        assert fast.dtype == np.uint8 and fast.shape == (out_len,)
        assert fast.flags.c_contiguous
        assert np.array_equal(fast, multiply_add_shift_hash_naive(bits, s, out_len)), (n, out_len)


def test_all_ones_input_and_seed_carry_through_every_bit() -> None:
    # a = b = 2^w - 1, x = 2^n - 1: the sum a x + b has the longest carry chains
    for n, out_len in ((1, 1), (8, 1), (9, 9), (64, 33), (1001, 500)):
        w = n + out_len - 1
        bits = np.ones(n, np.uint8)
        s = np.ones(2 * w, np.uint8)
        assert np.array_equal(
            multiply_add_shift_hash(bits, s, out_len),
            multiply_add_shift_hash_naive(bits, s, out_len),
        )


def test_bool_and_wide_integer_inputs_are_accepted() -> None:
    bits, s = _case(11, 777, 300)
    ref = multiply_add_shift_hash_naive(bits, s, 300)
    assert np.array_equal(multiply_add_shift_hash(bits.astype(bool), s.astype(np.int64), 300), ref)
