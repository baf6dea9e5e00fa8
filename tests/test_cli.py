from __future__ import annotations

import socket
from pathlib import Path

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


def test_an_error_of_qkdmeet_is_one_line_and_status_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from qkdmeet import cli
    from qkdmeet.errors import KmeError

    def fails(args: object) -> int:
        raise KmeError("the store is gone\nsecond line", hint="restart the KME")

    parser = cli.build_parser()
    real = parser.parse_args

    def parse(argv: list[str] | None = None) -> object:
        args = real(argv)
        args.func = fails
        return args

    monkeypatch.setattr(parser, "parse_args", parse)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert main(["kme", "audit", "--log", "x"]) == 2
    err = capsys.readouterr().err
    assert err == "qkdmeet kme audit: the store is gone; second line; restart the KME\n"


def test_a_missing_kme_config_says_what_to_give(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kme", "serve", "--config", str(tmp_path / "kme.toml")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith(f"qkdmeet kme serve: {tmp_path / 'kme.toml'}: No such file")
    assert "give the path of a KME config file" in err


def test_a_bad_field_names_the_file_the_field_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "kme.toml"
    cfg.write_text('kme_id = "KME-A"\nport = "8443"\n')
    assert main(["kme", "audit", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert err.startswith(f"qkdmeet kme audit: {cfg}: missing field 'peer'")
    assert "qkdmeet kme pair --dir DIR" in err


def test_a_bad_kme_url_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["kme", "status", "--url", "127.0.0.1:8443", "--slave", "SAE-B",
            "--cert", "c.pem", "--key", "k.pem", "--ca", "ca.pem"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("qkdmeet kme status: KME URL '127.0.0.1:8443' is not https://HOST:PORT")
    assert "e.g. https://127.0.0.1:8443" in err and len(err.splitlines()) == 1


def test_an_unreachable_kme_says_what_to_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from qkdmeet.kme import pki

    d = pki.init(tmp_path / "pki")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = ["kme", "status", "--url", f"https://127.0.0.1:{port}", "--slave", "SAE-B",
            "--cert", str(d / "sae-a.pem"), "--key", str(d / "sae-a.key"),
            "--ca", str(d / "ca.pem")]  # fmt: skip
    assert main(argv) == 1  # the status command's own answer to a KME error
    err = capsys.readouterr().err
    assert f"the KME at https://127.0.0.1:{port} is not reachable" in err
    assert "check that it runs and listens there" in err


def test_missing_tls_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["kme", "status", "--url", "https://127.0.0.1:1", "--slave", "SAE-B",
            "--cert", str(tmp_path / "c.pem"), "--key", str(tmp_path / "k.pem"),
            "--ca", str(tmp_path / "ca.pem")]  # fmt: skip
    assert main(argv) == 1  # still an OSError, as before: the status command's answer
    err = capsys.readouterr().err
    assert f"cannot read the CA certificate {tmp_path / 'ca.pem'}" in err
    assert "qkdmeet pki init DIR" in err
