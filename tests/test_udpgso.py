"""GSO runs and GRO splitting as pure functions."""

from __future__ import annotations

import os

from qkdmeet.udpgso import GSO_MAX_BYTES, GSO_MAX_SEGMENTS, gso_runs, split_gro


def _sizes(*sizes: int) -> list[bytes]:
    return [bytes([i % 256]) * s for i, s in enumerate(sizes)]


def test_runs_of_equal_sizes_end_at_a_shorter_or_longer_datagram() -> None:
    d = _sizes(100, 100, 100, 40, 100, 120, 120, 7)
    assert gso_runs(d) == [(0, 4), (4, 5), (5, 8)]


def test_runs_respect_the_kernel_limits() -> None:
    assert all(e - s <= GSO_MAX_SEGMENTS for s, e in gso_runs(_sizes(*[10] * 200)))
    big = gso_runs(_sizes(*[1400] * 100))
    assert all(sum(1400 for _ in range(s, e)) <= GSO_MAX_BYTES for s, e in big)
    assert big[0] == (0, GSO_MAX_BYTES // 1400)
    assert gso_runs([]) == []


def test_runs_cover_every_datagram_once_in_order() -> None:
    sizes = [int.from_bytes(os.urandom(1), "big") % 3 * 500 + 1 for _ in range(300)]
    runs = gso_runs(_sizes(*sizes))
    assert [i for s, e in runs for i in range(s, e)] == list(range(300))


def test_split_gro() -> None:
    data = b"a" * 10 + b"b" * 10 + b"c" * 3
    assert split_gro(data, 10) == [b"a" * 10, b"b" * 10, b"c" * 3]
    assert split_gro(b"xyz", 0) == [b"xyz"]
    assert split_gro(b"xyz", 3) == [b"xyz"]
