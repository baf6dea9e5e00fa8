"""Per-direction key accounting of a gateway, as Prometheus text and JSON.

``outbound`` is LAN -> WAN (this gateway is ETSI 014 master, it encrypts);
``inbound`` is WAN -> LAN (slave, it decrypts). Key bytes consumed are split
into pad, tag masks, hash keys and discarded key tails, so that
``payload_bytes / key_bytes`` is the key efficiency and the sum reproduces the
field test's "size of key used" table.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from qkdmeet.vpn.constants import RATE_WINDOW_SECONDS


class RateMeter:
    """Rate of a growing total over the last ``window`` seconds."""

    __slots__ = ("_samples", "_window")

    def __init__(self, window: float = RATE_WINDOW_SECONDS) -> None:
        self._window = window
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, total: int, now: float | None = None) -> None:
        t = time.monotonic() if now is None else now
        self._samples.append((t, total))
        while len(self._samples) > 2 and t - self._samples[1][0] > self._window:
            self._samples.popleft()

    def rate(self) -> float:
        """Units per second between the oldest and newest sample (0 if fewer than two)."""
        if len(self._samples) < 2:
            return 0.0
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        return (v1 - v0) / (t1 - t0) if t1 > t0 else 0.0


@dataclass(slots=True)
class DirectionMetrics:
    """Counters of one direction. Mutated only from the event loop thread."""

    packets: int = 0
    payload_bytes: int = 0
    key_pad_bytes: int = 0
    key_mask_bytes: int = 0
    key_hash_bytes: int = 0
    key_discarded_bytes: int = 0
    key_arrived_bytes: int = 0
    key_buffered_bytes: int = 0
    announces: int = 0
    drops: Counter[str] = field(default_factory=Counter)

    @property
    def key_bytes(self) -> int:
        """All key consumed: pad + masks + hash keys + discarded tails."""
        return (
            self.key_pad_bytes
            + self.key_mask_bytes
            + self.key_hash_bytes
            + self.key_discarded_bytes
        )

    def drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] += n

    def as_dict(self) -> dict[str, Any]:
        return {
            "packets": self.packets,
            "payload_bytes": self.payload_bytes,
            "key_bytes": self.key_bytes,
            "key_pad_bytes": self.key_pad_bytes,
            "key_mask_bytes": self.key_mask_bytes,
            "key_hash_bytes": self.key_hash_bytes,
            "key_discarded_bytes": self.key_discarded_bytes,
            "key_arrived_bytes": self.key_arrived_bytes,
            "key_buffered_bytes": self.key_buffered_bytes,
            "announces": self.announces,
            "drops": dict(self.drops),
            "payload_per_key_byte": self.payload_bytes / self.key_bytes if self.key_bytes else 0.0,
        }


@dataclass(slots=True)
class GatewayMetrics:
    """Both directions of one gateway."""

    name: str = "gateway"
    outbound: DirectionMetrics = field(default_factory=DirectionMetrics)
    inbound: DirectionMetrics = field(default_factory=DirectionMetrics)

    def as_dict(self) -> dict[str, Any]:
        return {
            "gateway": self.name,
            "outbound": self.outbound.as_dict(),
            "inbound": self.inbound.as_dict(),
        }

    def prometheus(self) -> str:
        """Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        gauges = {"key_buffered_bytes"}
        names = [
            ("packets", "packets protected or accepted"),
            ("payload_bytes", "inner IP bytes carried"),
            ("key_pad_bytes", "key bytes used as one-time pad"),
            ("key_mask_bytes", "key bytes used to mask tags"),
            ("key_hash_bytes", "key bytes used as Poly1305 hash keys"),
            ("key_discarded_bytes", "key bytes discarded unused (key tails, restarts)"),
            ("key_arrived_bytes", "key bytes received from the KME"),
            ("key_buffered_bytes", "key bytes held ready"),
        ]
        for attr, help_text in names:
            metric = f"qkdmeet_vpn_{attr}" + ("" if attr in gauges else "_total")
            lines.append(f"# HELP {metric} {help_text}")
            lines.append(f"# TYPE {metric} {'gauge' if attr in gauges else 'counter'}")
            for dname, d in (("outbound", self.outbound), ("inbound", self.inbound)):
                labels = f'gateway="{self.name}",direction="{dname}"'
                lines.append(f"{metric}{{{labels}}} {getattr(d, attr)}")
        lines.append("# HELP qkdmeet_vpn_drops_total packets dropped, by reason")
        lines.append("# TYPE qkdmeet_vpn_drops_total counter")
        for dname, d in (("outbound", self.outbound), ("inbound", self.inbound)):
            for reason, n in sorted(d.drops.items()):
                labels = f'gateway="{self.name}",direction="{dname}",reason="{reason}"'
                lines.append(f"qkdmeet_vpn_drops_total{{{labels}}} {n}")
        return "\n".join(lines) + "\n"
