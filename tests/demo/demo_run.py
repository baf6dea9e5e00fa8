"""Running ``qkdmeet demo`` as the end-to-end tests do: a subprocess with a JSON report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_demo(out: Path, prefix: str, seconds: int, *extra: str,
             timeout: float) -> subprocess.CompletedProcess[bytes]:
    """``qkdmeet demo --seconds N --prefix P [extra] --out DIR --json --quiet``; it must
    have printed its report (stderr's tail is the failure message otherwise)."""
    proc = subprocess.run(
        [sys.executable, "-m", "qkdmeet", "demo", "--seconds", str(seconds), "--prefix", prefix,
         *extra, "--out", str(out), "--json", "--quiet"],
        capture_output=True, timeout=timeout, check=False,
    )
    assert proc.stdout, proc.stderr.decode(errors="replace")[-3000:]
    return proc
