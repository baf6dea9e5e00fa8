"""The field test's table as text, CSV and JSON files."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from qkdmeet.report.accounting import FIELD_TEST, FieldTestDirection, RunReport


def _fmt_rate(kbps: float) -> str:
    return f"{kbps / 1e3:.2f} Mb/s" if kbps >= 1000 else f"{kbps:.0f} kb/s"


def render_table(report: RunReport) -> str:
    """A human-readable table: this run next to the field test."""
    lines = [
        f"Key used over {report.duration_s:.0f} s "
        f"(field test: {FIELD_TEST['duration_s'] / 60:.0f} min)",
        f"{'direction':<34} {'key used':>10} {'avg rate':>11} {'payload':>10} "
        f"{'packets':>9}  drops",
    ]
    for d in report.directions:
        drops = ", ".join(f"{k}={v}" for k, v in d.drops.items() if v) or "none"
        lines.append(
            f"{d.name:<34} {d.key_bytes / 1e6:>7.2f} MB {_fmt_rate(d.key_kbps):>11} "
            f"{d.payload_bytes / 1e6:>7.2f} MB {d.packets:>9}  {drops}"
        )
    ft: list[FieldTestDirection] = FIELD_TEST["directions"]
    for row in ft:
        lines.append(f"{'field test: ' + row.name:<34} {row.key_mb:>7.0f} MB "
                     f"{_fmt_rate(row.key_kbps):>11}")
    q = report.qkd
    qber = "n/a" if math.isnan(q.qber) else f"{100 * q.qber:.2f} %"
    lines.append(
        f"QKD link: generated {q.generated_bytes / 1e6:.2f} MB "
        f"({q.secure_key_rate_bps / 1e6:.2f} Mb/s), QBER {qber}, "
        f"blocks {q.blocks} ({q.aborted_blocks} aborted)"
    )
    lines.append(f"margin (generated - consumed): {report.margin_bps / 1e6:+.2f} Mb/s")
    for alarm in report.alarms:
        lines.append(f"ALARM at {alarm.get('t', 0):.0f} s: {alarm.get('message', '')}")
    return "\n".join(lines)


def render_csv(report: RunReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    reasons = sorted({r for d in report.directions for r in d.drops})
    w.writerow(["direction", "duration_s", "key_bytes", "key_mb", "key_kbps", "payload_bytes",
                "packets", "key_buffered_bytes", *[f"drops_{r}" for r in reasons]])
    for d in report.directions:
        w.writerow([d.name, f"{d.duration_s:.3f}", d.key_bytes, f"{d.key_bytes / 1e6:.6f}",
                    f"{d.key_kbps:.3f}", d.payload_bytes, d.packets, d.key_buffered_bytes,
                    *[d.drops.get(r, 0) for r in reasons]])
    q = report.qkd
    w.writerow(["qkd_generated", f"{q.duration_s:.3f}", q.generated_bytes,
                f"{q.generated_bytes / 1e6:.6f}", f"{q.secure_key_rate_bps / 1e3:.3f}", "", "", ""])
    return buf.getvalue()


def write_tables(report: RunReport, outdir: Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.csv`` and ``report.txt`` into ``outdir``."""
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": outdir / "report.json",
        "csv": outdir / "report.csv",
        "txt": outdir / "report.txt",
    }
    paths["json"].write_text(json.dumps(report.as_dict(with_series=True), indent=2, default=_nan))
    paths["csv"].write_text(render_csv(report))
    paths["txt"].write_text(render_table(report) + "\n")
    return paths


def _nan(obj: object) -> object:
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
