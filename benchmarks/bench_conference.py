"""Conference benchmark: server CPU per forwarded stream, largest panel, latency, bitrates."""

import sys

from qkdmeet.conference.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
