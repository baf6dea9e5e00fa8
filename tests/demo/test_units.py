"""Pure parts of the demo: planning, config files, adaptation, identity, monitor, progress."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from qkdmeet.demo import adapt, media, sites
from qkdmeet.demo.monitor import direction_sample, qkd_from_admin
from qkdmeet.demo.progress import format_line
from qkdmeet.kme.config import load as load_kme
from qkdmeet.report.identity import final_metrics_from_log, site_identity


def gw_metrics(out_key: int, out_buf: int, in_key: int, in_buf: int,
               drops: dict[str, int] | None = None) -> dict[str, Any]:
    def d(key: int, buf: int) -> dict[str, Any]:
        return {"key_bytes": key, "key_buffered_bytes": buf, "payload_bytes": key // 2,
                "packets": key // 100, "drops": dict(drops or {})}
    return {"gateway": "x", "outbound": d(out_key, out_buf), "inbound": d(in_key, in_buf)}


# --- planning ------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [1e3, 4.4e5, 1e6, 1.4e7, 1e9])
def test_key_sizing_is_a_power_of_two_within_bounds(rate: float) -> None:
    bits, prefetch = sites.key_sizing(rate)
    key = bits // 8
    assert sites.MIN_KEY_BYTES <= key <= sites.MAX_KEY_BYTES
    assert key & (key - 1) == 0
    assert prefetch >= 2 * key and prefetch % key == 0


def test_key_sizing_grows_with_the_link() -> None:
    slow, fast = sites.key_sizing(4.4e5), sites.key_sizing(1.4e7)
    assert slow[0] < fast[0] and slow[1] < fast[1]


@pytest.mark.parametrize("rate", [0.0, -1.0, math.nan, math.inf])
def test_key_sizing_rejects_bad_rates(rate: float) -> None:
    with pytest.raises(sites.PlanError):
        sites.key_sizing(rate)


def test_plan_follows_the_model_and_rejects_bad_distances() -> None:
    near, far = sites.plan(distance_km=7), sites.plan(distance_km=80)
    assert near.link_rate_bps > 10 * far.link_rate_bps > 0
    assert 0 < near.model_qber < 0.11
    for bad in (-1.0, 500.0, math.nan):
        with pytest.raises(sites.PlanError):
            sites.plan(distance_km=bad)


def test_sites_write_loadable_kme_configs(tmp_path: Path) -> None:
    p = sites.plan(distance_km=7)
    files = sites.write_sites(p, tmp_path, use_qkd=False)
    assert files.link_kind == "seeded"
    a, b = load_kme(files.kme_configs["a"]), load_kme(files.kme_configs["b"])
    assert a.authority and not b.authority
    assert a.peer_url == f"https://{p.fiber_b}:{sites.KME_PORT}"
    assert b.peer_url == f"https://{p.fiber_a}:{sites.KME_PORT}"
    assert a.local_saes == (sites.SAE["a"],) and a.remote_saes == (sites.SAE["b"],)
    assert a.max_key_size >= p.key_size_bits and a.key_size == p.key_size_bits
    assert a.link is not None and b.link is not None
    assert a.link.seed == b.link.seed and a.link.bits_per_second == p.link_rate_bps
    etsi = files.etsi("b", p)
    assert etsi["sae_id"] == "SAE-B" and etsi["peer_sae_id"] == "SAE-A"
    assert Path(etsi["cert_file"]).exists() and Path(etsi["ca_file"]).exists()


def test_kme_certificates_name_the_fiber_addresses(tmp_path: Path) -> None:
    from cryptography import x509

    p = sites.plan()
    sites.write_sites(p, tmp_path, use_qkd=False)
    for side, ip in (("a", p.fiber_a), ("b", p.fiber_b)):
        cert = x509.load_pem_x509_certificate((tmp_path / f"kme-{side}.pem").read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert ip in [str(a) for a in san.get_values_for_type(x509.IPAddress)]


def test_qkd_table_for_the_real_time_link(tmp_path: Path) -> None:
    p = sites.plan(distance_km=20)
    files = sites.write_sites(p, tmp_path, use_qkd=True)
    assert files.link_kind == "qkd"
    a, b = (tomllib.loads(files.kme_configs[s].read_text())["qkd"] for s in ("a", "b"))
    assert (a["role"], b["role"]) == ("transmitter", "receiver")
    assert a["listen"] == b["connect"] == f"{p.fiber_a}:{sites.QKD_PORT}"
    assert a["distance_km"] == 20
    qa, qb = (load_kme(files.kme_configs[s]).qkd for s in ("a", "b"))
    assert qa is not None and qb is not None and qa.psk == qb.psk
    assert len(qa.psk) == sites.QKD_PSK_BYTES and qa.psk_file == tmp_path / sites.QKD_PSK_FILE
    assert (qa.preset, qa.distance_km) == (p.preset, 20.0)


# --- adaptation ----------------------------------------------------------------------
LOADS = {"A->B": adapt.DirectionLoad(1, 1, 1), "B->A": adapt.DirectionLoad(2, 1, 1)}


def test_no_cap_when_key_is_plentiful() -> None:
    assert adapt.choose_cap(14e6, LOADS) is None


def test_cap_fits_the_media_into_the_key_supply() -> None:
    rate = 450e3
    cap = adapt.choose_cap(rate, LOADS)
    assert cap is not None
    demand = 3 * cap + 2 * adapt.AUDIO_BPS
    assert demand <= adapt.HEADROOM * rate
    draining = adapt.choose_cap(rate, LOADS, {"A->B": 1.0, "B->A": None})
    assert draining is not None and draining < cap


def test_cap_floor_when_no_key_arrives() -> None:
    assert adapt.choose_cap(0.0, LOADS) == adapt.MIN_VIDEO_BPS
    assert adapt.choose_cap(0.0, {"A->B": adapt.DirectionLoad(0, 1)}) is None


async def test_adapter_posts_only_real_changes_and_recovers() -> None:
    posted: list[int | None] = []
    audio: list[int | None] = []
    camera: list[int | None] = []

    async def post(caps: adapt.Caps) -> None:
        posted.append(caps.video)
        audio.append(caps.audio)
        camera.append(caps.camera)

    a = adapt.Adapter(post, LOADS)
    await a.update(14e6)
    assert posted == []  # no cap to lift
    await a.update(450e3)
    await a.update(455e3)  # within a step: unchanged
    await a.update(0.0)
    await a.update(14e6)
    assert posted[0] is not None and posted[0] > adapt.MIN_VIDEO_BPS
    assert posted[1] == 0 and posted[2] is None  # no key: every video paused
    assert len(posted) == 3 and [h["cap_bps"] for h in a.history] == posted
    assert audio == [None, adapt.AUDIO_LEAN_BPS, None]  # lean audio only when short of key
    assert camera == [None, 0, None]


def test_lean_audio_when_the_video_floor_does_not_fit() -> None:
    # 80 km with the real-time link: about 0.2 Mb/s of payload
    # the floor for three video streams beside lean audio: 2 * 40 + 3 * 30 kb/s
    rate = 1.05 * (2 * adapt.AUDIO_LEAN_WIRE_BPS + 3 * adapt.MIN_VIDEO_BPS) / adapt.HEADROOM
    cap, audio, camera = adapt.choose_caps(rate, LOADS)
    assert audio == adapt.AUDIO_LEAN_BPS and cap is not None and cap >= adapt.MIN_VIDEO_BPS
    assert camera is None
    assert 2 * adapt.AUDIO_LEAN_WIRE_BPS + 3 * cap <= adapt.HEADROOM * rate
    # enough key for the floor beside full audio: audio is left alone
    cap, audio, camera = adapt.choose_caps(450e3, LOADS)
    assert audio is None and cap is not None and cap > adapt.MIN_VIDEO_BPS and camera is None
    assert adapt.choose_caps(14e6, LOADS) == (None, None, None)


def test_cameras_pause_before_the_screen_share_and_audio_stays() -> None:
    # 80 km with the real-time link (0.22 Mb/s): lean audio and every video at the floor
    cap, audio, camera = adapt.choose_caps(0.974 * 220e3, LOADS)
    assert camera is None and audio == adapt.AUDIO_LEAN_BPS
    assert cap is not None and adapt.MIN_VIDEO_BPS <= cap < 40_000
    # a little less: the cameras pause, the screen share keeps the rest
    cap, audio, camera = adapt.choose_caps(150e3, LOADS)
    assert camera == 0 and audio == adapt.AUDIO_LEAN_BPS
    assert cap is not None and cap >= adapt.MIN_VIDEO_BPS  # the one screen share
    assert 2 * adapt.AUDIO_LEAN_WIRE_BPS + 1 * cap <= adapt.HEADROOM * 150e3
    # less still: audio only
    assert adapt.choose_caps(100e3, LOADS) == (0, adapt.AUDIO_LEAN_BPS, 0)
    # no screen share in the room: cameras cannot pause alone, audio only
    cams = {"A->B": adapt.DirectionLoad(1, 1, 1), "B->A": adapt.DirectionLoad(1, 1, 1)}
    assert adapt.choose_caps(130e3, cams) == (0, adapt.AUDIO_LEAN_BPS, 0)


def test_a_better_tier_returns_only_with_key_to_spare() -> None:
    # the supply at which the screen share's floor just fits beside lean audio
    edge = (2 * adapt.AUDIO_LEAN_WIRE_BPS + adapt.MIN_VIDEO_BPS) / adapt.HEADROOM
    assert adapt.tier_of(adapt.choose_caps(edge * 0.99, LOADS)) == adapt.TIER_AUDIO_ONLY
    assert adapt.tier_of(adapt.choose_caps(edge * 1.01, LOADS)) == adapt.TIER_CAMERAS_PAUSED
    now = adapt.TIER_AUDIO_ONLY
    assert adapt.tier_of(adapt.choose_caps(edge * 1.01, LOADS, tier_now=now)) == now
    back = adapt.choose_caps(edge * adapt.LEAN_HYSTERESIS * 1.01, LOADS, tier_now=now)
    assert adapt.tier_of(back) == adapt.TIER_CAMERAS_PAUSED
    # going down is immediate
    worse = adapt.choose_caps(edge * 0.99, LOADS, tier_now=adapt.TIER_FULL)
    assert adapt.tier_of(worse) == adapt.TIER_AUDIO_ONLY

async def test_adapter_survives_a_failing_server() -> None:
    async def post(caps: adapt.Caps) -> None:
        raise OSError("connection refused")

    a = adapt.Adapter(post, LOADS)
    assert await a.update(0.0) is None and a.history == []


def test_the_bitrates_plot_draws_each_cap_to_the_end_of_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Caps settle within the first ~10 s of a run; each holds until the next change,
    so its line must reach the end of the run (it used to stop at the last change)."""
    from qkdmeet.report import plots
    from qkdmeet.report.accounting import Recorder

    async def post(caps: adapt.Caps) -> None:
        return None

    a = adapt.Adapter(post, LOADS, t0=1000.0)
    a.history = [{"t": 1.0, "cap_bps": 400_000, "camera_cap_bps": None},
                 {"t": 10.0, "cap_bps": 250_000, "camera_cap_bps": 0}]
    rec = Recorder(["A->B"])
    rec.direction("A->B", 1000.0, key_bytes=0, payload_bytes=0, packets=0, key_buffered_bytes=0)
    for stream, t, bps in a.plotted(1060.0):
        rec.bitrate(stream, t, bps)
    report = rec.report()
    video, camera = (report.series["bitrates"][k] for k in ("video cap", "camera cap"))
    assert video == {"t": [1.0, 10.0, 60.0], "bps": [400e3, 250e3, 250e3]}
    assert camera == {"t": [1.0, 10.0, 60.0], "bps": [400e3, 0.0, 0.0]}
    assert report.duration_s == 60.0
    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)
    plots.plot_bitrates(report, tmp_path / "bitrates.png")
    lines = {ln.get_label(): ln for ln in figures[0].axes[0].get_lines()}
    for label in ("media video cap", "media camera cap"):
        assert lines[label].get_xdata()[-1] == 60.0
        assert lines[label].get_drawstyle() == "steps-post"  # a cap holds until it changes
    assert adapt.Adapter(post, LOADS).plotted(1e12) == []  # never capped: nothing drawn


# --- accounting identity -----------------------------------------------------------
def test_identity_closes_to_the_byte_and_reports_a_gap() -> None:
    live = gw_metrics(1000, 300, 700, 48)
    kme = {"delivered_bits_per_sae": {"SAE-A": 8 * (1000 + 300 + 700 + 48)}}
    ident = site_identity("a", "SAE-A", kme, live)
    assert ident.closes and ident.difference_bytes == 0
    off = site_identity("a", "SAE-A", {"delivered_bits_per_sae": {"SAE-A": 8 * 2049}}, live)
    assert not off.closes and off.difference_bytes == 1


def test_identity_counts_earlier_runs_from_the_log(tmp_path: Path) -> None:
    log = tmp_path / "gateway-b.log"
    first = gw_metrics(5000, 0, 3000, 0)
    log.write_text('{"gateway": "SAE-B", "tun": "t", "ready": true}\nnoise {\n'
                   + json.dumps(first) + "\n{not json\n")
    earlier = final_metrics_from_log(log)
    assert earlier == [first]
    live = gw_metrics(100, 50, 10, 5)
    kme = {"delivered_bits_per_sae": {"SAE-B": 8 * (8000 + 165)}}
    ident = site_identity("b", "SAE-B", kme, live, earlier)
    assert ident.closes and ident.earlier_runs == 1
    assert final_metrics_from_log(tmp_path / "missing.log") == []


# --- monitor and progress ------------------------------------------------------------
def test_direction_sample_prefixes_sender_and_receiver_drops() -> None:
    a = gw_metrics(1000, 10, 0, 0, {"no_key": 3})
    b = gw_metrics(0, 0, 900, 5, {"bad_tag": 2})
    d = direction_sample(a, b)
    assert d["key_bytes"] == 1000 and d["key_buffered_bytes"] == 10
    assert d["drops"] == {"tx:no_key": 3, "rx:bad_tag": 2}


def test_qkd_admin_view_is_tolerant() -> None:
    v = qkd_from_admin({"generated_bits": 800, "qber": 0.25, "eve": "intercept-resend:1.0",
                        "cut": False})
    assert v.generated_bytes == 100 and v.qber == 0.25 and v.eve == "intercept-resend:1.0"
    empty = qkd_from_admin({"qber": "high"})
    assert empty.generated_bytes == 0 and math.isnan(empty.qber)


def test_progress_line() -> None:
    prev = {"t": 0.0, "directions": {"A->B": {"key_bytes": 0}}}
    snap = {"t": 2.0, "qkd": {"rate_bps": 14e6, "qber": 0.029},
            "directions": {"A->B": {"key_bytes": 250_000, "key_buffered_bytes": 3_000_000,
                                    "drops": {"tx:no_key": 2}}},
            "room": {"participants": [{}, {}]}, "active_alarms": ["qber"], "cap_bps": 100e3}
    line = format_line(snap, prev)
    for part in ("QKD 14.00Mb/s", "QBER 2.9%", "A->B key 1.00Mb/s", "pool 3.00MB",
                 "no_key 2", "2 participants", "video cap 100kb/s", "ALARM qber"):
        assert part in line, line


# --- media -------------------------------------------------------------------------
def test_documents_carry_the_marker(tmp_path: Path) -> None:
    docs = media.write_documents(tmp_path, "QKDMEET-MARKER-abc123")
    for p in (docs.patient_case, docs.genomic_report):
        assert b"QKDMEET-MARKER-abc123" in p.read_bytes()
    with pytest.raises(ValueError):
        media.write_documents(tmp_path, "<script>")


def test_participant_summary_reads_bot_totals() -> None:
    text = "log line\n" + json.dumps({"name": "x", "totals": {
        "video_frames_received": 446, "audio_frames_received": 1488, "bitrate_bps": 5e5}})
    row = media.participant_summary("TUH", "b", media.last_json(text))
    assert row["video_frames_received"] == 446 and row["audio_frames_received"] == 1488
    assert media.participant_summary("x", "a", None)["video_frames_received"] == 0


def test_bot_argv_has_the_field_test_roles(tmp_path: Path) -> None:
    argv = media.bot_argv("https://10.1.0.2:8443", "r", "TUH", 30, screen=True,
                          upload=tmp_path / "d.html")
    assert "--screen" in argv and argv[argv.index("--upload") + 1] == str(tmp_path / "d.html")
    assert "--insecure" in argv and "--json" in argv and "30" in argv


# --- deploy/ examples ----------------------------------------------------------------
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


@pytest.mark.parametrize("side", ["a", "b"])
def test_deploy_examples_load(side: str, tmp_path: Path) -> None:
    from qkdmeet.vpn.config import load_config

    gw = load_config(DEPLOY / f"site-{side}" / "gateway.toml")
    # the bootstrap secret is installed out of band: give the example one here
    text = (DEPLOY / f"site-{side}" / "kme.toml").read_text()
    assert 'psk_file = "/etc/qkdmeet/qkd-psk.bin"' in text
    (tmp_path / "psk.bin").write_bytes(bytes(range(256)))
    (tmp_path / "kme.toml").write_text(
        text.replace("/etc/qkdmeet/qkd-psk.bin", str(tmp_path / "psk.bin"))
    )
    kme = load_kme(tmp_path / "kme.toml")
    assert kme.qkd is not None and kme.qkd.psk == bytes(range(256))
    assert gw.keys.source == "etsi" and gw.keys.sae_id in kme.local_saes
    assert gw.keys.peer_sae_id in kme.remote_saes
    assert kme.authority == (side == "a")


def test_monitor_rate_follows_the_last_ten_seconds() -> None:
    from qkdmeet.demo.monitor import RATE_WINDOW_S, Monitor
    from qkdmeet.report.accounting import Recorder

    mon = Monitor(None, Recorder(["A->B"]), None)  # type: ignore[arg-type]
    # 1 Mb/s for 20 s, then an attack: no key; the link's own run-long figure lags
    gen = 0
    for t in range(0, 21, 2):
        view = mon._qkd_view({"secure_bits": gen * 8, "secure_key_rate_bps": 1e6}, None, float(t))
        gen += 250_000
    assert view.rate_bps == pytest.approx(1e6, rel=0.15)
    gen -= 250_000
    for t in range(22, 22 + int(RATE_WINDOW_S) + 4, 2):
        view = mon._qkd_view({"secure_bits": gen * 8, "secure_key_rate_bps": 0.9e6}, None,
                             float(t))
    assert view.rate_bps == 0.0


def test_reaching_the_video_floor_is_always_applied() -> None:
    assert not adapt.changed(37_000, 33_000)  # within a step
    assert adapt.changed(37_000, adapt.MIN_VIDEO_BPS)  # the floor: applied
    assert not adapt.changed(adapt.MIN_VIDEO_BPS, adapt.MIN_VIDEO_BPS)
    assert adapt.changed(None, 500_000) and adapt.changed(500_000, None)


def test_lean_audio_has_hysteresis() -> None:
    # the supply at which full audio just fits beside the video floor
    video, audio = 3, 2
    edge = (video * adapt.MIN_VIDEO_BPS + audio * adapt.AUDIO_BPS) / adapt.HEADROOM
    assert adapt.choose_caps(edge * 1.01, LOADS)[1] is None
    assert adapt.choose_caps(edge * 0.99, LOADS)[1] == adapt.AUDIO_LEAN_BPS
    # once lean, a little more key is not enough to go back
    lean = adapt.TIER_LEAN_AUDIO
    assert adapt.choose_caps(edge * 1.01, LOADS, tier_now=lean)[1] == adapt.AUDIO_LEAN_BPS
    assert adapt.choose_caps(edge * adapt.LEAN_HYSTERESIS * 1.01, LOADS, tier_now=lean)[1] is None


def test_a_participant_that_received_no_audio_fails_the_demo() -> None:
    from qkdmeet.demo.cli import silent_participants

    ok = {"settings": {"traffic": "conference"},
          "participants": [{"name": "A", "audio_frames_received": 2900},
                           {"name": "B", "audio_frames_received": 2950}]}
    assert silent_participants(ok) == []
    bad = {**ok, "participants": [{"name": "A", "audio_frames_received": 2900},
                                  {"name": "B", "audio_frames_received": 0}]}
    assert silent_participants(bad) == ["B"]
    assert silent_participants({**bad, "settings": {"traffic": "udp"}}) == []


def test_the_adaptation_follows_the_steady_rate_unless_it_collapses() -> None:
    from qkdmeet.demo.runner import adaptation_rate

    assert adaptation_rate(300e3, 220e3) == 220e3  # a block just landed: not a trend
    assert adaptation_rate(150e3, 220e3) == 220e3  # between blocks
    assert adaptation_rate(50e3, 220e3) == 50e3  # collapse (attack, cut): at once
    assert adaptation_rate(80e3, None) == 80e3  # no steady figure yet
    assert adaptation_rate(300e3, 100e3) == 300e3  # the link is back after an attack


def test_window_rates_from_cumulative_samples() -> None:
    from qkdmeet.demo.monitor import _window_rate

    samples = [(float(t), 1000 * t) for t in range(0, 31)]  # 8 kb/s throughout
    assert _window_rate(samples, 30.0, 10.0) == pytest.approx(8000)
    assert _window_rate(samples, 30.0, 30.0) == pytest.approx(8000)
    burst = [(0.0, 0), (20.0, 0), (29.0, 0), (30.0, 30_000)]  # one block in the last second
    assert _window_rate(burst, 30.0, 10.0) == pytest.approx(8 * 30_000 / 10)
    assert _window_rate(burst, 30.0, 30.0) == pytest.approx(8 * 30_000 / 30)
    assert _window_rate([], 1.0, 10.0) == 0.0
