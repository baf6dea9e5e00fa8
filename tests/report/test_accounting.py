from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from qkdmeet.report import FIELD_TEST, Recorder
from qkdmeet.report.plots import write_html
from qkdmeet.report.tables import render_csv, render_table, write_tables


def _recorder() -> Recorder:
    rec = Recorder(["A->B", "B->A"])
    for i in range(11):
        t = 1000.0 + i
        rec.direction("A->B", t, key_bytes=1000 * i, payload_bytes=900 * i, packets=i,
                      key_buffered_bytes=5000 - 10 * i, drops={"no_key": 0, "bad_tag": i // 5})
        rec.direction("B->A", t, key_bytes=2000 * i, payload_bytes=1900 * i, packets=2 * i,
                      key_buffered_bytes=7000)
        rec.qkd(t, generated_bytes=10_000 * i, qber=0.02, blocks=i)
    return rec


def test_totals_and_rates() -> None:
    report = _recorder().report()
    assert report.duration_s == pytest.approx(10.0)
    ab, ba = report.directions
    assert ab.key_bytes == 10_000 and ab.payload_bytes == 9_000 and ab.packets == 10
    assert ab.drops == {"bad_tag": 2, "no_key": 0}
    assert ab.key_kbps == pytest.approx(8 * 10_000 / 10 / 1e3)
    assert ba.key_bytes == 20_000
    assert report.qkd.generated_bytes == 100_000
    assert report.qkd.secure_key_rate_bps == pytest.approx(80_000)
    assert report.margin_bps == pytest.approx(8 * (100_000 - 30_000) / 10)


def test_counter_reset_is_carried_forward() -> None:
    rec = Recorder(["A->B"])
    rec.direction("A->B", 0.0, key_bytes=500, payload_bytes=400, packets=5, key_buffered_bytes=0)
    # the gateway restarted: its counters start again from zero
    rec.direction("A->B", 1.0, key_bytes=100, payload_bytes=80, packets=1, key_buffered_bytes=0)
    rec.direction("A->B", 2.0, key_bytes=300, payload_bytes=240, packets=3, key_buffered_bytes=0)
    (d,) = rec.report().directions
    assert (d.key_bytes, d.payload_bytes, d.packets) == (800, 640, 8)


def test_unknown_direction_and_empty_names_rejected() -> None:
    with pytest.raises(ValueError):
        Recorder([])
    with pytest.raises(KeyError):
        Recorder(["A->B"]).direction("X", 0.0, key_bytes=0, payload_bytes=0, packets=0,
                                     key_buffered_bytes=0)


def test_field_test_reference_rates_are_consistent() -> None:
    # 270 MB over 39 min is 923 kb/s, 457 MB is 1.56 Mb/s: the table's own arithmetic.
    for row in FIELD_TEST["directions"]:
        rate = row.key_mb * 1e6 * 8 / FIELD_TEST["duration_s"] / 1e3
        assert rate == pytest.approx(row.key_kbps, rel=0.01)


def test_table_csv_json_and_html(tmp_path: Path) -> None:
    report = _recorder().report(participants=[{"name": "x", "video_frames_received": 3}])
    text = render_table(report)
    assert "A->B" in text and "field test" in text and "0.01 MB" in text
    rows = render_csv(report).splitlines()
    assert rows[0].startswith("direction,") and "drops_bad_tag" in rows[0]
    assert len(rows) == 4
    paths = write_tables(report, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["directions"][1]["key_bytes"] == 20_000
    assert data["participants"][0]["video_frames_received"] == 3
    assert not math.isnan(data["qkd"]["qber"])
    page = write_html(report, tmp_path)
    assert page.read_text().count("data:image/png;base64,") == 2
    assert (tmp_path / "key_usage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
