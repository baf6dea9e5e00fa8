"""The key accounting identity: what the KMEs delivered is consumed or still buffered.

For each site, to the byte::

    bits delivered by the site's KME to its gateway's SAE ID / 8
        == key consumed by the gateway (pad + tag masks + hash keys + discarded)
         + key the gateway still holds (both directions)

Key consumed includes what earlier runs of the gateway consumed (a
restarted gateway starts its counters from zero; each run's final counters
are in its log, see :func:`final_metrics_from_log`). A run that was killed
without a final dump leaves a gap: the identity then reports the difference
instead of closing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class SiteIdentity:
    site: str
    sae_id: str
    delivered_bytes: int
    consumed_bytes: int
    buffered_bytes: int
    earlier_runs: int

    @property
    def difference_bytes(self) -> int:
        return self.delivered_bytes - self.consumed_bytes - self.buffered_bytes

    @property
    def closes(self) -> bool:
        return self.difference_bytes == 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["difference_bytes"] = self.difference_bytes
        d["closes"] = self.closes
        return d


def _consumed(metrics: Mapping[str, Any]) -> int:
    return int(metrics["outbound"]["key_bytes"]) + int(metrics["inbound"]["key_bytes"])


def _buffered(metrics: Mapping[str, Any]) -> int:
    return int(metrics["outbound"]["key_buffered_bytes"]) + int(
        metrics["inbound"]["key_buffered_bytes"]
    )


def site_identity(
    site: str,
    sae_id: str,
    kme_metrics: Mapping[str, Any],
    live: Mapping[str, Any],
    earlier: Iterable[Mapping[str, Any]] = (),
) -> SiteIdentity:
    """The identity for one site from its KME's ``/api/v1/metrics`` and gateway metrics.

    ``live`` is the running gateway's ``/metrics.json``; ``earlier`` the final
    dumps of its previous runs (their buffers were discarded and counted).
    """
    delivered_bits = int(kme_metrics.get("delivered_bits_per_sae", {}).get(sae_id, 0))
    if delivered_bits % 8:
        raise ValueError(f"KME delivered {delivered_bits} bits to {sae_id}: not whole bytes")
    runs = list(earlier)
    return SiteIdentity(
        site=site,
        sae_id=sae_id,
        delivered_bytes=delivered_bits // 8,
        consumed_bytes=_consumed(live) + sum(_consumed(r) for r in runs),
        buffered_bytes=_buffered(live),
        earlier_runs=len(runs),
    )


def final_metrics_from_log(path: Path) -> list[dict[str, Any]]:
    """The final counters each stopped run of a gateway wrote to its log, in order."""
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if not (line.startswith("{") and '"outbound"' in line):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and "inbound" in data:
            out.append(data)
    return out
