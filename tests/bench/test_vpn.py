import json

import pytest

from qkdmeet.bench.vpn import main


def test_bench_json_without_testbed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "--no-testbed", "--runs", "1", "--packets", "640"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data_path"]["1200"]["encrypt_pps"] > 0
    eff = out["key_efficiency"]
    assert eff["measured_payload_per_key_byte"] <= eff["limit_otp_plus_tag"]
    assert eff["key"]["key_pad_bytes"] == eff["key"]["payload_bytes"]
    assert out["testbed"] is None
