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
            "--room",
            "tumour-board",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = json.loads(proc.stdout.readline())
        url = line["url"]
        ctx = ssl.create_default_context(cafile=str(tmp_path / "conference-cert.pem"))
        with urllib.request.urlopen(url + "/healthz", context=ctx, timeout=20) as resp:
            assert json.load(resp)["status"] == "ok"
        # the start-up line carries the rooms' invite and moderator links
        [room] = line["rooms"]
        assert room["room"] == "tumour-board"
        assert room["invite_url"].startswith(f"{url}/?room=tumour-board#invite=")
        assert "#moderator=" in room["moderator_url"]
        # the operator creates another room over the admin socket
        cli = [sys.executable, "-m", "qkdmeet.cli", "conference", "room"]
        made = subprocess.run([*cli, "create", "icu", "--state-dir", str(tmp_path),
                               "--expires-in", "3600"],
                              capture_output=True, text=True, timeout=60, check=True)
        urls = json.loads(made.stdout)
        assert urls["room"] == "icu" and "#invite=" in urls["invite_url"]
        listed = subprocess.run([*cli, "list", "--admin-socket", line["admin_socket"]],
                                capture_output=True, text=True, timeout=60, check=True)
        rooms = {r["room"]: r for r in json.loads(listed.stdout)["rooms"]}
        assert set(rooms) == {"tumour-board", "icu"} and rooms["icu"]["expires_at"]
        assert urls["invite_url"].split("#invite=")[1] not in listed.stdout
        again = subprocess.run([*cli, "create", "icu", "--state-dir", str(tmp_path)],
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 2 and "exists" in again.stderr
        closed = subprocess.run([*cli, "close", "icu", "--state-dir", str(tmp_path)],
                                capture_output=True, text=True, timeout=60, check=True)
        assert json.loads(closed.stdout)["closed"] is True
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
