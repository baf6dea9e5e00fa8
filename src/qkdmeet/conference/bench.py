"""Conference benchmark: server CPU per forwarded stream, largest panel, latency, bitrates.

Every figure is measured on this machine with real processes: the server
(``qkdmeet conference serve``) runs in its own process and each participant is
a ``qkdmeet conference bot`` process. Server CPU time is read from
``/proc/<pid>/stat`` over a window after every bot joined.

- *latency / bitrates*: two participants with **live** VP8 encoders (640x480
  at 15 fps and a tone; one also shares slides, 1280x720 at 5 fps), every
  received video stream decoded; frame latency from the embedded send time.
- *panel*: sizes 2, 4, 6, ... until one fails (or ``--max-panel``). Every
  participant sends a 640x480 @ 15 fps camera and a tone; bot0 also shares its
  screen. A size passes when every bot reports and every receiver gets every
  camera and the screen at >= 90 % of the sent frame rate.

What the panel figure measures: the **server's** capacity. Real participants
encode and decode on their own machines, but here all of them share the
server's 2 cores, and n live VGA encoders plus n * (n - 1) decoders would
exhaust the machine long before the server (the first version of this
benchmark failed at 8 with the server at 0.2 of a core, its bots starved).
So the panel's cameras are *pre-encoded publishers*, as in the usual SFU load
tests: each bot replays a 10 s loop of the test pattern VP8-encoded once (by
this benchmark, shared through a file) at the camera's default 800 kb/s with a
keyframe every 2 s, and its RTP sender only packetises (``--pre-encoded``);
the tone is a loop of 20 ms Opus packets at 40 kb/s; receivers count frames
from the encoded stream without decoding (``--decode-limit 0``). To the server
these streams are indistinguishable from live ones (same codecs, frame rates,
bitrates, RTP/RTCP); they cannot follow bitrate caps or answer a PLI with an
immediate keyframe (the next periodic one serves it). The screen share stays
live-encoded (one encoder, mostly static slides). The panel's bots run at
``nice 10``: they are load generators sharing the 2 cores with the server under
test (on a real panel every participant has a machine of its own), and at
equal priority every wake-up of a receiving bot preempted the server inside
its ``sendto`` (py-spy: half of the server's wall time there, perf: 14 % of
its CPU in the kernel). On a machine shared with other work at nice 0, bots
at nice 10 starve instead (measured here at a load average of 9 on 2 cores:
the server received a third of the frames its publishers produced, none of
its sockets dropping): ``--bot-nice 0`` puts them level with that work. Per
size the
JSON gives the lowest received/sent frame-rate ratio, the server's CPU (s/s
and per forwarded stream), the bots' total CPU (what is left of the machine
for the server) and the load average, which other work on a shared machine
also raises (``other_cpu_s_per_s``: everything else in the window); a failing
size is re-run once (``--retries``) before the sweep stops.
``server_one_core_panel_estimate`` extrapolates the best passing size's CPU
per forwarded stream to the panel at which the (single-threaded) server would
need a whole core: an estimate, not a measurement.

A panel size **fails, it never crashes the bench**: a bot that exits with an
error, prints no usable report or is still running ``BOT_GRACE_S`` after its
measurement should have ended is killed and recorded (``bot_failures``, and
``failure``: the first reason); an exception of the run itself (the admin
socket, a spawn) fails the size with its type and text. The summary gives the
largest passing size, the first failing one and why (``first_failure``).

Where the server's CPU goes: ``server_cpu_us_per_forwarded_packet`` is the
server's CPU time in the window over the RTP packets it sent to subscribers
(its pack-only encoders count them); ``--profile`` adds a run of one panel size
with the server under :mod:`cProfile` (CPU time, ``time.process_time``: time
spent waiting in ``epoll`` is not cost) and splits that per-packet time by
stage (the receive path, the fan-out, aiortc's sender loop, RTP serialisation,
SRTP, the socket, the event loop), from each stage's share of the profile. The
profiler's own overhead inflates the stages that make many small Python calls.

The machine is shared, so one sweep is noisy: ``--repeat K`` runs the sweep K
times (one server) and adds the medians of the headline figures (``median``).

``--json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from qkdmeet.conference.admin import AdminError, admin_request
from qkdmeet.conference.bot import BotOptions, clip_parameters
from qkdmeet.conference.media import AUDIO_RATE, AUDIO_SAMPLES, cached_clip
from qkdmeet.errors import ConferenceError

FPS = 15.0
SCREEN_FPS = 5.0
AUDIO_FPS = AUDIO_RATE / AUDIO_SAMPLES
KEYFRAME_INTERVAL_S = BotOptions().keyframe_interval_s
PASS_RATIO = 0.9
BOT_NICE = 10  # default of --bot-nice
#: Seconds a bot may run past its warm-up and measurement before it is killed
#: and its panel size failed (joining, publishing and leaving take a few seconds
#: each on a loaded machine; a bot that needs more is a failure to report).
BOT_GRACE_S = 60.0
#: Seconds the server has to print its start line.
SERVER_START_S = 60.0
#: SO_RCVBUF of the panel bots' subscription sockets: a bot that gets the CPU in
#: bursts (it shares the cores) rides them out instead of dropping packets
#: (measured: at 10 participants the bots' sockets dropped 2000-3500 datagrams
#: each with the default 208 KiB). Capped by the system's net.core.rmem_max.
BOT_SOCKET_BUFFER = 4 * 1024 * 1024
#: Longest text kept of a failing bot's standard error.
REASON_CHARS = 300
_CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(ConferenceError, RuntimeError):
    """The bench cannot go on (the server did not start)."""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime


def _qkdmeet() -> list[str]:
    return [sys.executable, "-m", "qkdmeet.cli"]


#: Runs ``qkdmeet ARGS...`` under cProfile and writes the profile to PATH on exit
#: (the server stops cleanly on SIGTERM): ``python -c PROFILED PATH ARGS...``.
_PROFILED = (
    "import cProfile, sys\n"
    "from qkdmeet.cli import main\n"
    "import time\n"
    "profile = cProfile.Profile(time.process_time)  # CPU time: waiting is not cost\n"
    "try:\n"
    "    profile.runcall(main, sys.argv[2:])\n"
    "finally:\n"
    "    profile.dump_stats(sys.argv[1])\n"
)


class _Server:
    """``qkdmeet conference serve`` in its own process (optionally under cProfile)."""

    def __init__(self, state_dir: Path, profile: Path | None = None) -> None:
        args = ["conference", "serve", "--port", "0", "--state-dir", str(state_dir)]
        if profile is None:
            cmd = [*_qkdmeet(), *args]
        else:
            cmd = [sys.executable, "-c", _PROFILED, str(profile), *args]
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._stderr = state_dir / "server.err"
            with self._stderr.open("w") as err:
                self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        except OSError as exc:
            raise BenchError(f"the conference server did not start: {exc}") from exc
        assert self.proc.stdout is not None
        try:
            line = _read_line(self.proc.stdout, SERVER_START_S)
            started = json.loads(line)
            self.url = str(started["url"])
            self.admin_socket = str(started["admin_socket"])
        except (ValueError, KeyError, TypeError, TimeoutError) as exc:
            self.stop()
            why = _last_line(_read_text(self._stderr))
            raise BenchError(
                f"the conference server did not start: {exc}" + (f" ({why})" if why else "")
            ) from exc
        self._invites: dict[str, str] = {}

    def invite(self, room: str) -> str:
        """The room's invite URL; the room is created (as the operator) on first use."""
        if room not in self._invites:
            urls = admin_request(self.admin_socket, "POST", "/api/rooms", {"name": room})
            self._invites[room] = str(urls["invite_url"])
        return self._invites[room]

    def cpu(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def packets_sent(self) -> int | None:
        """RTP packets the server has sent to subscribers so far (all rooms)."""
        try:
            rooms = admin_request(self.admin_socket, "GET", "/api/rooms", timeout=5)
            return int(rooms["server_encoders"]["packets_packed"])
        except (AdminError, ValueError, KeyError, TypeError):
            return None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _read_line(stream: IO[str], timeout: float) -> str:
    """One line from a child's pipe, or TimeoutError (a hung child cannot hang us)."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise TimeoutError(f"no output in {timeout:.0f} s")
    line = stream.readline()
    if not line:
        raise ValueError("the process ended without output")
    return line


# -- bots: each a process, each outcome a report or a reason -------------------------


@dataclass
class BotOutcome:
    """What one bot process gave: its report, or why there is none."""

    name: str
    report: dict[str, Any] | None
    failure: str | None = None  # set exactly when report is None
    note: str | None = None  # e.g. killed after its report (its shutdown hung)


def parse_report(text: str) -> tuple[dict[str, Any] | None, str]:
    """A bot's JSON report from its standard output (the last line), checked for
    the fields the summary reads; else (None, what is wrong)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None, "printed no report"
    try:
        report = json.loads(lines[-1])
    except ValueError:
        return None, f"printed no JSON report ({lines[-1][:80]!r})"
    if not isinstance(report, dict) or not isinstance(report.get("streams"), list):
        return None, "its report has no stream list"
    for stream in report["streams"]:
        if not isinstance(stream, dict):
            return None, "its report has a malformed stream"
        for key in ("track", "kind"):
            if not isinstance(stream.get(key), str):
                return None, f"a stream of its report has no {key!r}"
        for key in ("fps", "bitrate_bps", "lost"):
            value = stream.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None, f"a stream of its report has no number {key!r}"
    return report, ""


class BotProcess:
    """One ``qkdmeet conference bot`` process; output to files (no pipe can fill)."""

    def __init__(self, name: str, cmd: list[str], workdir: Path) -> None:
        self.name = name
        self.started = time.monotonic()
        workdir.mkdir(parents=True, exist_ok=True)
        self._out_path = workdir / f"{name}.out"
        self._err_path = workdir / f"{name}.err"
        with self._out_path.open("w") as out, self._err_path.open("w") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def finish(self, deadline: float) -> BotOutcome:
        """Wait for the bot until ``deadline`` (monotonic), kill it past that; its
        report or the reason it has none. Never raises for what the bot did."""
        timed_out = False
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill()
        ran = time.monotonic() - self.started
        report, problem = parse_report(_read_text(self._out_path))
        if report is not None:
            note = f"killed {ran:.0f} s after start, after its report" if timed_out else None
            if not timed_out and self.proc.returncode not in (0, None):
                note = f"exit status {self.proc.returncode} after its report"
            return BotOutcome(self.name, report, note=note)
        if timed_out:
            failure = f"{self.name} timed out: no report {ran:.0f} s after it started"
        elif self.proc.returncode != 0:
            failure = f"{self.name} failed (exit status {self.proc.returncode})"
        else:
            failure = f"{self.name} {problem}"
        err = _last_line(_read_text(self._err_path))
        if err:
            failure += f": {err}"
        return BotOutcome(self.name, None, failure=failure[:REASON_CHARS])


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _finish_all(bots: Iterable[BotProcess], deadline: float) -> list[BotOutcome]:
    return [bot.finish(deadline) for bot in bots]


# -- the server's view -------------------------------------------------------------


def _room_state(server: Any, room: str) -> dict[str, Any] | None:
    """The server's view of a room (participants, subscriptions, forwarder counters),
    from its admin socket."""
    try:
        state: dict[str, Any] = admin_request(
            server.admin_socket, "GET", f"/api/rooms/{room}", timeout=5
        )
        return state
    except (AdminError, ValueError):
        return None


def _all_subscribed(state: dict[str, Any] | None, n: int) -> bool:
    """Every participant is in and subscribed to every other camera and the screen."""
    if state is None or len(state["participants"]) < n:
        return False
    # bot0 shares its screen: the others hold n subscriptions, bot0 holds n - 1
    subscriptions = sum(int(p["subscriptions"]) for p in state["participants"])
    return subscriptions >= n * (n - 1) + (n - 1)


def _forwarder_totals(state: dict[str, Any] | None) -> dict[str, int]:
    totals = {"dropped": 0, "keyframe_requests": 0, "keyframes_in": 0}
    for stream in (state or {}).get("streams", []):
        for track in stream["tracks"].values():
            for key in totals:
                totals[key] += int(track.get(key, 0))
    return totals


def _machine_busy_seconds() -> float:
    """CPU seconds spent on all cores, not idle (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(values) - values[3] - values[4]) / _CLK_TCK


def _pids_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += _cpu_seconds(pid)
    return total


# -- one panel size ------------------------------------------------------------------


def _panel_bot_command(server: Any, room: str, i: int, seconds: float, warmup: float,
                       clip: Path, nice: int = BOT_NICE) -> list[str]:
    cmd = [
        *_qkdmeet(), "conference", "bot",
        "--url", server.invite(room), "--room", room, "--name", f"bot{i}",
        "--seconds", str(seconds), "--warmup", str(warmup),
        "--fps", str(FPS), "--screen-fps", str(SCREEN_FPS),
        "--pre-encoded", "--clip", str(clip), "--decode-limit", "0",
        "--socket-buffer", str(BOT_SOCKET_BUFFER), "--insecure", "--json",
    ]
    if i == 0:
        cmd.append("--screen")
    # load generators below the server under test: on a real panel every
    # participant has a machine of its own
    return ["nice", "-n", str(nice), *cmd]


BotCommand = Callable[[int, float], list[str]]  # (bot index, warm-up s) -> argv


def _run_panel(
    server: Any,
    room: str,
    n: int,
    seconds: float,
    clip: Path | None,
    workdir: Path,
    *,
    warmup: float | None = None,
    grace_s: float = BOT_GRACE_S,
    bot_command: BotCommand | None = None,
    nice: int = BOT_NICE,
) -> dict[str, Any]:
    """n pre-encoded participants (bot0 also shares its screen), nothing decoded.

    Every bot is waited for until ``grace_s`` past its warm-up and measurement,
    and killed past that; whatever happens, no bot outlives this call.
    """
    warmup = 5.0 + 0.5 * n if warmup is None else warmup  # n * (n - 1) subscriptions
    if bot_command is None:
        assert clip is not None

        def bot_command(i: int, warm: float) -> list[str]:
            return _panel_bot_command(server, room, i, seconds, warm, clip, nice)

    bots: list[BotProcess] = []
    t_spawn = time.monotonic()
    load_before = os.getloadavg()[0]
    try:
        for i in range(n):
            bots.append(BotProcess(f"bot{i}", bot_command(i, warmup), workdir / room))
        pids = [b.pid for b in bots]
        # The CPU window: from all subscriptions up (plus a settling second) until
        # shortly before the first bot can end its measurement.
        end = t_spawn + warmup + seconds - 1.0
        deadline = t_spawn + warmup + seconds / 2
        joined = False
        while time.monotonic() < deadline:
            if _all_subscribed(_room_state(server, room), n):
                joined = True
                break
            if all(b.proc.poll() is not None for b in bots):
                break  # every bot is gone already: nothing to wait for
            time.sleep(0.25)
        join_s = time.monotonic() - t_spawn
        # A new subscriber's frames are dropped until the publisher's next keyframe
        # (every 2 s): settled once the server's drop counter stands still that long.
        settle = KEYFRAME_INTERVAL_S + 0.5
        fwd0 = _forwarder_totals(_room_state(server, room))
        while time.monotonic() + settle < end - 4.0:
            time.sleep(settle)
            fwd = _forwarder_totals(_room_state(server, room))
            if fwd["dropped"] == fwd0["dropped"]:
                break
            fwd0 = fwd
        settled_s = time.monotonic() - t_spawn
        busy0, packets0 = _machine_busy_seconds(), server.packets_sent()
        cpu0, bots0, t0 = server.cpu(), _pids_cpu(pids), time.monotonic()
        time.sleep(max(1.0, end - t0))
        cpu1, bots1, t1 = server.cpu(), _pids_cpu(pids), time.monotonic()
        busy1, packets1 = _machine_busy_seconds(), server.packets_sent()
        state = _room_state(server, room)
        fwd1 = _forwarder_totals(state)
        outcomes = _finish_all(bots, t_spawn + warmup + seconds + grace_s)
    finally:
        for bot in bots:
            bot.kill()
    result = _summarise(n, outcomes, cpu1 - cpu0, t1 - t0)
    packets = packets1 - packets0 if packets0 is not None and packets1 is not None else None
    result.update(
        {
            "all_subscribed_after_s": round(join_s, 1) if joined else None,
            "settled_after_s": round(settled_s, 1),
            "cpu_window_s": round(t1 - t0, 1),
            "forwarded_packets_per_s": round(packets / (t1 - t0)) if packets else None,
            "server_cpu_us_per_forwarded_packet": (
                round(1e6 * (cpu1 - cpu0) / packets, 1) if packets else None
            ),
            "bots_cpu_s_per_s": round((bots1 - bots0) / (t1 - t0), 3),
            # everything else on the (shared) machine in the same window
            "other_cpu_s_per_s": round(
                max(0.0, (busy1 - busy0) - (cpu1 - cpu0) - (bots1 - bots0)) / (t1 - t0), 3
            ),
            "server_forwarder": fwd1,
            # frames the server dropped in the window (slow subscriber -> skip to keyframe)
            "server_dropped_in_window": fwd1["dropped"] - fwd0["dropped"],
            "load_avg_1min_before": round(load_before, 2),
            "load_avg_1min_after": round(os.getloadavg()[0], 2),
        }
    )
    if not joined and result["ok"]:  # a size is measured with everyone in
        result["ok"] = False
        result["failure"] = f"not all {n} participants subscribed within {join_s:.0f} s"
    return result


def _summarise(
    n: int, outcomes: list[BotOutcome] | list[dict[str, Any]], cpu: float, wall: float
) -> dict[str, Any]:
    """One panel size's figures from its bots' outcomes (reports, or failures)."""
    results = [o if isinstance(o, BotOutcome) else BotOutcome(str(o.get("name")), o)
               for o in outcomes]
    reports = [o.report for o in results if o.report is not None]
    failures = [o.failure for o in results if o.failure is not None]
    ratios: dict[str, list[float]] = {"camera": [], "screen": [], "audio": []}
    rates: dict[str, list[float]] = {"camera": [], "screen": [], "audio": []}
    missing = 0
    lost = 0
    worst: tuple[float, str] | None = None
    short: list[str] = []
    for rep in reports:
        video = [s for s in rep["streams"] if s["track"] == "video"]
        expected = n - 1 + (0 if rep.get("name") == "bot0" else 1)
        if len(video) < expected:
            missing += expected - len(video)
            short.append(f"{rep.get('name')} received {len(video)} of {expected} video streams")
        for s in rep["streams"]:
            kind = "audio" if s["track"] == "audio" else s["kind"]
            sent = {"camera": FPS, "screen": SCREEN_FPS, "audio": AUDIO_FPS}.get(kind)
            if sent is None:
                continue
            ratio = s["fps"] / sent
            ratios[kind].append(ratio)
            rates[kind].append(s["bitrate_bps"])
            if s["track"] == "video":
                lost += s["lost"]
                if worst is None or ratio < worst[0]:
                    worst = (ratio, f"{rep.get('name')} received {kind} of "
                                    f"{s.get('name', s.get('from', '?'))}")
    missing += n - len(reports)
    video_legs = n * (n - 1) + (n - 1)
    audio_legs = n * (n - 1)
    video_ratios = ratios["camera"] + ratios["screen"]
    min_ratio = min(video_ratios) if video_ratios else 0.0
    ok = not failures and missing == 0 and min_ratio >= PASS_RATIO
    reason = None
    if failures:
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        reason = failures[0] + more
    elif short:
        reason = short[0]
    elif not ok:
        what = worst[1] if worst is not None else "no video stream"
        reason = f"{what} at {min_ratio:.2f} of the sent frame rate (< {PASS_RATIO})"
    out: dict[str, Any] = {
        "participants": n,
        "ok": ok,
        "failure": reason,
        "bots_reporting": len(reports),
        "bot_failures": failures,
        "bot_notes": [f"{o.name}: {o.note}" for o in results if o.note],
        "streams_missing": missing,
        "min_fps_ratio": round(min_ratio, 3),
        "min_fps_ratio_by_kind": {k: round(min(v), 3) for k, v in ratios.items() if v},
        "mean_received_bps_by_kind": {k: round(sum(v) / len(v)) for k, v in rates.items() if v},
        "video_frames_lost": lost,
        "forwarded_video_streams": video_legs,
        "forwarded_audio_streams": audio_legs,
        "server_cpu_s_per_s": round(cpu / wall, 3) if wall > 0 else None,
        "server_cpu_s_per_forwarded_stream_s": (
            round(cpu / wall / (video_legs + audio_legs), 5) if wall > 0 else None
        ),
        "server_cpu_s_per_forwarded_video_stream_s": (
            round(cpu / wall / video_legs, 5) if wall > 0 else None
        ),
    }
    return out


def _failed_size(n: int, exc: BaseException) -> dict[str, Any]:
    """A panel size whose run raised: failed, with the exception as the reason."""
    text = str(exc).strip() or repr(exc)
    return {"participants": n, "ok": False,
            "failure": f"{type(exc).__name__}: {text}"[:REASON_CHARS]}


def _sweep(
    run_size: Callable[[int, int], dict[str, Any]], sizes: Iterable[int], retries: int
) -> list[dict[str, Any]]:
    """Panel sizes in order until one fails (each failure confirmed ``retries``
    times); ``run_size(n, attempt)`` may fail in any way: the size is then failed
    with the reason, and the sweep never raises (but for KeyboardInterrupt)."""
    panels: list[dict[str, Any]] = []
    for n in sizes:
        result: dict[str, Any] = {}
        failed: list[dict[str, Any]] = []
        for attempt in range(retries + 1):  # the machine is shared: confirm a failure
            try:
                result = run_size(n, attempt)
            except Exception as exc:  # a failure of this size, not of the bench
                result = _failed_size(n, exc)
            if result.get("ok"):
                break
            failed.append(result)
        earlier = failed if result.get("ok") else failed[:-1]
        if earlier:
            result["earlier_failed_attempts"] = earlier
        panels.append(result)
        if not result.get("ok"):
            break
    return panels


def _panel_summary(panels: list[dict[str, Any]]) -> dict[str, Any]:
    passed = [p for p in panels if p.get("ok")]
    best = passed[-1] if passed else None
    failing = panels[-1] if panels and not panels[-1].get("ok") else None
    per_stream = best.get("server_cpu_s_per_forwarded_stream_s") if best else None
    return {
        "largest_panel": best["participants"] if best else 0,
        "largest_panel_capped": bool(panels) and failing is None,
        "first_failing_panel": failing["participants"] if failing else None,
        "first_failure": failing.get("failure") if failing else None,
        "server_cpu_s_per_forwarded_stream_s": per_stream,
        "server_cpu_us_per_forwarded_packet": (
            best.get("server_cpu_us_per_forwarded_packet") if best else None
        ),
        # The server is one asyncio thread: at the best passing size's cost per
        # forwarded stream, the panel at which it would need a whole core.
        "server_one_core_panel_estimate": _one_core_panel(per_stream) if per_stream else None,
    }


# -- latency with live encoders ------------------------------------------------------


def _latency_run(server: _Server, seconds: float, workdir: Path) -> dict[str, Any]:
    bots = []
    t_spawn = time.monotonic()
    try:
        for i in range(2):
            cmd = [
                *_qkdmeet(), "conference", "bot",
                "--url", server.invite("latency"), "--room", "latency", "--name", f"lat{i}",
                "--seconds", str(seconds), "--warmup", "2", "--insecure", "--json",
            ]
            if i == 0:
                cmd.append("--screen")
            bots.append(BotProcess(f"lat{i}", cmd, workdir / "latency"))
        outcomes = _finish_all(bots, t_spawn + 2 + seconds + BOT_GRACE_S)
    finally:
        for bot in bots:
            bot.kill()
    failures = [o.failure for o in outcomes if o.failure]
    if failures:
        return {"latency_failure": "; ".join(str(f) for f in failures)}
    reports = [o.report for o in outcomes if o.report is not None]
    lat: list[float] = []
    rates: dict[str, list[float]] = {"camera_video": [], "camera_audio": [], "screen_video": []}
    for rep in reports:
        for s in rep["streams"]:
            rates.setdefault(f"{s['kind']}_{s['track']}", []).append(s["bitrate_bps"])
        totals = rep.get("totals", {})
        lat += [totals.get("latency_ms_p50", -1), totals.get("latency_ms_p95", -1)]
    direction = {rep.get("name"): rep.get("totals", {}).get("bitrate_bps") for rep in reports}
    return {
        "latency_ms_p50": max(lat[0::2]),
        "latency_ms_p95": max(lat[1::2]),
        "bitrates_bps_at_defaults": {k: round(sum(v) / len(v)) for k, v in rates.items() if v},
        "received_bps_per_direction": direction,
    }


def _one_core_panel(cpu_per_stream: float) -> int | None:
    """Largest n whose n*(n-1) audio + n*(n-1)+(n-1) video legs fit one core at this cost."""
    if cpu_per_stream <= 0:
        return None
    n = 2
    while cpu_per_stream * (2 * (n + 1) * n + n) <= 1.0:
        n += 1
    return n


# -- where the server's CPU goes -------------------------------------------------------

#: Profile stages: the first whose (file, function) test matches a function takes
#: its own time; a built-in function that matches none (``len``, ``struct.pack``)
#: counts for its callers' stages. Order matters (specific before general).
STAGES: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("srtp (libsrtp protect/unprotect)", lambda f, fn: "pylibsrtp" in f or "srtp" in fn),
    ("socket send/receive (kernel, UDP)",
     lambda f, fn: f == "~" and ("sendto" in fn or "recvfrom" in fn)),
    ("abs-send-time clock, per packet (aiortc.clock)", lambda f, fn: f.endswith("clock.py")),
    ("rtp/rtcp parse and serialise (aiortc.rtp)", lambda f, fn: f.endswith("aiortc/rtp.py")),
    ("server sender loop, per receiver (aiortc.rtcrtpsender)",
     lambda f, fn: f.endswith("rtcrtpsender.py")),
    ("vp8 packetisation, per receiver (aiortc.codecs.vpx)", lambda f, fn: "codecs/vpx" in f),
    ("fan-out and pack-only encoder (qkdmeet forwarding)",
     lambda f, fn: "conference/forwarding.py" in f),
    ("active speaker (qkdmeet speaker)", lambda f, fn: "conference/speaker.py" in f),
    ("receive path: jitter buffer, receiver, RTCP (aiortc)",
     lambda f, fn: f.endswith(("rtcrtpreceiver.py", "jitterbuffer.py", "rate.py", "stats.py"))),
    ("transports: DTLS, ICE, SCTP (aiortc, aioice)",
     lambda f, fn: f.endswith(("rtcdtlstransport.py", "rtcicetransport.py",
                               "rtcsctptransport.py")) or "aioice" in f),
    ("media queues and packets (av, asyncio.queues)",
     lambda f, fn: "asyncio/queues.py" in f or "/av/" in f or "av." in fn),
    ("event loop and tasks (asyncio)",
     lambda f, fn: "asyncio" in f or "selectors" in f or "epoll" in fn),
    ("signalling, HTTP, JSON (aiohttp, qkdmeet)",
     lambda f, fn: "aiohttp" in f or "qkdmeet" in f or "json" in f),
)


def profile_stages(path: Path, packets: int, us_per_packet: float | None) -> dict[str, Any]:
    """The server's profile split into stages: each stage's share of the profiled
    time, and that share of the (unprofiled) measured CPU per forwarded packet."""
    stats: Any = pstats.Stats(str(path))

    def stage_of(file: str, func: str) -> str | None:
        found = next((name for name, test in STAGES if test(file, func)), None)
        return found if found is not None or file == "~" else "other"

    own: dict[str, float] = {}
    functions: list[tuple[float, str, str]] = []
    total = 0.0
    for (file, line, func), (_cc, _nc, tottime, _ct, callers) in stats.stats.items():
        total += tottime
        stage = stage_of(file, func)
        if stage is None:  # a built-in: its time goes to its callers' stages
            stage = "its callers' stages"
            spent = sum(c[2] for c in callers.values())
            for (cfile, _cline, cfunc), c in callers.items():
                if spent > 0 and c[2] > 0:
                    caller = stage_of(cfile, cfunc) or "other (built-ins)"
                    own[caller] = own.get(caller, 0.0) + tottime * c[2] / spent
            if spent <= 0:
                own["other (built-ins)"] = own.get("other (built-ins)", 0.0) + tottime
        else:
            own[stage] = own.get(stage, 0.0) + tottime
        where = "/".join(Path(file).parts[-2:]) if file != "~" else "builtin"
        functions.append((tottime, f"{where}:{line}({func})", stage))
    if total <= 0:
        return {"error": "empty profile"}
    functions.sort(reverse=True)
    return {
        "profiled_cpu_s": round(total, 2),
        "forwarded_packets": packets,
        "profiled_us_per_forwarded_packet": round(1e6 * total / packets, 1) if packets else None,
        "stages": {
            name: {
                "share": round(t / total, 3),
                "us_per_forwarded_packet": (
                    round(us_per_packet * t / total, 2) if us_per_packet else None
                ),
            }
            for name, t in sorted(own.items(), key=lambda kv: -kv[1])
            if t / total >= 0.0005  # what rounds to a share of 0 is left out
        },
        "top_functions": [
            {"function": name, "stage": stage, "share": round(t / total, 3)}
            for t, name, stage in functions[:20]
        ],
        "top_other_functions": [
            {"function": name, "share": round(t / total, 3)}
            for t, name, stage in functions if stage == "other"
        ][:10],
    }


def _profile_run(n: int, seconds: float, clip: Path, tmp: Path,
                 us_per_packet: float | None, nice: int = BOT_NICE) -> dict[str, Any]:
    """One panel of ``n`` with the server under cProfile; its stages."""
    profile = tmp / "server.prof"
    server = _Server(tmp / "server-profiled", profile=profile)
    try:
        packets0 = server.packets_sent() or 0
        panel = _run_panel(server, f"profile{n}", n, seconds, clip, tmp / "bots", nice=nice)
        packets = (server.packets_sent() or 0) - packets0
    finally:
        server.stop()
    out = profile_stages(profile, packets, us_per_packet)
    out["panel"] = n
    out["panel_ok_under_profiler"] = panel["ok"]
    return out


# -- main ------------------------------------------------------------------------------


def _median(values: Iterable[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None and not math.isnan(v))
    if not known:
        return None
    mid = len(known) // 2
    return known[mid] if len(known) % 2 else (known[mid - 1] + known[mid]) / 2


#: The headline figures of a sweep whose medians ``--repeat`` reports.
MEDIAN_OF = ("largest_panel", "server_cpu_s_per_forwarded_stream_s",
             "server_cpu_us_per_forwarded_packet", "server_one_core_panel_estimate")


def _medians(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"sweeps": len(summaries)}
    for key in MEDIAN_OF:
        out[key] = _median(s.get(key) for s in summaries)
    out["first_failures"] = [s.get("first_failure") for s in summaries]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="qkdmeet bench conference")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="short runs, panel up to 4")
    parser.add_argument("--min-panel", type=int, default=2)
    parser.add_argument("--max-panel", type=int, default=16)
    parser.add_argument("--step", type=int, default=2, help="panel sizes min, min+step, ...")
    parser.add_argument(
        "--retries", type=int, default=1, help="re-runs of a failing panel size before stopping"
    )
    parser.add_argument("--seconds", type=float, help="measured seconds per run")
    parser.add_argument("--no-latency", action="store_true", help="skip the live-encoder run")
    parser.add_argument("--repeat", type=int, default=1, help="sweeps to take medians over")
    parser.add_argument(
        "--bot-nice", type=int, default=BOT_NICE,
        help="niceness of the panel's bots (below the server: load generators)",
    )
    parser.add_argument(
        "--profile", type=int, metavar="N", nargs="?", const=0,
        help="also profile the server in a panel of N (default: the largest passing)",
    )
    args = parser.parse_args(argv)
    seconds = args.seconds or (6.0 if args.quick else 12.0)
    max_panel = min(args.max_panel, 4) if args.quick else args.max_panel
    load_before = os.getloadavg()
    out: dict[str, Any] = {"quick": args.quick, "cpu_count": os.cpu_count()}
    try:
        out.update(_bench(args, seconds, max_panel))
        status = 0
    except BenchError as exc:
        out["error"] = str(exc)
        status = 1
    except Exception as exc:  # the bench ends with its JSON, never a traceback
        out["error"] = f"{type(exc).__name__}: {exc}"
        status = 1
    out["load_avg_before"] = [round(x, 2) for x in load_before]
    out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return status


def _bench(args: argparse.Namespace, seconds: float, max_panel: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # the panel's camera clip, encoded once here and loaded by every bot
        options = BotOptions(width=640, height=480, fps=FPS, pre_encoded=True)
        clip_path = tmp / "camera-clip.vp8"
        clip = cached_clip(clip_path, **clip_parameters(options))
        server = _Server(tmp / "server")
        try:
            latency: dict[str, Any] = {}
            if not args.no_latency:
                try:
                    latency = _latency_run(server, seconds, tmp / "bots")
                except Exception as exc:  # reported, the panels still run
                    latency = {"latency_failure": _failed_size(2, exc)["failure"]}

            sweeps: list[list[dict[str, Any]]] = []
            for sweep in range(max(1, args.repeat)):

                def run_size(n: int, attempt: int, sweep: int = sweep) -> dict[str, Any]:
                    room = f"panel{n}" + (f"r{attempt}" if attempt else "") + (
                        f"s{sweep}" if sweep else "")
                    return _run_panel(server, room, n, seconds, clip_path, tmp / "bots",
                                      nice=args.bot_nice)

                sizes = range(max(2, args.min_panel), max_panel + 1, max(1, args.step))
                sweeps.append(_sweep(run_size, sizes, args.retries))
        finally:
            server.stop()
        panels = sweeps[0]
        summaries = [_panel_summary(p) for p in sweeps]
        summary = summaries[0]
        profile: dict[str, Any] | None = None
        if args.profile is not None:
            n = args.profile or summary["largest_panel"] or 4
            try:
                measured = summary["server_cpu_us_per_forwarded_packet"] or (
                    panels[-1].get("server_cpu_us_per_forwarded_packet") if panels else None)
                profile = _profile_run(n, seconds, clip_path, tmp, measured, args.bot_nice)
            except Exception as exc:
                profile = {"error": _failed_size(n, exc)["failure"]}
    return {
        "camera": "640x480 @ 15 fps VP8 + Opus; one screen share 1280x720 @ 5 fps",
        **latency,
        "latency_senders": "live VP8 encoders (2 participants)",
        "senders": "pre-encoded VP8 replay",
        "panel_bots_nice": args.bot_nice,
        "panel_measures": (
            "server capacity: cameras (and audio) replay VP8 (Opus) packets encoded once, "
            "so no encoder CPU on this machine; receivers count encoded frames without "
            "decoding; the one screen share is live-encoded"
        ),
        "clip": {
            "frames": len(clip.frames),
            "keyframe_every_frames": clip.keyframe_interval,
            "target_bps": clip.bitrate,
            "bps": round(clip.bitrate_bps()),
        },
        **summary,
        "panels": panels,
        **({"repeats": [{**sm, "panels": p} for sm, p in zip(summaries[1:], sweeps[1:],
                                                             strict=True)],
            "median": _medians(summaries)} if len(sweeps) > 1 else {}),
        **({"server_cpu_profile": profile} if profile is not None else {}),
        "receivers_decode": "panel: none (frames counted from RTP); latency run: all",
    }


if __name__ == "__main__":
    raise SystemExit(main())
