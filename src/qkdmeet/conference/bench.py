"""Conference benchmark: server CPU per forwarded stream, largest panel, latency, bitrates.

Every figure is measured on this machine with real processes: the server
(``qkdmeet conference serve``) runs in its own process and each participant is
a ``qkdmeet conference bot`` process sending a 640x480 camera at 15 fps and a
tone; one of them also shares slides. Server CPU time is read from
``/proc/<pid>/stat`` over a window after every bot joined.

- *latency / bitrates*: two participants (one sharing its screen), every
  received video stream decoded; frame latency from the embedded send time.
- *panel*: sizes 2, 4, 6, ... until one fails: a size passes when every
  receiver gets every camera and the screen at >= 90 % of the sent frame rate.
  Bots decode one video stream each (for latency) and count the others from
  their encoded frames: decoding N-1 VGA streams in each of N bot processes
  would exhaust the machine's cores long before the server, which is what is
  measured here.

``--json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FPS = 15.0
SCREEN_FPS = 5.0
PASS_RATIO = 0.9
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime


def _qkdmeet() -> list[str]:
    return [sys.executable, "-m", "qkdmeet.cli"]


class _Server:
    def __init__(self, state_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [*_qkdmeet(), "conference", "serve", "--port", "0", "--state-dir", str(state_dir)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("conference server did not start")
        self.url = str(json.loads(line)["url"])

    def cpu(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _run_panel(
    server: _Server, room: str, n: int, seconds: float, warmup: float, decode_limit: int | None
) -> dict[str, Any]:
    bots = []
    for i in range(n):
        cmd = [
            *_qkdmeet(),
            "conference",
            "bot",
            "--url",
            server.url,
            "--room",
            room,
            "--name",
            f"bot{i}",
            "--seconds",
            str(seconds),
            "--warmup",
            str(warmup),
            "--fps",
            str(FPS),
            "--screen-fps",
            str(SCREEN_FPS),
            "--insecure",
            "--json",
        ]
        if i == 0:
            cmd.append("--screen")
        if decode_limit is not None:
            cmd += ["--decode-limit", str(decode_limit)]
        bots.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    # the CPU window starts once everyone has joined and warmed up
    time.sleep(warmup + 3.0)
    cpu0, t0 = server.cpu(), time.monotonic()
    time.sleep(max(1.0, seconds - 4.0))
    cpu1, t1 = server.cpu(), time.monotonic()
    reports = []
    for proc in bots:
        out, _ = proc.communicate(timeout=seconds + warmup + 120)
        if proc.returncode == 0 and out.strip():
            reports.append(json.loads(out.strip().splitlines()[-1]))
    return _summarise(n, reports, cpu1 - cpu0, t1 - t0)


def _summarise(n: int, reports: list[dict[str, Any]], cpu: float, wall: float) -> dict[str, Any]:
    ratios: list[float] = []
    missing = 0
    lost = 0
    latencies: list[float] = []
    for rep in reports:
        video = [s for s in rep["streams"] if s["track"] == "video"]
        expected = n - 1 + (0 if rep["name"] == "bot0" else 1)
        missing += max(0, expected - len(video))
        for s in video:
            sent = SCREEN_FPS if s["kind"] == "screen" else FPS
            ratios.append(s["fps"] / sent)
            lost += s["lost"]
            if "latency_ms_p95" in s:
                latencies.append(s["latency_ms_p95"])
    missing += n - len(reports)
    video_legs = n * (n - 1) + (n - 1)
    audio_legs = n * (n - 1)
    min_ratio = min(ratios) if ratios else 0.0
    return {
        "participants": n,
        "ok": missing == 0 and min_ratio >= PASS_RATIO,
        "bots_reporting": len(reports),
        "streams_missing": missing,
        "min_fps_ratio": round(min_ratio, 3),
        "video_frames_lost": lost,
        "worst_stream_latency_ms_p95": max(latencies) if latencies else None,
        "forwarded_video_streams": video_legs,
        "forwarded_audio_streams": audio_legs,
        "server_cpu_s_per_s": round(cpu / wall, 3),
        "server_cpu_s_per_forwarded_stream_s": round(cpu / wall / (video_legs + audio_legs), 5),
        "server_cpu_s_per_forwarded_video_stream_s": round(cpu / wall / video_legs, 5),
    }


def _latency_run(server: _Server, seconds: float) -> dict[str, Any]:
    bots = []
    for i in range(2):
        cmd = [
            *_qkdmeet(),
            "conference",
            "bot",
            "--url",
            server.url,
            "--room",
            "latency",
            "--name",
            f"lat{i}",
            "--seconds",
            str(seconds),
            "--warmup",
            "2",
            "--insecure",
            "--json",
        ]
        if i == 0:
            cmd.append("--screen")
        bots.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    reports = []
    for proc in bots:
        out, _ = proc.communicate(timeout=seconds + 120)
        reports.append(json.loads(out.strip().splitlines()[-1]))
    lat: list[float] = []
    rates: dict[str, list[float]] = {"camera_video": [], "camera_audio": [], "screen_video": []}
    for rep in reports:
        for s in rep["streams"]:
            rates[f"{s['kind']}_{s['track']}"].append(s["bitrate_bps"])
        lat += [rep["totals"].get("latency_ms_p50", -1), rep["totals"].get("latency_ms_p95", -1)]
    direction = {rep["name"]: rep["totals"]["bitrate_bps"] for rep in reports}
    return {
        "latency_ms_p50": max(lat[0::2]),
        "latency_ms_p95": max(lat[1::2]),
        "bitrates_bps_at_defaults": {k: round(sum(v) / len(v)) for k, v in rates.items() if v},
        "received_bps_per_direction": direction,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qkdmeet bench conference")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="short runs, panel up to 4")
    parser.add_argument("--max-panel", type=int, default=12)
    args = parser.parse_args(argv)
    seconds = 6.0 if args.quick else 12.0
    max_panel = min(args.max_panel, 4) if args.quick else args.max_panel
    with tempfile.TemporaryDirectory() as tmp:
        server = _Server(Path(tmp))
        try:
            latency = _latency_run(server, seconds)
            panels = []
            for n in range(2, max_panel + 1, 2):
                result = _run_panel(server, f"panel{n}", n, seconds, 3.0, decode_limit=1)
                panels.append(result)
                if not result["ok"]:
                    break
        finally:
            server.stop()
    passed = [p for p in panels if p["ok"]]
    best = passed[-1] if passed else None
    out = {
        "quick": args.quick,
        "cpu_count": os.cpu_count(),
        "camera": "640x480 @ 15 fps VP8 + Opus; one screen share 1280x720 @ 5 fps",
        **latency,
        "largest_panel": best["participants"] if best else 0,
        "server_cpu_s_per_forwarded_stream_s": (
            best["server_cpu_s_per_forwarded_stream_s"] if best else None
        ),
        "panels": panels,
        "receivers_decode": "one video stream per bot; the others counted from encoded frames",
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
