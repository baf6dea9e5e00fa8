"""Alice's sifting answer, two codes per byte."""

from __future__ import annotations

import numpy as np
import pytest

from qkdmeet.qkd.kernels.codes import CodeError, pack_codes, unpack_codes
from qkdmeet.qkd.kernels.sifting import UNKNOWN_BASIS


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000])
def test_round_trip(n: int) -> None:
    rng = np.random.default_rng(n)
    basis = rng.choice(np.array([0, 1, UNKNOWN_BASIS], np.uint8), n)
    intensity = rng.integers(0, 3, n, dtype=np.uint8)
    raw = pack_codes(basis, intensity)
    assert len(raw) == (n + 1) // 2
    b, k = unpack_codes(raw, n)
    assert np.array_equal(b, basis) and np.array_equal(k, intensity)


def test_malformed_answers_are_refused() -> None:
    raw = pack_codes(np.zeros(3, np.uint8), np.zeros(3, np.uint8))
    with pytest.raises(CodeError):
        unpack_codes(raw, 5)
    with pytest.raises(CodeError):
        unpack_codes(bytes([0x02, 0x00]), 3)  # basis code 2 does not exist
    with pytest.raises(CodeError):
        unpack_codes(bytes([0x0C, 0x00]), 3)  # intensity 3 does not exist
    with pytest.raises(CodeError):
        unpack_codes(bytes([0x00, 0x10]), 3)  # padding nibble set
