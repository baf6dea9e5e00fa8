"""One line of live progress on stderr per monitor sample."""

from __future__ import annotations

import math
import sys
from typing import Any, TextIO


def _rate(prev: dict[str, Any] | None, cur: dict[str, Any], t0: float, t1: float) -> float:
    if prev is None or t1 <= t0:
        return 0.0
    return 8 * float(cur["key_bytes"] - prev["key_bytes"]) / (t1 - t0)


def _kbps(bps: float) -> str:
    return f"{bps / 1e6:.2f}Mb/s" if bps >= 1e6 else f"{bps / 1e3:.0f}kb/s"


def format_line(snap: dict[str, Any], prev: dict[str, Any] | None) -> str:
    """``t=12s QKD 14.0Mb/s QBER 1.2% | A->B key 0.92Mb/s pool 2.0MB | ... | 2 participants``."""
    parts = [f"t={snap.get('t', 0):4.0f}s"]
    q = snap.get("qkd") or {}
    qber = q.get("qber", math.nan)
    qber_s = "n/a" if not isinstance(qber, float) or math.isnan(qber) else f"{100 * qber:.1f}%"
    parts.append(f"QKD {_kbps(float(q.get('rate_bps', 0.0)))} QBER {qber_s}")
    for name, d in snap.get("directions", {}).items():
        p = (prev or {}).get("directions", {}).get(name)
        rate = _rate(p, d, (prev or {}).get("t", 0.0), snap.get("t", 0.0))
        no_key = d["drops"].get("tx:no_key", 0)
        parts.append(
            f"{name} key {_kbps(rate)} used {d['key_bytes'] / 1e6:.1f}MB "
            f"pool {d['key_buffered_bytes'] / 1e6:.2f}MB" + (f" no_key {no_key}" if no_key else "")
        )
    room = snap.get("room")
    if isinstance(room, dict):
        people = room.get("participants", [])
        parts.append(f"{len(people)} participants")
    cap = snap.get("cap_bps")
    if cap == 0:
        parts.append("video paused (key)")
    elif cap:
        parts.append(f"video cap {_kbps(float(cap))}")
    if snap.get("camera_cap_bps") == 0 and cap != 0:
        parts.append("cameras paused (key)")
    alarms = snap.get("active_alarms") or []
    if alarms:
        parts.append("ALARM " + ",".join(alarms))
    return " | ".join(parts)


class Progress:
    """Writes :func:`format_line` for each sample (``quiet``: nothing)."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._prev: dict[str, Any] | None = None

    def __call__(self, snap: dict[str, Any]) -> None:
        if not self.quiet:
            print(format_line(snap, self._prev), file=self.stream, flush=True)
        self._prev = snap

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"[demo] {text}", file=self.stream, flush=True)
