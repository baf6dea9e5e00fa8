"""KME benchmark: ETSI 014 key throughput, enc_keys latency, kill -9 restart."""

import sys

from qkdmeet.bench.kme import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
