import math

import pytest

from qkdmeet.conference.stats import StreamStats


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
