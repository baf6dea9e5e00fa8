"""QKD layer benchmark: kernel stage throughputs, model fidelity, end-to-end real-time distilled
secure key rate (both actors, authenticated channel) and its fraction of the infinite-key ceiling.
Prints one JSON object with --json.

Usage: flock /tmp/qkdmeet-bench.lock .venv/bin/python benchmarks/bench_qkd.py --json [--quick]
"""

from __future__ import annotations

import sys

from qkdmeet.bench.qkd import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
