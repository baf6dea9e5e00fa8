"""Stage benchmarks of the QKD post-processing kernels (prints JSON with --json)."""

import sys

from qkdmeet.bench.qkd_kernels import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
