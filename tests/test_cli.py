from __future__ import annotations

import pytest

from qkdmeet.cli import build_parser, main


def test_help_lists_bench() -> None:
    text = build_parser().format_help()
    assert "bench" in text


def test_no_command_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "qkdmeet" in capsys.readouterr().out
