"""``qkdmeet demo`` end to end: the whole system in namespaces for about half a minute."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qkdmeet.testbed import netns
from qkdmeet.testbed.wanrelay import read_capture

from .demo_run import run_demo

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

PREFIX = "qke-"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, int]:
    out = tmp_path_factory.mktemp("demo")
    proc = run_demo(out, PREFIX, 30, timeout=170)
    report: dict[str, Any] = json.loads(proc.stdout)
    return report, out, proc.returncode


def test_nothing_left_behind(run: tuple[dict[str, Any], Path, int]) -> None:
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(PREFIX)]
    assert not Path(f"/run/qkdmeet-testbed/{PREFIX.rstrip('-')}").exists()


def test_video_and_audio_reach_both_participants(run: tuple[dict[str, Any], Path, int]) -> None:
    report, _, _ = run
    people = report["participants"]
    assert len(people) == 2
    for p in people:
        assert p["video_frames_received"] > 0, p
        assert p["audio_frames_received"] > 0, p


def test_key_consumed_both_ways_with_no_reuse(run: tuple[dict[str, Any], Path, int]) -> None:
    report, _, _ = run
    assert {d["name"] for d in report["directions"]} == {"A->B", "B->A"}
    for d in report["directions"]:
        assert d["key_bytes"] > d["payload_bytes"] > 0
        assert d["packets"] > 0
        for reason in ("rx:reused_offset", "tx:key_reissued", "rx:bad_tag", "rx:replayed"):
            assert d["drops"].get(reason, 0) == 0, d["drops"]
    assert report["qkd"]["generated_bytes"] > 0


def test_key_accounting_identity_closes(run: tuple[dict[str, Any], Path, int]) -> None:
    report, _, code = run
    ident = report["key_identity"]
    assert [i["site"] for i in ident] == ["a", "b"]
    for i in ident:
        assert i["delivered_bytes"] == i["consumed_bytes"] + i["buffered_bytes"], i
        assert i["delivered_bytes"] > 0
    assert report["key_identity_closes"] is True and code == 0


def test_no_plaintext_on_the_wan(run: tuple[dict[str, Any], Path, int]) -> None:
    report, out, _ = run
    marker = report["settings"]["marker"].encode()
    docs = list((out / "documents").iterdir())
    assert docs and all(marker in p.read_bytes() for p in docs)
    capture = read_capture(out / "wan.capture")
    assert len(capture) > 100  # the conference crossed the WAN
    assert {side for side, _ in capture} == {"a", "b"}
    raw = (out / "wan.capture").read_bytes()
    assert marker not in raw and b"patient" not in raw.lower() and b"EGFR" not in raw
    # from the outer headers alone: no key byte range under any key ID used twice
    audit = report["wan_audit"]
    # (taken before the teardown; the capture copied after it may hold a few more)
    assert 100 < audit["datagrams"] <= len(capture) and audit["malformed"] == 0
    assert audit["reused_key_bytes"] == 0 and audit["marker_hits"] == 0 and audit["clean"]


def test_report_files_written(run: tuple[dict[str, Any], Path, int]) -> None:
    report, out, _ = run
    for name in ("report.json", "report.csv", "report.txt", "report.html", "key_usage.png",
                 "bitrates.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "report.json").read_text())
    assert saved["duration_s"] == pytest.approx(report["duration_s"])
    assert "field_test" in saved and len(saved["field_test"]["directions"]) == 2
    assert "ToMMo" in (out / "report.txt").read_text()
