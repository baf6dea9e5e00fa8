import os

import pytest

from qkdmeet.vpn.otp import xor


def test_xor_matches_bytewise() -> None:
    for n in (1, 17, 1370, 1408):
        a, b = os.urandom(n), os.urandom(n)
        assert xor(a, b) == bytes(x ^ y for x, y in zip(a, b, strict=True))
        assert xor(xor(a, b), b) == a


def test_xor_keeps_leading_zero_bytes() -> None:
    assert xor(b"\x00\x00\x01", b"\x00\x00\x00") == b"\x00\x00\x01"
    assert xor(b"", b"") == b""


def test_xor_length_mismatch() -> None:
    with pytest.raises(ValueError):
        xor(b"ab", b"a")
