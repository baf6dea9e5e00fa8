"""The demo's live dashboard: state.json from the runner's monitor, and the page."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from qkdmeet.demo.dashboard import Dashboard
from qkdmeet.demo.runner import State


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
        assert "state.json" in page and "join_url" in page
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
