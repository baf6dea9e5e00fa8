from pathlib import Path

import pytest

from qkdmeet.cli import build_parser, main


def test_gateway_and_testbed_commands_registered() -> None:
    parser = build_parser()
    args = parser.parse_args(["gateway", "run", "--config", "x.toml"])
    assert callable(args.func)
    args = parser.parse_args(["testbed", "--prefix", "qkz-", "up", "--mode", "routed"])
    assert args.mode == "routed" and args.prefix == "qkz-"
    for action in ("down", "status"):
        assert callable(parser.parse_args(["testbed", action]).func)


def test_gateway_run_bad_config_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gateway", "run", "--config", "/nonexistent/gw.toml"]) == 2
    assert "qkdmeet gateway:" in capsys.readouterr().err


def test_fill_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qkdmeet.vpn.filekeys import pooled_bytes

    root = tmp_path
    assert main(["gateway", "fill-keys", "--dir", str(root), "--a", "gw-a", "--b", "gw-b",
                 "--bytes", "4096", "--key-bytes", "1024"]) == 0
    assert pooled_bytes(root, "gw-a", "gw-b") == pooled_bytes(root, "gw-b", "gw-a") == 4096
    assert "4 keys" in capsys.readouterr().out
