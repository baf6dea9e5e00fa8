from __future__ import annotations

import os

import pytest

from qkdmeet.crypto import MASK_BYTES, TAG_BYTES, WegmanCarterMac, forgery_bound_log2

P1305 = (1 << 130) - 5


def _poly1305_reference(key: bytes, msg: bytes) -> bytes:
    """RFC 8439 section 2.5 written out with Python integers."""
    r = int.from_bytes(key[:16], "little") & 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
    s = int.from_bytes(key[16:], "little")
    acc = 0
    for i in range(0, len(msg), 16):
        block = msg[i : i + 16] + b"\x01"
        acc = (acc + int.from_bytes(block, "little")) * r % P1305
    return ((acc + s) % (1 << 128)).to_bytes(16, "little")


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1200, 1500])
def test_tag_matches_reference_poly1305(size: int) -> None:
    hash_key, mask, msg = os.urandom(32), os.urandom(32), os.urandom(size)
    tag = WegmanCarterMac(hash_key).tag(msg, mask)
    expected = _poly1305_reference(hash_key[:16] + mask[:16], msg) + _poly1305_reference(
        hash_key[16:] + mask[16:], msg
    )
    assert tag == expected
    assert len(tag) == TAG_BYTES


def test_verify_rejects_modified_message_and_wrong_mask() -> None:
    mac = WegmanCarterMac(os.urandom(32))
    mask = os.urandom(MASK_BYTES)
    msg = bytearray(os.urandom(300))
    tag = mac.tag(msg, mask)
    assert mac.verify(msg, mask, tag)
    msg[17] ^= 0x01
    assert not mac.verify(msg, mask, tag)
    msg[17] ^= 0x01
    assert not mac.verify(msg, os.urandom(MASK_BYTES), tag)
    assert not mac.verify(msg, mask, tag[:-1])


def test_same_message_different_masks_give_unrelated_tags() -> None:
    mac = WegmanCarterMac(os.urandom(32))
    msg = b"x" * 64
    assert mac.tag(msg, os.urandom(32)) != mac.tag(msg, os.urandom(32))


def test_bad_key_sizes_raise() -> None:
    with pytest.raises(ValueError):
        WegmanCarterMac(b"short")
    with pytest.raises(ValueError):
        WegmanCarterMac(os.urandom(32)).tag(b"m", b"short")


def test_forgery_bound_meets_packet_target() -> None:
    assert forgery_bound_log2(1500) <= -100
    assert forgery_bound_log2(100_000_000) <= -100


def test_stream_tag_equals_the_one_shot_tag_of_the_concatenation() -> None:
    import os

    from qkdmeet.crypto.wegman_carter import WegmanCarterMac

    mac = WegmanCarterMac(os.urandom(32))
    for sizes in ([0], [1], [15, 1], [16, 16, 3], [1000, 7, 70001]):
        pieces = [os.urandom(n) for n in sizes]
        mask = os.urandom(32)
        st = mac.stream()
        for piece in pieces:
            st.update(piece)
        tag = st.tag(mask)
        assert tag == mac.tag(b"".join(pieces), mask)
        st2 = mac.stream()
        for piece in pieces:
            st2.update(piece)
        assert st2.verify(mask, tag)
        bad = mac.stream()
        bad.update(b"".join(pieces) + b"x")
        assert not bad.verify(mask, tag)
