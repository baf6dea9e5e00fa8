"""Conference benchmark: server CPU per forwarded stream, largest panel, latency, bitrates.

The panel sweep measures the server's capacity with pre-encoded publishers
(VP8/Opus replay, receivers count without decoding); latency and bitrates come
from a separate run with live encoders. See ``qkdmeet.conference.bench``.
"""

import sys

from qkdmeet.conference.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
