"""A live dashboard of the running demo on the host: ``http://127.0.0.1:PORT/``.

``GET /state.json`` is the monitor's latest sample (key pools, QKD rate and
QBER, consumption per direction, participants, alarms, video cap, and the
URL a browser on the host joins the conference at through the QKD-VPN when
the demo runs with ``--host-join``); ``GET /`` is a page that renders it every
two seconds (``dashboard.js``; no inline script, under a
Content-Security-Policy that forbids it). The join URL is shown without its
fragment: the invite secret is printed in the demo's terminal, not served to
whoever reaches this port.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from aiohttp import web

HERE = Path(__file__).parent
PAGE = (HERE / "dashboard.html").read_text()
ASSETS = {
    "dashboard.js": ((HERE / "dashboard.js").read_text(), "application/javascript"),
    "dashboard.css": ((HERE / "dashboard.css").read_text(), "text/css"),
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _without_secret(url: str | None) -> str | None:
    """A join URL without its fragment (the invite secret)."""
    return url.split("#", 1)[0] if isinstance(url, str) else url


def _clean(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if k not in ("gateways", "kmes")}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


class Dashboard:
    """Serves the runner's live state; started and stopped by the demo command."""

    def __init__(self, runner: Any, port: int, host: str = "127.0.0.1") -> None:
        self.runner = runner
        self.port = port
        self.host = host
        self._app_runner: web.AppRunner | None = None

    def state(self) -> dict[str, Any]:
        mon = self.runner.monitor
        snap = dict(mon.latest) if mon is not None else {}
        snap["state"] = self.runner.state.value
        snap["join_url"] = _without_secret(getattr(self.runner, "join_url", None))
        return dict(_clean(snap))

    async def start(self) -> None:
        app = web.Application()

        async def page(_: web.Request) -> web.Response:
            return web.Response(text=PAGE, content_type="text/html", headers=HEADERS)

        async def asset(request: web.Request) -> web.Response:
            text, ctype = ASSETS[request.match_info["name"]]
            return web.Response(text=text, content_type=ctype, headers=HEADERS)

        async def state(_: web.Request) -> web.Response:
            return web.Response(text=json.dumps(self.state(), default=str),
                                content_type="application/json", headers=HEADERS)

        app.router.add_get("/", page)
        app.router.add_get("/{name:dashboard\\.(?:js|css)}", asset)
        app.router.add_get("/state.json", state)
        self._app_runner = web.AppRunner(app, access_log=None)
        await self._app_runner.setup()
        site = web.TCPSite(self._app_runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # an ephemeral port: record the real one
            self.port = int(self._app_runner.addresses[0][1])

    async def stop(self) -> None:
        if self._app_runner is not None:
            await self._app_runner.cleanup()
            self._app_runner = None
