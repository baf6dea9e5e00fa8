"""QKD-VPN benchmarks: ``python benchmarks/bench_vpn.py --json`` (root for the testbed part)."""

import sys

from qkdmeet.bench.vpn import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
