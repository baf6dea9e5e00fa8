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


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 64, 678, 1000, 12_345])
def test_packed_bits_are_the_unpacked_bits(n: int) -> None:
    """A seed kept packed gives every kernel exactly the bits it would get unpacked."""
    from qkdmeet.qkd.kernels import PackedBits, multiply_add_shift_hash, verification_tag
    from qkdmeet.qkd.kernels.bits import pack_words

    rng = np.random.default_rng(n)
    raw = rng.bytes((n + 7) // 8)
    p = PackedBits.from_bytes(raw + b"more", n)
    bits = unpack_bits(raw, n)
    assert np.array_equal(p.bits(), bits) and p.size == n
    assert np.array_equal(p.little(), np.packbits(bits, bitorder="little"))
    assert np.array_equal(p.words(2), pack_words(bits, extra_words=2))
    key = rng.integers(0, 2, 300, dtype=np.uint8)
    if n == 2 * (300 + 40 - 1):
        assert np.array_equal(
            multiply_add_shift_hash(key, p, 40), multiply_add_shift_hash(key, bits, 40)
        )
    seed = PackedBits.from_bytes(rng.bytes(44), 300 + 50 - 1)
    assert verification_tag(key, seed, 50) == verification_tag(key, seed.bits(), 50)


def test_packed_bits_clear_and_check_the_padding() -> None:
    from qkdmeet.qkd.kernels import PackedBits
    from qkdmeet.qkd.kernels.bits import BitsError

    assert PackedBits.from_bytes(b"\xff\xff", 11).data == b"\xff\xe0"
    with pytest.raises(BitsError, match="padding"):
        PackedBits(11, b"\xff\xff")
    with pytest.raises(BitsError):
        PackedBits.from_bytes(b"\xff", 9)  # too few bytes
    with pytest.raises(BitsError):
        PackedBits(8, b"")


def test_a_packed_seed_travels_as_a_bits_field() -> None:
    from qkdmeet.qkd import messages as m
    from qkdmeet.qkd.kernels import PackedBits

    bits = np.random.default_rng(2).integers(0, 2, 1001, dtype=np.uint8)
    p = PackedBits.from_bytes(np.packbits(bits).tobytes(), bits.size)
    assert m.bits(p) == m.bits(bits)
    assert m.Reader(m.bits(bits)).packed() == p
    assert np.array_equal(m.Reader(m.bits(p)).bits(), bits)
    forged = bytearray(m.bits(bits))
    forged[-1] |= 0x01  # a padding bit set by the peer: cleared, as unpacking ignores it
    assert m.Reader(bytes(forged)).packed() == p
