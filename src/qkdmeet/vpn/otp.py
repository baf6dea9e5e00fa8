"""One-time-pad XOR: the plain reference of the data path's pad.

The gateway no longer calls it: both directions XOR inside the numba kernels
(:mod:`qkdmeet.vpn.fastpath` per packet, :mod:`qkdmeet.vpn.pump` batched),
which also tag the packet in the same pass. ``xor`` is what those kernels are
tested against (``tests/vpn/test_fastpath.py``, ``tests/vpn/test_wire.py``).
It uses the ``int.from_bytes`` route, which measured (CPython 3.11, 1,400-byte
packets) faster than numpy for single packets: numpy pays ~1 µs of call
overhead per array while a big-int XOR of 1,400 bytes is a single C loop.
"""

from __future__ import annotations


def xor(data: bytes | bytearray | memoryview, pad: bytes | bytearray | memoryview) -> bytes:
    """``data XOR pad``; ``pad`` must be exactly as long as ``data``."""
    n = len(data)
    if len(pad) != n:
        raise ValueError(f"pad is {len(pad)} bytes for {n} bytes of data")
    if n == 0:
        return b""
    return (int.from_bytes(data, "little") ^ int.from_bytes(pad, "little")).to_bytes(n, "little")
