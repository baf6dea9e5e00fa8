"""Local HTTP endpoint of a gateway: key budget and metrics.

``GET /budget`` -> JSON of :meth:`~qkdmeet.vpn.gateway.Gateway.budget` (key
buffered, key arrival and consumption rates in bytes/s, sustainable payload
bit rate): the conference polls it to fit its bitrate to the key supply.
``GET /metrics`` -> Prometheus text; ``GET /metrics.json`` -> JSON.
"""

from __future__ import annotations

from aiohttp import web

from qkdmeet.vpn.gateway import Gateway
from qkdmeet.vpn.transport import Address


def make_app(gateway: Gateway) -> web.Application:
    async def budget(_: web.Request) -> web.Response:
        return web.json_response(gateway.budget())

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            text=gateway.metrics.prometheus(), content_type="text/plain", charset="utf-8"
        )

    async def metrics_json(_: web.Request) -> web.Response:
        return web.json_response(gateway.metrics.as_dict())

    app = web.Application()
    app.router.add_get("/budget", budget)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/metrics.json", metrics_json)
    return app


class BudgetServer:
    """The endpoint on ``listen``; owned by the gateway runner, stopped with it."""

    def __init__(self, gateway: Gateway, listen: Address) -> None:
        self._runner = web.AppRunner(make_app(gateway), access_log=None)
        self._listen = listen
        self.port = 0

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._listen[0], self._listen[1])
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self._listen[1]

    async def stop(self) -> None:
        await self._runner.cleanup()
