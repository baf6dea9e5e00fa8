"""``qkdmeet bench qkd --quick --json``: one JSON object with every section."""

from __future__ import annotations

import json

import pytest

from qkdmeet.bench.qkd import main


def test_bench_quick_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"kernels", "model", "end_to_end", "summary"}
    e2e = out["end_to_end"]
    assert e2e["keys_identical"] is True and e2e["blocks"] >= 1
    assert 0 < e2e["ceiling_fraction"] < 1
    assert e2e["limits"]["busiest_actor"] in e2e["limits"]["load_per_actor"]
    assert out["summary"]["model_toshiba_2db_bps"] > 5e6
    assert e2e["processes"] == 2
    assert e2e["auth_masks_per_block"] <= 4  # one checkpoint each way per block (+ HELLO)
    assert e2e["ec_round_trips_per_block"] > 10
    assert e2e["model_net_key_rate_bps"] > 0 and e2e["model_fraction_reached"] > 0
    assert "bound" in e2e["limits"]["why"]
    assert any(k.startswith("alice:error_correction") for k in e2e["stage_throughput"])
