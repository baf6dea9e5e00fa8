"""Delta coding of announced pulse indices (messages.encode_indices / decode_indices)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from qkdmeet.qkd import messages as m


def _reference_encode(index: np.ndarray, first: int) -> bytes:
    """The wire format spelled out: n u32, code u8, deltas in the smallest unsigned type."""
    deltas = np.diff(index, prepend=np.int64(first))
    top = int(deltas.max()) if deltas.size else 0
    code = next(i for i, d in enumerate(("<u1", "<u2", "<u4", "<u8")) if top < 256 ** (1 << i))
    dt = ("<u1", "<u2", "<u4", "<u8")[code]
    return struct.pack("<IB", index.size, code) + deltas.astype(dt).tobytes()


def _indices(seed: int, n: int, top_gap: int, first: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gaps = rng.integers(1, top_gap + 1, n, dtype=np.int64)
    if n:
        gaps[0] = rng.integers(0, top_gap + 1)  # the first may sit on ``first`` itself
        gaps[rng.integers(0, n)] = top_gap  # the largest gap decides the coding
    return first + np.cumsum(gaps)


@pytest.mark.parametrize("top_gap", [1, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**40])
@pytest.mark.parametrize("n", [1, 2, 1000])
def test_round_trip_and_wire_format(top_gap: int, n: int) -> None:
    first = 123_456_789
    index = _indices(top_gap % 1000 + n, n, top_gap, first)
    data = bytes(m.encode_indices(index, first))
    reference = _reference_encode(index, first)
    if data[4] == m.CODE_ESCAPED:  # chosen only where it is the shorter coding
        assert len(data) < len(reference)
    else:
        assert data == reference
        assert data[4] == next(i for i in range(4) if top_gap < 256 ** (1 << i))
    end = int(index[-1]) + 1
    r = m.Reader(data + b"tail")
    out = m.decode_indices(r, first, end)
    assert out.dtype == np.int64 and out.flags.c_contiguous and out.flags.writeable
    assert np.array_equal(out, index)
    assert r.take(4) == b"tail"
    r.end()


def test_empty_and_large_blocks() -> None:
    empty = np.zeros(0, dtype=np.int64)
    data = bytes(m.encode_indices(empty, 7))
    assert data == _reference_encode(empty, 7) == struct.pack("<IB", 0, 0)
    assert m.decode_indices(m.Reader(data), 7, 7).size == 0
    rng = np.random.default_rng(5)
    gaps = rng.geometric(0.06, 300_000)
    gaps[1234] = 300  # one long gap among the short ones
    index = 10**9 + np.cumsum(gaps).astype(np.int64)
    data = bytes(m.encode_indices(index, 10**9))
    assert data[4] == m.CODE_ESCAPED  # geometric gaps: the rare long one would force u16
    assert len(data) < 0.6 * len(_reference_encode(index, 10**9))
    assert np.array_equal(m.decode_indices(m.Reader(data), 10**9, int(index[-1]) + 1), index)


def test_non_contiguous_and_other_integer_input() -> None:
    index = np.arange(10, 1010, 3, dtype=np.int64)
    assert m.encode_indices(index[::2], 0) == _reference_encode(index[::2], 0)
    assert m.encode_indices(index.astype(np.uint32), 0) == _reference_encode(index, 0)


def test_not_increasing_input_is_coded_as_before() -> None:
    index = np.array([5, 9, 7, 20], dtype=np.int64)  # deltas wrap in the coded type
    assert m.encode_indices(index, 0) == _reference_encode(index, 0)


def _body(code: int, deltas: list[int]) -> bytes:
    dt = ("<u1", "<u2", "<u4", "<u8")[code]
    raw = np.array(deltas, dtype=np.uint64).astype(dt).tobytes()
    return struct.pack("<IB", len(deltas), code) + raw


@pytest.mark.parametrize("code", range(4))
def test_decode_refuses_out_of_range_or_repeated_indices(code: int) -> None:
    first, end = 100, 200
    assert m.decode_indices(m.Reader(_body(code, [0, 1, 98])), first, end).tolist() == [
        100, 101, 199,
    ]  # fmt: skip
    for deltas in ([0, 1, 99], [100], [5, 0], [3, 4, 0, 1]):  # end reached, or a delta 0
        with pytest.raises(m.ProtocolError, match="outside the block or not increasing"):
            m.decode_indices(m.Reader(_body(code, deltas)), first, end)
    with pytest.raises(m.ProtocolError):
        m.decode_indices(m.Reader(_body(code, [0])), 100, 100)  # empty block, one index


def test_decode_refuses_wrapping_u64_deltas() -> None:
    # 2^64 - 1 would read as -1 in int64: a decreasing index inside the block
    body = _body(3, [50, 2**64 - 1, 10])
    with pytest.raises(m.ProtocolError):
        m.decode_indices(m.Reader(body), 0, 1000)
    with pytest.raises(m.ProtocolError):
        m.decode_indices(m.Reader(_body(3, [2**63])), 0, 2**64 - 1)


def test_decode_refuses_unknown_coding_and_short_body() -> None:
    with pytest.raises(m.ProtocolError, match="unknown index coding"):
        m.decode_indices(m.Reader(struct.pack("<IB", 1, 5) + b"\0" * 16), 0, 10)
    with pytest.raises(m.ProtocolError, match="too short"):
        m.decode_indices(m.Reader(struct.pack("<IB", 3, 1) + b"\1\0\1\0"), 0, 10)
    with pytest.raises(m.ProtocolError):
        m.decode_indices(m.Reader(_body(0, [1, 2])), 2**64 - 10, 2**64 - 1)  # past int64


def test_escaped_coding_round_trips_and_refuses_malformed_bodies() -> None:
    first = 1000
    index = np.array([1000, 1001, 1300, 1301, 10**12], dtype=np.int64)  # first delta 0
    data = bytes(m.encode_indices(np.repeat(index, 1)[[0, 1, 2, 3, 4]], first))
    for idx in (index, first + np.cumsum(np.full(50, 3, np.int64)) + 400):
        raw = bytes(m._encode_escaped(idx, first, m._escaped_size(idx, first)))
        assert raw[4] == m.CODE_ESCAPED
        r = m.Reader(raw + b"x")
        assert np.array_equal(m.decode_indices(r, first, int(idx[-1]) + 1), idx)
        assert r.take(1) == b"x"
    raw = m._encode_escaped(index, first, m._escaped_size(index, first))
    bad_end = m.Reader(raw)
    with pytest.raises(m.ProtocolError):
        m.decode_indices(bad_end, first, 10**12)  # the last index is out of range
    body = bytearray(raw)
    body[9 + 1] = 0  # a second delta of "escape" with too few bytes after it
    with pytest.raises(m.ProtocolError):
        m.decode_indices(m.Reader(bytes(body[:12])), first, 10**13)
    head = struct.pack("<IBI", 3, m.CODE_ESCAPED, 3)
    with pytest.raises(m.ProtocolError):
        m.decode_indices(m.Reader(head + bytes([1, 0, 1])), first, 10**6)  # 0 = truncated escape
    with pytest.raises(m.ProtocolError):
        m.decode_indices(m.Reader(struct.pack("<IBI", 2, m.CODE_ESCAPED, 3) + b"\1\1\1"), 0, 9)
    assert data[4] in (m.CODE_ESCAPED, 3)


def _bodies() -> list[tuple[bytes, int, int]]:
    """Valid and malformed index codings of every kind, with their block ``[first, end)``."""
    out = []
    for code in range(4):
        for deltas in ([0, 1, 98], [0, 1, 99], [100], [5, 0], [3, 4, 0, 1], []):
            out.append((_body(code, deltas), 100, 200))
    out.append((_body(3, [50, 2**64 - 1, 10]), 0, 1000))
    out.append((struct.pack("<IB", 1, 5) + b"\0" * 16, 0, 10))
    out.append((struct.pack("<IB", 3, 1) + b"\1\0\1\0", 0, 10))
    index = np.array([1000, 1001, 1300, 1301, 10**12], dtype=np.int64)
    raw = bytes(m._encode_escaped(index, 1000, m._escaped_size(index, 1000)))
    out += [(raw, 1000, 10**12 + 1), (raw, 1000, 10**12), (raw[:12], 1000, 10**13)]
    out.append((struct.pack("<IBI", 3, m.CODE_ESCAPED, 3) + bytes([1, 0, 1]), 0, 10**6))
    out.append((struct.pack("<IBI", 2, m.CODE_ESCAPED, 3) + b"\1\1\1", 0, 9))
    gaps = np.random.default_rng(3).geometric(0.06, 50_000)
    idx = 7 + np.cumsum(gaps).astype(np.int64)
    out.append((bytes(m.encode_indices(idx, 7)), 7, int(idx[-1]) + 1))
    return out


@pytest.mark.parametrize(("body", "first", "end"), _bodies())
def test_checking_without_decoding_refuses_what_decoding_refuses(
    body: bytes, first: int, end: int
) -> None:
    """The fibre's coded indices (checked, not decoded) accept exactly what decoding
    accepts, decode to the same indices and pass on the very bytes they were read from."""
    try:
        decoded = m.decode_indices(m.Reader(body + b"tail"), first, end)
    except m.ProtocolError as exc:
        with pytest.raises(m.ProtocolError, match=str(exc)[:20]):
            m.read_indices(m.Reader(body + b"tail"), first, end)
        return
    r = m.Reader(body + b"tail")
    coded = m.read_indices(r, first, end)
    assert r.take(4) == b"tail"
    assert len(coded) == decoded.size and bytes(coded.coding) == body
    assert np.array_equal(np.asarray(coded), decoded)
    assert bytes(m.index_coding(coded, first)) == body  # passed on as read
    assert bytes(m.index_coding(decoded, first)) == bytes(m.encode_indices(decoded, first))
    if decoded.size:  # from another first: coded again
        again = m.index_coding(coded, first - 1)
        assert np.array_equal(m.decode_indices(m.Reader(again), first - 1, end), decoded)
