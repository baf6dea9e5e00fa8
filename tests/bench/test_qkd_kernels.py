from __future__ import annotations

import json

import pytest

from qkdmeet.bench import qkd_kernels as bench


def test_quick_run_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--quick", "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out)
    assert result["sifting"]["counts_per_s"] > 0
    assert [r["qber"] for r in result["error_correction"]] == list(bench.DEFAULT_QBERS)
    for row in result["error_correction"]:
        assert row["frame_errors"] == 0
        assert 1.0 < row["efficiency_f"] < 1.2
    families = {r["family"] for r in result["privacy_amplification"]}
    assert families == {"toeplitz", "multiply_add_shift"}
    assert set(result["summary"]["chain_secure_mbps_per_end"]) == families


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--repeats", "0"]) == 2
    assert bench.main(["--pa-sizes", "1e6,x"]) == 2
