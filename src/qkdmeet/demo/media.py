"""The field test's conference as processes: server, participants, documents.

Integration point with :mod:`qkdmeet.conference`: the demo runs
``qkdmeet conference serve --config FILE`` in site A's LAN and two
``qkdmeet conference bot`` participants (site A's local one, site B's remote
one whose media crosses the QKD-VPN), as the conference's own command line
defines them. The scenario is the field test's: cameras and audio both ways;
the hospital (site B, TUH) shares its screen with a patient-case document and
uploads it; the institute (site A, ToMMo) shares the genomic analysis report.
Each document carries a marker string, which the end-to-end test looks for
(and must not find) on the WAN capture.

Without the conference layer installed (:func:`conference_available` is
false) the demo carries the field test's measured media rates instead
(:data:`FIELD_TEST_RATES`, UDP streams of the testbed's probes), so key
consumption is still real; the report says which was used.
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qkdmeet.demo.processes import qkdmeet_argv

if TYPE_CHECKING:
    from qkdmeet.conference.config import ServerConfig

#: Payload rates of the field test per direction (bit/s): its key rates, which a
#: one-time pad spends at about one key bit per payload bit.
FIELD_TEST_RATES = {"A->B": 923e3, "B->A": 1.56e6}
PROBE_PORT = 5600
BOT_NAMES = {"a": "ToMMo-expert", "b": "TUH-expert"}


def conference_available() -> bool:
    """True when ``qkdmeet conference serve`` and ``bot`` exist in this build."""
    try:
        spec = importlib.util.find_spec("qkdmeet.conference.cli")
    except ModuleNotFoundError:
        return False
    if spec is None or spec.origin is None:
        return False
    text = Path(spec.origin).read_text(errors="replace")
    return '"serve"' in text and '"bot"' in text


def server_config(host: str, port: int, state_dir: Path) -> ServerConfig:
    """The server's configuration: no room in it; the demo creates its room over the
    admin socket (:func:`create_room`), so the invite is never written to a log."""
    from qkdmeet.conference.config import ServerConfig

    return ServerConfig(host=host, port=port, state_dir=state_dir, tls=True,
                        max_participants=16, admin_socket=admin_socket(state_dir))


def admin_socket(state_dir: Path) -> Path:
    """The conference server's admin socket (mode 0600): caps, link, rooms."""
    return state_dir / "admin.sock"


def create_room(state_dir: Path, room: str) -> dict[str, str]:
    """Create the demo's room on the running server, as its operator: the invite
    and moderator URLs (``invite_url``, ``moderator_url``)."""
    from qkdmeet.conference.admin import admin_request

    result: dict[str, str] = admin_request(admin_socket(state_dir), "POST", "/api/rooms",
                                           {"name": room})
    return result


def server_argv(config: Path) -> list[str]:
    return qkdmeet_argv("conference", "serve", "--config", str(config))


#: Camera of the headless participants: what two cores sustain beside the rest
#: of the system (QKD link, two KMEs, two gateways, the server).
BOT_VIDEO = {"width": 640, "height": 480, "fps": 15.0}


def bot_argv(url: str, room: str, name: str, seconds: float, *, screen: bool = False,
             upload: Path | None = None, video: dict[str, float] | None = None) -> list[str]:
    """A headless participant joining with the room's invite URL (``url``); the
    server's certificate is self-signed (``--insecure``)."""
    v = video or BOT_VIDEO
    argv = qkdmeet_argv("conference", "bot", "--url", url, "--room", room, "--name", name,
                        "--seconds", f"{seconds:g}", "--json", "--insecure",
                        "--width", str(int(v["width"])), "--height", str(int(v["height"])),
                        "--fps", f"{v['fps']:g}")
    if screen:
        argv.append("--screen")
    if upload is not None:
        argv += ["--upload", str(upload)]
    return argv


def probe_sink_argv(seconds: float) -> list[str]:
    return qkdmeet_argv_probe("udp-sink", str(PROBE_PORT), "--seconds", f"{seconds + 5:g}",
                              "--idle", "10")


def probe_load_argv(dst: str, seconds: float, bps: float) -> list[str]:
    return qkdmeet_argv_probe("udp-load", dst, str(PROBE_PORT), "--seconds", f"{seconds:g}",
                              "--size", "1200", "--mbps", f"{bps / 1e6:.4f}")


def qkdmeet_argv_probe(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "qkdmeet.testbed.probe", *args]


@dataclass(frozen=True, slots=True)
class Documents:
    patient_case: Path  # site B (TUH): screen-shared and uploaded
    genomic_report: Path  # site A (ToMMo): uploaded
    marker: str


def write_documents(directory: Path, marker: str) -> Documents:
    """The two simulated documents of the field test, each carrying ``marker``."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{8,64}", marker):
        raise ValueError("marker must be 8-64 letters, digits, '-' or '_'")
    directory.mkdir(parents=True, exist_ok=True)
    m = html.escape(marker)
    patient = directory / "patient-case.html"
    patient.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Patient case (simulated)"
        "</title></head><body><h1>Patient case 0042 (simulated)</h1>"
        "<p>67-year-old, stage IV lung adenocarcinoma; progression after first-line therapy."
        "</p><p>Question to the expert panel: targeted therapy options.</p>"
        f"<p class='marker'>{m}</p></body></html>\n"
    )
    report = directory / "genomic-report.html"
    rows = "".join(
        f"<tr><td>{g}</td><td>{v}</td><td>{t}</td></tr>"
        for g, v, t in (("EGFR", "p.L858R", "osimertinib"), ("TP53", "p.R273H", "-"),
                        ("KRAS", "wild type", "-"), ("ALK", "no fusion", "-"))
    )
    report.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Genomic analysis report "
        "(simulated)</title></head><body><h1>Genomic analysis report: case 0042 (simulated)"
        "</h1><table><tr><th>gene</th><th>variant</th><th>therapy</th></tr>"
        f"{rows}</table><p class='marker'>{m}</p></body></html>\n"
    )
    return Documents(patient, report, marker)


def last_json(text: str) -> dict[str, Any] | None:
    """The last line of ``text`` that is a JSON object (a bot's or probe's result)."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict):
                return data
    return None


def participant_summary(name: str, site: str, result: dict[str, Any] | None) -> dict[str, Any]:
    """A participant's row of the report from its bot's ``--json`` result."""
    r = result or {}
    raw_totals = r.get("totals")
    totals: dict[str, Any] = raw_totals if isinstance(raw_totals, dict) else {}

    def count(*keys: str) -> int:
        for k in keys:
            v = totals.get(k, r.get(k))
            if isinstance(v, int | float) and not isinstance(v, bool):
                return int(v)
        return 0

    return {
        "name": name,
        "site": site,
        "video_frames_received": count("video_frames_received"),
        "audio_frames_received": count("audio_frames_received"),
        "video_frames_sent": count("video_frames_sent"),
        "audio_frames_sent": count("audio_frames_sent"),
        "bitrate_bps": totals.get("bitrate_bps"),
        "latency_ms_p50": totals.get("latency_ms_p50"),
        "latency_ms_p95": totals.get("latency_ms_p95"),
        "result": r,
    }
