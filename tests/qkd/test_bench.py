"""``qkdmeet bench qkd --quick --json``: one JSON object with every section."""

from __future__ import annotations

import json

import pytest

from qkdmeet.qkd.bench import main


def test_bench_quick_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"kernels", "model", "end_to_end", "summary"}
    e2e = out["end_to_end"]
    assert e2e["keys_identical"] is True and e2e["blocks"] >= 1
    assert 0 < e2e["ceiling_fraction"] < 1
    assert e2e["limits"]["busiest_actor"] in e2e["limits"]["load_per_actor"]
    assert out["summary"]["model_toshiba_2db_bps"] > 5e6
