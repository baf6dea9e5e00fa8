"""Stage benchmarks of the QKD post-processing kernels (prints JSON with --json)."""

import sys

from qkdmeet.qkd.kernels.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
