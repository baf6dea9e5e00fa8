from __future__ import annotations

import numpy as np
import pytest

from qkdmeet.qkd.kernels.bits import (
    BitsError,
    as_bits,
    binary_entropy,
    binary_entropy_array,
    pack_bits,
    pack_bits_le,
    pack_words,
    unpack_bits,
    unpack_bits_le,
    unpack_words,
)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 63, 64, 65, 1000])
def test_pack_round_trips(n: int) -> None:
    bits = np.random.default_rng(n).integers(0, 2, n, dtype=np.uint8)
    assert np.array_equal(unpack_bits(pack_bits(bits), n), bits)
    assert np.array_equal(unpack_bits_le(pack_bits_le(bits), n), bits)
    words = pack_words(bits, extra_words=1)
    assert words.size == (n + 63) // 64 + 1
    assert np.array_equal(unpack_words(words, n), bits)


def test_pack_words_layout_is_lsb_first() -> None:
    bits = np.zeros(130, dtype=np.uint8)
    bits[[0, 5, 64, 129]] = 1
    words = pack_words(bits)
    assert words.tolist() == [1 | 1 << 5, 1, 2]


def test_pack_bits_is_msb_first() -> None:
    assert pack_bits([1, 0, 0, 0, 0, 0, 0, 1, 1]) == bytes([0x81, 0x80])


@pytest.mark.parametrize("bad", [[0, 2], [-1, 0], [0.5, 1.0], [[0, 1]]])
def test_as_bits_refuses_non_bits(bad: object) -> None:
    with pytest.raises(BitsError):
        as_bits(bad)  # type: ignore[arg-type]


def test_as_bits_accepts_bool() -> None:
    assert as_bits(np.array([True, False])).tolist() == [1, 0]


def test_binary_entropy_values() -> None:
    assert binary_entropy(0.0) == 0.0
    assert binary_entropy(1.0) == 0.0
    assert binary_entropy(0.5) == pytest.approx(1.0)
    assert binary_entropy(0.11) == pytest.approx(0.4999, abs=1e-3)
    p = np.array([0.0, 0.01, 0.5, 1.0])
    assert np.allclose(binary_entropy_array(p), [binary_entropy(x) for x in p])
