"""Link-model benchmark: modelled key rates (Toshiba preset, Lim et al. 2014 Fig. 1), event
sampling throughput and eavesdropper detection. Prints one JSON object with --json.

Usage: .venv/bin/python benchmarks/bench_qkd_model.py --json [--quick]
"""

from __future__ import annotations

import sys

from qkdmeet.qkd.model_bench import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
