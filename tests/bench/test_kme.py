"""The benchmark end to end, short: its kill -9 restart phase must lose and duplicate nothing."""

from __future__ import annotations

import json

import pytest

from qkdmeet.bench.kme import main


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bench_kill9_restart(capsys: pytest.CaptureFixture[str]) -> None:
    # 2 s of delivery: the kill comes after 0.7 s, so requests complete before it
    # even on a loaded machine (0.5 s left none at times)
    argv = ["--json", "--runs", "1", "--seconds", "2", "--latency-count", "20"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["restart"]["keys_delivered"] > 0
    assert out["restart"]["keys_lost"] == 0
    assert out["restart"]["keys_delivered_twice"] == 0
    assert out["throughput_1024"]["keys_per_request"] == 128
    assert out["throughput_8192"]["mbit_per_s"] > 0
    assert out["latency"]["p99_ms"] >= out["latency"]["p50_ms"] > 0
