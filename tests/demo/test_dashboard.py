"""The demo's live dashboard: state.json from the runner's monitor, and the page."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from qkdmeet.demo.dashboard import Dashboard
from qkdmeet.demo.runner import State

CHROMIUM = Path(os.environ.get("QKDMEET_CHROMIUM", "/usr/bin/chromium"))


@dataclass
class FakeMonitor:
    latest: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeRunner:
    monitor: FakeMonitor | None
    state: State = State.RUNNING
    join_url: str | None = None


async def _get(dash: Dashboard, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{dash.port}{path}") as r:
        return r.status, r.content_type, await r.text()


async def test_state_carries_pools_alarms_and_the_join_url() -> None:
    snap = {
        "t": 12.0,
        "qkd": {"rate_bps": 2.5e6, "qber": math.nan, "generated_bytes": 1_000_000},
        "directions": {"A->B": {"key_bytes": 10, "key_buffered_bytes": 5,
                                "payload_bytes": 4, "drops": {}}},
        "alarms": [{"t": 3.0, "message": "QBER 25% above tolerance"}],
        "gateways": {"a": {"raw": "left out"}},
    }
    runner = FakeRunner(FakeMonitor(snap), join_url="https://10.1.0.2:8443/?room=expert-panel")
    dash = Dashboard(runner, 0)
    await dash.start()
    try:
        assert dash.port > 0
        status, ctype, _ = await _get(dash, "/state.json")
        assert status == 200 and ctype == "application/json"
        async with (aiohttp.ClientSession() as s,
                    s.get(f"http://127.0.0.1:{dash.port}/state.json") as r):
            state = await r.json()
        assert state["state"] == "running"
        assert state["qkd"]["qber"] is None  # NaN is not JSON: sent as null
        assert state["alarms"][0]["message"].startswith("QBER")
        assert state["join_url"] == runner.join_url
        assert "gateways" not in state  # raw per-process dumps stay out of the page
        status, ctype, page = await _get(dash, "/")
        assert status == 200 and ctype == "text/html"
        assert 'src="dashboard.js"' in page and "<script>" not in page  # no inline script
        status, ctype, script = await _get(dash, "/dashboard.js")
        assert status == 200 and ctype == "application/javascript"
        assert "state.json" in script and "join_url" in script
        assert "innerHTML" not in script and "insertAdjacentHTML" not in script
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{dash.port}/") as r:
            policy = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    finally:
        await dash.stop()


async def test_state_before_the_monitor_exists() -> None:
    dash = Dashboard(FakeRunner(None, State.KEYS), 0)
    await dash.start()
    try:
        async with (aiohttp.ClientSession() as s,
                    s.get(f"http://127.0.0.1:{dash.port}/state.json") as r):
            state = await r.json()
        assert state == {"state": "keys", "join_url": None}
    finally:
        await dash.stop()


async def test_the_invite_secret_is_not_served() -> None:
    invite = "https://10.1.0.2:8443/?room=expert-panel#invite=s3cr3t-invite"
    dash = Dashboard(FakeRunner(FakeMonitor({}), join_url=invite), 0)
    await dash.start()
    try:
        status, _, text = await _get(dash, "/state.json")
        assert status == 200 and "s3cr3t" not in text
        assert "https://10.1.0.2:8443/?room=expert-panel" in text
    finally:
        await dash.stop()


@pytest.mark.browser
@pytest.mark.timeout(120)
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing")
async def test_names_and_alarms_are_shown_as_text_in_chromium() -> None:
    playwright = pytest.importorskip("playwright.async_api")
    payload = '<img src=x onerror="window.__xss=1">'
    snap = {"room": {"participants": [{"name": payload}]},
            "alarms": [{"t": 1.0, "message": f"{payload}<script>window.__xss=2</script>"}]}
    dash = Dashboard(FakeRunner(FakeMonitor(snap), join_url="javascript:window.__xss=3"), 0)
    await dash.start()
    try:
        async with playwright.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                               args=["--no-sandbox", "--disable-gpu"])
            try:
                page = await browser.new_page()
                await page.goto(f"http://127.0.0.1:{dash.port}/")
                expect = playwright.expect
                await expect(page.locator("#s")).to_contain_text(f"participants: {payload}")
                await expect(page.locator(".alarm")).to_contain_text("<script>")
                assert await page.locator("#s img, #s script, #join").count() == 0
                assert await page.evaluate("() => window.__xss") is None
            finally:
                await browser.close()
    finally:
        await dash.stop()
