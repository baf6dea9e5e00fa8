"""``qkdmeet demo --scenario gateway-restart``: gateway B restarts mid-conference
(root, namespaces). The key it held is discarded and counted, never reused, and the
accounting identity still closes to the byte across both of its runs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qkdmeet.testbed import netns

from .demo_run import run_demo

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

PREFIX = "qkg-"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], int]:
    out = tmp_path_factory.mktemp("demo-restart")
    proc = run_demo(out, PREFIX, 30, "--scenario", "gateway-restart", timeout=200)
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(PREFIX)]
    return json.loads(proc.stdout), proc.returncode


def test_identity_closes_across_the_restart(run: tuple[dict[str, Any], int]) -> None:
    report, code = run
    assert any("gateway B is back" in e["event"] for e in report["events"])
    b = next(i for i in report["key_identity"] if i["site"] == "b")
    assert b["earlier_runs"] == 1, b  # the stopped run's final counters were found
    for ident in report["key_identity"]:
        assert ident["delivered_bytes"] == ident["consumed_bytes"] + ident["buffered_bytes"], ident
    assert report["key_identity_closes"] is True and code == 0


def test_no_key_reused_and_media_resumes(run: tuple[dict[str, Any], int]) -> None:
    report, _ = run
    audit = report["wan_audit"]
    assert audit["reused_key_bytes"] == 0 and audit["marker_hits"] == 0 and audit["clean"]
    for d in report["directions"]:
        assert d["drops"].get("rx:reused_offset", 0) == 0
        assert d["drops"].get("rx:bad_tag", 0) == 0
        assert d["packets"] > 0
    for p in report["participants"]:
        assert p["video_frames_received"] > 0 and p["audio_frames_received"] > 0
