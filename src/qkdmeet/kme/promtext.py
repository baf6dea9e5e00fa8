"""Prometheus text exposition (format 0.0.4) with ``# HELP`` and ``# TYPE``.

``prometheus_client`` is not a dependency of this project; this writes the
same format: one family per metric name, HELP and TYPE lines first, label
values escaped, counters named ``*_total``, units in names (``_bits``,
``_bytes``, ``_seconds``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = Mapping[str, str]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


class Exposition:
    """Families of samples, written in the order added."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._names: set[str] = set()

    def family(
        self,
        name: str,
        kind: str,
        help_text: str,
        samples: Iterable[tuple[Labels, float]] | float,
    ) -> None:
        if kind not in ("counter", "gauge", "untyped"):
            raise ValueError(f"unknown metric type {kind!r}")
        if kind == "counter" and not name.endswith("_total"):
            raise ValueError(f"counter {name!r} must end in _total")
        if name in self._names:
            raise ValueError(f"metric {name!r} written twice")
        self._names.add(name)
        # the family name of a counter is without _total (OpenMetrics); 0.0.4 takes both
        self._lines.append(f"# HELP {name} {_help(help_text)}")
        self._lines.append(f"# TYPE {name} {kind}")
        if isinstance(samples, int | float):
            samples = [({}, samples)]
        for labels, value in samples:
            if labels:
                inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in sorted(labels.items()))
                self._lines.append(f"{name}{{{inner}}} {_value(value)}")
            else:
                self._lines.append(f"{name} {_value(value)}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"
