"""Link-model benchmark: modelled key rates net of authentication, with the gross rate and the
authentication share beside them (Toshiba preset, per block size; Lim et al. 2014 Fig. 1), event
sampling throughput and eavesdropper detection. Prints one JSON object with --json.

Usage: .venv/bin/python benchmarks/bench_qkd_model.py --json [--quick]
"""

from __future__ import annotations

import sys

from qkdmeet.bench.qkd_model import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
