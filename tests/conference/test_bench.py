"""Unit tests of the conference benchmark's bookkeeping (the runs themselves are benchmarks)."""

from typing import Any

from qkdmeet.conference.bench import (
    _all_subscribed,
    _forwarder_totals,
    _machine_busy_seconds,
    _one_core_panel,
    _summarise,
)


def _report(name: str, n: int, fps: float = 15.0, screen_fps: float = 5.0) -> dict[str, Any]:
    streams = []
    for i in range(n):
        peer = f"bot{i}"
        if peer == name:
            continue
        streams.append(
            {"track": "video", "kind": "camera", "fps": fps, "lost": 0, "bitrate_bps": 800_000}
        )
        streams.append(
            {"track": "audio", "kind": "camera", "fps": 50.0, "lost": 0, "bitrate_bps": 40_000}
        )
    if name != "bot0":
        streams.append(
            {
                "track": "video",
                "kind": "screen",
                "fps": screen_fps,
                "lost": 0,
                "bitrate_bps": 80_000,
            }
        )
    return {"name": name, "streams": streams}


def test_summary_passes_full_rates_and_counts_legs() -> None:
    reports = [_report(f"bot{i}", 4) for i in range(4)]
    out = _summarise(4, reports, cpu=2.7, wall=10.0)
    assert out["ok"] and out["streams_missing"] == 0 and out["min_fps_ratio"] == 1.0
    assert out["forwarded_video_streams"] == 4 * 3 + 3
    assert out["forwarded_audio_streams"] == 4 * 3
    assert out["server_cpu_s_per_s"] == 0.27
    assert out["server_cpu_s_per_forwarded_stream_s"] == round(0.27 / 27, 5)
    assert out["mean_received_bps_by_kind"] == {
        "camera": 800_000,
        "screen": 80_000,
        "audio": 40_000,
    }


def test_summary_fails_slow_stream_or_missing_bot() -> None:
    slow = [
        _report("bot0", 4),
        _report("bot1", 4, fps=13.0),
        *(_report(f"bot{i}", 4) for i in (2, 3)),
    ]
    out = _summarise(4, slow, cpu=1.0, wall=10.0)
    assert not out["ok"] and out["min_fps_ratio"] == round(13 / 15, 3)
    out = _summarise(4, [_report(f"bot{i}", 4) for i in range(3)], cpu=1.0, wall=10.0)
    assert not out["ok"] and out["streams_missing"] == 1  # bot3 did not report


def test_room_state_helpers() -> None:
    state = {
        "participants": [{"subscriptions": 2}, {"subscriptions": 3}, {"subscriptions": 3}],
        "streams": [
            {
                "tracks": {
                    "video": {"dropped": 4, "keyframe_requests": 1, "keyframes_in": 2},
                    "audio": {"dropped": 1},
                }
            },
        ],
    }
    assert _all_subscribed(state, 3)  # 3 * 2 cameras + 2 screen subscriptions
    assert not _all_subscribed(state, 4) and not _all_subscribed(None, 3)
    assert _forwarder_totals(state) == {"dropped": 5, "keyframe_requests": 1, "keyframes_in": 2}
    assert _forwarder_totals(None) == {"dropped": 0, "keyframe_requests": 0, "keyframes_in": 0}


def test_one_core_estimate_and_machine_cpu() -> None:
    assert _one_core_panel(0.0) is None
    n = _one_core_panel(0.003)
    assert n is not None
    legs = 2 * n * n - n - 1
    assert 0.003 * legs <= 1.0 < 0.003 * (2 * (n + 1) ** 2 - (n + 1) - 1)
    assert _machine_busy_seconds() > 0
