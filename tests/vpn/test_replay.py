import random

import pytest

from qkdmeet.vpn.replay import ReplayWindow


def test_in_order_and_duplicates() -> None:
    w = ReplayWindow(64)
    for s in range(100):
        assert w.accept(s) == ""
        assert w.accept(s) == "replayed"


def test_reorder_within_window_and_too_old() -> None:
    w = ReplayWindow(64)
    assert w.accept(100) == ""
    assert w.accept(99) == ""
    assert w.accept(37) == ""  # 63 behind: last slot in the window
    assert w.accept(36) == "too_old"
    assert w.accept(37) == "replayed"
    assert w.accept(1000) == ""
    assert w.accept(100) == "too_old"


def test_check_does_not_mark() -> None:
    w = ReplayWindow(8)
    assert w.check(5) == ""
    assert w.accept(5) == ""
    assert w.check(5) == "replayed"


def test_against_reference_model() -> None:
    rng = random.Random(1)
    size = 32
    w = ReplayWindow(size)
    seen: set[int] = set()
    highest = -1
    for _ in range(5000):
        s = max(0, highest + rng.randint(-40, 5))
        if s in seen:
            expect = "replayed" if highest - s < size else "too_old"
        elif highest >= 0 and highest - s >= size:
            expect = "too_old"
        else:
            expect = ""
        assert w.accept(s) == expect, s
        if not expect:
            seen.add(s)
            highest = max(highest, s)


def test_bad_size() -> None:
    with pytest.raises(ValueError):
        ReplayWindow(0)
