"""Conference benchmark: server CPU per forwarded stream, largest panel, latency, bitrates.

The panel sweep measures the server's capacity with pre-encoded publishers
(VP8/Opus replay, receivers count without decoding); latency and bitrates come
from a separate run with live encoders. A bot that fails or times out fails its
panel size with the reason (the output says the largest passing size, the first
failing one and why); the script always ends with its JSON. ``--profile`` splits
the server's CPU per forwarded packet by stage, ``--repeat K`` adds medians.
See ``qkdmeet.conference.bench``.
"""

import sys

from qkdmeet.conference.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
