"""``qkdmeet demo --scenario link-cut``: the fiber is cut mid-conference and
restored (root, namespaces). No key while it is cut, the gateways fail closed,
and the link distils key again once the fiber is back: a block of the cut's
dark counts must not spend the authentication reserve the link needs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qkdmeet.testbed import netns

from .demo_run import run_demo

pytestmark = pytest.mark.root  # tests/conftest.py skips it without root and namespaces

PREFIX = "qkc-"
SECONDS = 48  # the cut lasts from 1/3 to 2/3 of the run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], int, str]:
    out = tmp_path_factory.mktemp("demo-cut")
    proc = run_demo(out, PREFIX, SECONDS, "--scenario", "link-cut", timeout=240)
    assert not [ns for ns in netns.list_namespaces() if ns.startswith(PREFIX)]
    saved: dict[str, Any] = json.loads((out / "report.json").read_text())
    logs = "".join(p.read_text(errors="replace") for p in (out / "logs").glob("kme-*.log"))
    return saved, proc.returncode, logs


def _cut_window(report: dict[str, Any]) -> tuple[float, float]:
    on = [e["t"] for e in report["events"] if "{'cut': True}" in e["event"]]
    off = [e["t"] for e in report["events"] if "the link recovers" in e["event"]]
    assert on and off, report["events"]
    return on[0], off[0]


def test_no_key_while_cut_and_key_again_after(run: tuple[dict[str, Any], int, str]) -> None:
    report, _, logs = run
    t_on, t_off = _cut_window(report)
    q = report["series"]["qkd"]
    series = list(zip(q["t"], q["generated_bytes"], strict=True))
    # blocks of pulses sent before the cut finish within a few seconds; then nothing
    late_in_cut = [g for t, g in series if t_on + 8 <= t <= t_off]
    assert len(late_in_cut) >= 2 and len(set(late_in_cut)) == 1, series
    # the fiber back: the link distils key again before the end of the run
    assert series[-1][1] > late_in_cut[-1], series
    assert "authentication key exhausted" not in logs
    assert any(a["kind"] == "cut" for a in report["alarms"]), report["alarms"]


def test_fails_closed_through_the_cut(run: tuple[dict[str, Any], int, str]) -> None:
    report, code, _ = run
    drops = {k: v for d in report["directions"] for k, v in d["drops"].items()}
    for reason in ("rx:reused_offset", "tx:key_reissued", "rx:bad_tag", "rx:replayed"):
        assert drops.get(reason, 0) == 0, drops
    audit = report["wan_audit"]
    assert audit["reused_key_bytes"] == 0 and audit["marker_hits"] == 0 and audit["clean"]
    assert report["key_identity_closes"] is True and code == 0
