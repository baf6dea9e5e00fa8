from __future__ import annotations

import numpy as np
import pytest

from qkdmeet.qkd.kernels import modular_hash
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
def test_fft_product_equals_python_integers(seed: int) -> None:
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


def test_smaller_digits_when_precision_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = modular_hash._low_product_bits

    def flaky(a: np.ndarray, x: np.ndarray, b: np.ndarray, w: int, digit_bits: int) -> object:
        calls.append(digit_bits)
        return None if digit_bits > 2 else real(a, x, b, w, digit_bits)

    monkeypatch.setattr(modular_hash, "_low_product_bits", flaky)
    bits, s = _case(3, 3000, 1000)
    assert np.array_equal(
        multiply_add_shift_hash(bits, s, 1000), multiply_add_shift_hash_naive(bits, s, 1000)
    )
    assert calls == [8, 4, 2]


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
