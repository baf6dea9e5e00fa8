"""The numba Poly1305 against RFC 8439 and against ``cryptography`` (OpenSSL)."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.poly1305 import Poly1305

from qkdmeet.crypto import poly1305


def test_rfc8439_vector() -> None:
    key = bytes.fromhex("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b")
    tags = poly1305.tag_pair(b"Cryptographic Forum Research Group", key + key)
    assert tags.hex() == 2 * "a8061dc1305136c6c22b8baf0c0127a9"


@pytest.mark.parametrize("n", [*range(0, 70), 255, 256, 1431, 1432, 4096, 65535])
def test_matches_openssl_on_random_keys(n: int) -> None:
    for _ in range(8):
        keys, msg = os.urandom(64), os.urandom(n)
        want = Poly1305.generate_tag(keys[:32], msg) + Poly1305.generate_tag(keys[32:], msg)
        assert poly1305.tag_pair(msg, keys) == want


@pytest.mark.parametrize("fill", [0x00, 0xFF])
@pytest.mark.parametrize("n", [15, 16, 17, 32, 1432])
def test_carry_edge_cases(fill: int, n: int) -> None:
    msg = bytes([fill]) * n
    for keys in (b"\xff" * 64, b"\x00" * 64, b"\xff" * 16 + b"\x00" * 16 + b"\x01" * 32):
        want = Poly1305.generate_tag(keys[:32], msg) + Poly1305.generate_tag(keys[32:], msg)
        assert poly1305.tag_pair(msg, keys) == want


def test_bad_key_sizes() -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        poly1305.tag_pair(b"x", bytes(32))
