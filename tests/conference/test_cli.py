import json
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from qkdmeet.cli import build_parser


def test_commands_are_registered() -> None:
    args = build_parser().parse_args(
        ["conference", "bot", "--url", "https://h:1", "--room", "r", "--name", "n", "--screen"]
    )
    assert args.screen and args.seconds == 10.0
    args = build_parser().parse_args(["conference", "serve", "--port", "0"])
    assert args.port == 0


def test_serve_process_answers_over_https(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qkdmeet.cli",
            "conference",
            "serve",
            "--port",
            "0",
            "--state-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["url"]
        ctx = ssl.create_default_context(cafile=str(tmp_path / "conference-cert.pem"))
        with urllib.request.urlopen(url + "/healthz", context=ctx, timeout=20) as resp:
            assert json.load(resp)["status"] == "ok"
    finally:
        proc.terminate()
        assert proc.wait(20) == 0


def test_serve_with_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "c.toml"
    bad.write_text("port = 'x'")
    proc = subprocess.run(
        [sys.executable, "-m", "qkdmeet.cli", "conference", "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "port" in proc.stderr
