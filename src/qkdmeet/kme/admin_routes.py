"""The QKD link's administration: ``GET|POST /admin/qkd``, for this KME's own
certificate only, when a ``[qkd]`` link end runs inside the KME.

- ``GET /admin/qkd``: the link end's live stats as JSON (role, blocks,
  aborted_blocks, secure_bits, secure_key_rate_bps, sifted_rate_bps, qber,
  phase_error_bound, ec_efficiency, auth_key_spent_bits, eve, cut, ...; see
  :func:`qkdmeet.qkd.figures.end_stats`);
- ``POST /admin/qkd`` with ``{"eve": "intercept-resend:F" | "pns" | null,
  "cut": true | false}`` (either key optional): start/stop the eavesdropper,
  cut/restore the fibre. Only the transmitter's site holds the fibre model;
  the receiver answers 409. Answers the stats after the change.

Without a link end: 404.
"""

from __future__ import annotations

import json

from aiohttp import web

from qkdmeet.kme.http import CALLER, ROLE, BadRequest, Routes, error, json_body

#: Stable reasons of a refused change (never the exception's text, which echoes the input).
EVE_REFUSED = "eve must be null, 'none', 'pns' or 'intercept-resend:F' with F in [0, 1]"
CUT_REFUSED = "cut must be true or false"


class AdminRoutes(Routes):
    """``/admin/qkd`` over the server's running link end (:attr:`KmeServer.qkd`)."""

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_route("*", "/admin/qkd", self.qkd)

    async def qkd(self, request: web.Request) -> web.Response:
        if request[ROLE] != "kme" or request[CALLER] != self.kme.config.kme_id:
            self.kme.metrics["unauthorized"] += 1
            return web.Response(status=401)
        node = self.kme.qkd
        if node is None:
            return error(404, "no QKD link feeds this KME")
        if request.method == "POST":
            body = await json_body(request)
            if not hasattr(node, "set_eve"):
                return error(409, "the eavesdropper and the fibre are set at the transmitter's KME")
            if "cut" in body and not isinstance(body["cut"], bool):
                raise BadRequest(CUT_REFUSED)
            if "eve" in body:
                eve = body["eve"]
                if eve is not None and (not isinstance(eve, str) or len(eve) > 64):
                    raise BadRequest(EVE_REFUSED)
                try:
                    node.set_eve(eve)
                except (ValueError, TypeError):
                    raise BadRequest(EVE_REFUSED) from None
            if "cut" in body:
                node.set_cut(body["cut"])
        elif request.method != "GET":
            return web.Response(status=405)
        return web.json_response(node.stats(), dumps=lambda o: json.dumps(o, default=str))
