"""Unit tests of the conference benchmark's bookkeeping (the runs themselves are
benchmarks), and of its failure handling: a bot that fails or hangs fails its
panel size with the reason, it never ends the bench in a traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qkdmeet.conference import bench
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


# -- failure handling: a bot that fails or hangs fails its size, never the bench -------

PY = sys.executable


class _NoServer:
    """Stands in for the server process: no admin socket, no CPU, no packets."""

    def __init__(self, tmp: Path) -> None:
        self.admin_socket = str(tmp / "absent.sock")

    def cpu(self) -> float:
        return 0.0

    def packets_sent(self) -> int | None:
        return None


def _valid_report(name: str) -> str:
    streams = [{"track": "video", "kind": "camera", "fps": 15.0, "lost": 0,
                "bitrate_bps": 800_000, "name": "other"}]
    return json.dumps({"name": name, "streams": streams, "totals": {}})


def test_a_bot_that_fails_or_hangs_fails_its_size_with_the_reason(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    programs = [
        "import sys; print('qkdmeet conference bot: refused: room is full', file=sys.stderr);"
        " sys.exit(1)",
        f"import os, time; open({str(pids)!r} + '/hang', 'w').write(str(os.getpid()));"
        " time.sleep(600)",
        "print('Traceback (most recent call last): ...')",
        f"import os, time; print({_valid_report('bot3')!r}, flush=True);"
        f" open({str(pids)!r} + '/late', 'w').write(str(os.getpid())); time.sleep(600)",
    ]
    result = bench._run_panel(
        _NoServer(tmp_path), "panel4", 4, 1.0, None, tmp_path, warmup=0.5, grace_s=1.5,
        bot_command=lambda i, warm: [PY, "-c", programs[i]],
    )
    assert result["ok"] is False and result["participants"] == 4
    failures = result["bot_failures"]
    assert failures[0] == (
        "bot0 failed (exit status 1): qkdmeet conference bot: refused: room is full"
    )
    assert failures[1].startswith("bot1 timed out: no report")
    assert failures[2].startswith("bot2 printed no JSON report")
    assert len(failures) == 3  # bot3 reported, then hung: its report counts
    assert result["failure"] == failures[0] + " (and 2 more)"
    assert result["bots_reporting"] == 1 and result["bot_notes"][0].startswith("bot3: killed")
    for name in ("hang", "late"):  # no bot outlives its panel
        pid = int((pids / name).read_text())
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_reports_are_checked_before_they_are_summed() -> None:
    assert bench.parse_report("")[1] == "printed no report"
    assert bench.parse_report("log line\n" + _valid_report("bot1"))[0] is not None
    assert "no JSON" in bench.parse_report("{oops")[1]
    assert "no stream list" in bench.parse_report('{"name": "b"}')[1]
    bad = json.dumps({"streams": [{"track": "video", "kind": "camera", "fps": "fast",
                                   "lost": 0, "bitrate_bps": 1}]})
    assert "number 'fps'" in bench.parse_report(bad)[1]
    # a failed bot fails the summary with its reason, even when the others pass
    ok = bench.BotOutcome("bot0", _report("bot0", 2))
    gone = bench.BotOutcome("bot1", None, failure="bot1 timed out: no report 80 s after start")
    out = _summarise(2, [ok, gone], cpu=1.0, wall=10.0)
    assert not out["ok"] and out["failure"] == gone.failure and out["streams_missing"] == 1


def test_the_sweep_reports_largest_passing_first_failing_and_why() -> None:
    calls: list[tuple[int, int]] = []

    def run_size(n: int, attempt: int) -> dict[str, Any]:
        calls.append((n, attempt))
        if n == 4 and attempt == 0:  # a failure the retry does not confirm
            return {"participants": n, "ok": False, "failure": "bot2 received camera at 0.5"}
        if n == 6:
            raise subprocess.TimeoutExpired(["qkdmeet", "conference", "bot"], 138)
        return {"participants": n, "ok": True, "server_cpu_s_per_forwarded_stream_s": 0.002,
                "server_cpu_us_per_forwarded_packet": 40.0}

    panels = bench._sweep(run_size, range(2, 17, 2), retries=1)
    assert calls == [(2, 0), (4, 0), (4, 1), (6, 0), (6, 1)]  # stops at the first failure
    assert [p["participants"] for p in panels] == [2, 4, 6]
    assert panels[1]["ok"] and panels[1]["earlier_failed_attempts"][0]["failure"]
    assert panels[2]["failure"].startswith("TimeoutExpired: Command '['qkdmeet'")
    assert len(panels[2]["earlier_failed_attempts"]) == 1
    summary = bench._panel_summary(panels)
    assert summary["largest_panel"] == 4 and summary["first_failing_panel"] == 6
    assert summary["first_failure"] == panels[2]["failure"]
    assert summary["server_one_core_panel_estimate"] == _one_core_panel(0.002)
    assert bench._panel_summary([])["largest_panel"] == 0


def test_the_bench_prints_json_and_no_traceback_when_the_server_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_server(*args: Any, **kwargs: Any) -> None:
        raise bench.BenchError("the conference server did not start: no output in 60 s")

    monkeypatch.setattr(bench, "cached_clip", lambda *a, **k: None)
    monkeypatch.setattr(bench, "_Server", no_server)
    assert bench.main(["--json", "--quick"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["error"].endswith("no output in 60 s") and "load_avg_after" in out


def test_repeated_sweeps_report_medians() -> None:
    sweeps = [{"largest_panel": 10, "server_cpu_us_per_forwarded_packet": 50.0,
               "first_failure": "a"},
              {"largest_panel": 14, "server_cpu_us_per_forwarded_packet": None,
               "first_failure": None},
              {"largest_panel": 12, "server_cpu_us_per_forwarded_packet": 40.0,
               "first_failure": "b"}]
    med = bench._medians(sweeps)
    assert med["sweeps"] == 3 and med["largest_panel"] == 12
    assert med["server_cpu_us_per_forwarded_packet"] == 45.0  # of the known ones
    assert med["server_one_core_panel_estimate"] is None
    assert med["first_failures"] == ["a", None, "b"]


def test_the_profile_is_split_into_stages_with_built_ins_at_their_callers(
    tmp_path: Path,
) -> None:
    import cProfile
    import time

    from qkdmeet.conference.forwarding import is_vp8_keyframe

    profile = cProfile.Profile(time.process_time)
    frame = b"\x00\x00\x00\x9d\x01\x2a" + bytes(10)
    profile.runcall(lambda: [is_vp8_keyframe(frame) for _ in range(20_000)])
    path = tmp_path / "p.prof"
    profile.dump_stats(str(path))
    out = bench.profile_stages(path, packets=20_000, us_per_packet=10.0)
    stages = out["stages"]
    assert sum(s["share"] for s in stages.values()) == pytest.approx(1.0, abs=0.01)
    fanout = stages["fan-out and pack-only encoder (qkdmeet forwarding)"]
    assert fanout["us_per_forwarded_packet"] == pytest.approx(10.0 * fanout["share"], abs=0.01)
    # len() is a built-in called by is_vp8_keyframe: its time is the fan-out stage's
    lens = [f for f in out["top_functions"] if "builtins.len" in f["function"]]
    assert lens and "other (built-ins)" not in stages
    assert out["profiled_us_per_forwarded_packet"] > 0


def test_a_server_that_cannot_start_is_a_bench_error_with_its_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    with pytest.raises(bench.BenchError) as info:
        bench._Server(blocker / "inner")
    assert "did not start" in str(info.value)


def test_an_unexpected_error_still_ends_in_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: Any) -> dict[str, Any]:
        raise KeyError("streams")

    monkeypatch.setattr(bench, "_bench", broken)
    assert bench.main(["--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"] == "KeyError: 'streams'"
