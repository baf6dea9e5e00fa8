"""The KME's figures: ``GET /api/v1/metrics`` (JSON) and ``GET /metrics``
(Prometheus text with HELP and TYPE, :mod:`qkdmeet.kme.promtext`).

Both read the same :func:`snapshot` of the server's counters and its store;
either role may read them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from qkdmeet.kme import promtext
from qkdmeet.kme.http import Routes

if TYPE_CHECKING:
    from qkdmeet.kme.server import KmeServer

#: HELP text of the counters in :attr:`KmeServer.metrics`.
METRIC_HELP = {
    "enc_keys": "Keys delivered to masters (enc_keys) since this KME started.",
    "enc_bits": "Key bits delivered to masters (enc_keys) since this KME started.",
    "dec_keys": "Keys delivered to slaves (dec_keys) since this KME started.",
    "unauthorized": "Requests refused with 401 (no, unknown or wrong-role certificate).",
    "bad_request": "Requests refused with 400 (malformed or out of limits).",
    "busy": "Requests answered 503 busy (more than MAX_IN_FLIGHT served at once).",
    "unavailable": "Requests answered 503 (no key in stock, peer KME unreachable).",
    "wrong_role_sae": "SAE certificates refused on the peer or admin API.",
    "wrong_role_kme": "KME certificates refused on the SAE API.",
}


def snapshot(kme: KmeServer) -> dict[str, Any]:
    """The counters, the stock and the keys held for slaves, as one JSON object."""
    out: dict[str, Any] = dict(kme.metrics)
    out["stored_key_bits"] = kme.store.stock_bytes() * 8
    out["link_received_bits"] = kme.store.stream_end * 8
    out["held_for_slaves"] = {
        f"{m}->{s}": kme.store.held_count(m, s)
        for s in kme.config.local_saes
        for m in kme.config.remote_saes
    }
    out["delivered_bits_per_sae"] = dict(kme.per_sae)
    return out


def prometheus_text(kme: KmeServer) -> str:
    """The figures of :func:`snapshot` as Prometheus text, with HELP and TYPE."""
    snap = snapshot(kme)
    e = promtext.Exposition()
    e.family("qkdmeet_kme_stored_key_bits", "gauge",
             "Key bits received from the link and not yet reserved.", snap["stored_key_bits"])
    e.family("qkdmeet_kme_link_received_bits_total", "counter",
             "Key bits received from the QKD link (stream position).",
             snap["link_received_bits"])
    e.family("qkdmeet_kme_delivered_bits_total", "counter",
             "Key bits delivered to each SAE since this KME started.",
             [({"sae": sae}, bits) for sae, bits in sorted(kme.per_sae.items())])
    e.family("qkdmeet_kme_held_keys", "gauge",
             "Keys held for a slave SAE, by master and slave.",
             [({"master": ms.split("->")[0], "slave": ms.split("->")[1]}, n)
              for ms, n in sorted(snap["held_for_slaves"].items())])
    for k, v in sorted(kme.metrics.items()):
        e.family(f"qkdmeet_kme_{k}_total", "counter", METRIC_HELP.get(
            k, f"Requests refused or counted as {k} since this KME started."), v)
    e.family("qkdmeet_kme_expired_keys_total", "counter",
             "Keys held for a slave that never claimed them, destroyed.", kme.expired_keys)
    e.family("qkdmeet_kme_expired_reserved_bytes_total", "counter",
             "Reserved key bytes never spent, destroyed.", kme.expired_bytes)
    e.family("qkdmeet_kme_wal_scrubs_total", "counter",
             "WAL checkpoints that erased delivered key from the -wal file.",
             kme.store.scrubs)
    if kme.audit is not None:
        e.family("qkdmeet_kme_audit_events_total", "counter",
                 "Audit log counters, persisted across restarts.",
                 [({"counter": k}, v) for k, v in sorted(kme.audit.counters.items())])
    return e.text()


class MetricsRoutes(Routes):
    """``/api/v1/metrics`` and ``/metrics`` of one KME."""

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/v1/metrics", self.json_metrics)
        router.add_get("/metrics", self.prometheus)

    async def json_metrics(self, request: web.Request) -> web.Response:
        return web.json_response(snapshot(self.kme))

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(
            text=prometheus_text(self.kme), headers={"Content-Type": promtext.CONTENT_TYPE}
        )
