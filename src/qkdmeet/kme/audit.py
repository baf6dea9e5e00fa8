"""The KME's audit log: every key delivery and every refusal, one JSON line each.

A line holds the time, the caller (role and ID), the operation
(``enc_keys``, ``dec_keys``, ``status``, ``peer_reserve``, ...), the other SAE
(the path's SAE ID), the HTTP status, ``result`` (``delivered`` or
``refused``), the reason of a refusal, and for a delivery the key IDs and
their sizes in bits. Never key material.

Durability: each line is written and flushed at once (a ``kill -9`` of the
KME loses none: the OS holds it) and fsync'd at most every
:data:`FSYNC_SECONDS` and on close. The file is opened for appending only
(``O_APPEND``, mode 0600); past ``max_bytes`` it is rotated to ``.1`` (the
older ones shift to ``.2`` ... ``.<keep>``). Counters (deliveries, keys and
bits delivered, refusals by reason) are persisted beside it in
``<log>.counters.json`` (atomically replaced at each fsync), so they are
countable after a restart and across rotations; :func:`summarise` reads
them and the log files (``qkdmeet kme audit``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Seconds at most between a line's write and its fsync.
FSYNC_SECONDS = 1.0
DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_KEEP = 5


class AuditLog:
    """Append-only JSON-lines audit log with persisted counters."""

    def __init__(
        self, path: str | Path, *, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.counters_path = Path(f"{self.path}.counters.json")
        self.counters: Counter[str] = Counter()
        if self.counters_path.exists():
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(self.counters_path.read_text())
                self.counters.update({str(k): int(v) for k, v in data.items()})
        elif self.path.exists():  # counters lost: count them again from the log
            self.counters = count_lines(self.path.read_text(errors="replace").splitlines())
        self._fd = -1
        self._open()
        self._synced = time.monotonic()
        self._unsynced = False

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def record(
        self,
        *,
        op: str,
        caller: str,
        role: str,
        other: str | None,
        status: int,
        reason: str = "",
        key_ids: Sequence[str] = (),
        sizes_bits: Sequence[int] = (),
    ) -> None:
        delivered = status == 200 and bool(key_ids)
        entry: dict[str, Any] = {
            "time": round(time.time(), 6),
            "op": op,
            "role": role,
            "caller": caller,
            "other": other,
            "status": status,
            "result": "delivered" if delivered else ("ok" if status == 200 else "refused"),
        }
        if reason:
            entry["reason"] = reason[:200]
        if key_ids:
            entry["key_IDs"] = list(key_ids)
            entry["sizes_bits"] = list(sizes_bits)
        _count(self.counters, entry)
        os.write(self._fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())
        self._unsynced = True
        if time.monotonic() - self._synced >= FSYNC_SECONDS:
            self.sync()
        if os.fstat(self._fd).st_size >= self.max_bytes:
            self._rotate()

    def sync(self) -> None:
        """fsync the log and persist the counters."""
        if self._fd >= 0 and self._unsynced:
            os.fsync(self._fd)
        tmp = Path(f"{self.counters_path}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(dict(self.counters), sort_keys=True).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.counters_path)
        self._synced = time.monotonic()
        self._unsynced = False

    def _rotate(self) -> None:
        self.sync()
        os.close(self._fd)
        for i in range(self.keep - 1, 0, -1):
            src = Path(f"{self.path}.{i}")
            if src.exists():
                os.replace(src, Path(f"{self.path}.{i + 1}"))
        os.replace(self.path, Path(f"{self.path}.1"))
        self._open()

    def close(self) -> None:
        if self._fd >= 0:
            self.sync()
            os.close(self._fd)
            self._fd = -1


def _count(c: Counter[str], entry: dict[str, Any]) -> None:
    c["requests"] += 1
    if entry["result"] == "delivered":
        c["deliveries"] += 1
        c[f"deliveries_{entry['op']}"] += 1
        c["keys_delivered"] += len(entry.get("key_IDs", ()))
        c["bits_delivered"] += sum(entry.get("sizes_bits", ()))
    elif entry["result"] == "refused":
        c["refusals"] += 1
        c[f"refused_{entry['status']}"] += 1


def count_lines(lines: Sequence[str]) -> Counter[str]:
    """Counters from audit lines (bad lines counted as ``unreadable_lines``)."""
    c: Counter[str] = Counter()
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            _count(c, entry)
        except (ValueError, KeyError, TypeError):
            c["unreadable_lines"] += 1
    return c


def summarise(path: str | Path) -> dict[str, Any]:
    """The persisted counters and a recount of the log files still on disk."""
    p = Path(path)
    files = [p, *sorted(p.parent.glob(p.name + ".[0-9]*"))]
    lines: list[str] = []
    for f in files:
        with contextlib.suppress(OSError):
            lines += f.read_text(errors="replace").splitlines()
    recount = count_lines(lines)
    refusals: Counter[str] = Counter()
    for line in lines:
        with contextlib.suppress(ValueError, AttributeError):
            e = json.loads(line)
            if e.get("result") == "refused":
                refusals[f"{e.get('op')}: {e.get('reason') or e.get('status')}"] += 1
    persisted: dict[str, int] = {}
    cp = Path(f"{p}.counters.json")
    with contextlib.suppress(OSError, ValueError):
        persisted = json.loads(cp.read_text())
    return {
        "log": str(p),
        "files": [str(f) for f in files if f.exists()],
        "counters": persisted or dict(recount),
        "in_files": dict(recount),
        "refusals_by_reason": dict(refusals.most_common(20)),
    }
