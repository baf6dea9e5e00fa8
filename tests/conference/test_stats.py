import math

import pytest

from qkdmeet.conference.stats import StreamStats, Unwrapper


def test_gaps_count_as_loss_and_rates_follow_arrivals() -> None:
    s = StreamStats()
    for counter in [0, 1, 2, 5, 6, 4]:
        s.record(counter, sent_at=counter / 15, arrived_at=counter / 15 + 0.02, size=1000)
    assert s.lost == 2 and s.reordered == 1 and s.frames == 5
    assert s.fps() == pytest.approx(4 / (6 / 15))
    assert s.bitrate() == pytest.approx(8 * 5000 / (6 / 15))
    assert s.loss_ratio() == pytest.approx(2 / 7)
    assert s.latency_percentile(50) == pytest.approx(0.02)


def test_empty_stream_and_bad_size() -> None:
    s = StreamStats()
    assert s.fps() == 0.0 and s.bitrate() == 0.0 and s.loss_ratio() == 0.0
    assert math.isnan(s.latency_percentile(95))
    with pytest.raises(ValueError):
        s.record(0, 0.0, 0.0, -1)


def test_unwrapper_crosses_wraps_and_reads_old_values_as_older() -> None:
    u = Unwrapper(150)
    assert [u(i % 150) for i in range(140, 460)] == list(range(140, 460))
    u = Unwrapper(1 << 32)
    start = (1 << 32) - 12_000  # an RTP timestamp two frames before its wrap
    assert [u((start + k * 6000) % (1 << 32)) for k in range(5)] == [
        start + k * 6000 for k in range(5)
    ]
    u = Unwrapper(10)
    assert (u(8), u(9), u(1), u(0), u(2)) == (8, 9, 11, 10, 12)  # 0 arrived late
    with pytest.raises(ValueError):
        Unwrapper(1)
