"""UDP segmentation offload (GSO) and receive offload (GRO) helpers, Linux.

Python has no ``sendmmsg``/``recvmmsg``; the kernel's UDP offloads batch
instead: one ``sendmsg`` with a ``UDP_SEGMENT`` control message sends a run of
equal-sized datagrams (the last may be shorter), and a socket with ``UDP_GRO``
receives such runs as one buffer plus the segment size. Used by the VPN's WAN
bind (``vpn/transport.py``). (A frame-per-sendmsg loop for the conference
server's forwarding senders was tried and measured no change in the server's
CPU per forwarded stream, 0.0093-0.0094 with it, 0.0091-0.0097 without, at a
panel of 6: removed.)
"""

from __future__ import annotations

import socket
import struct

#: Linux socket options (linux/udp.h), absent from Python's socket module.
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO = getattr(socket, "UDP_GRO", 104)
#: The kernel's limits on one GSO send: segments, and bytes of UDP payload.
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65_000
GRO_CMSG_SPACE = socket.CMSG_SPACE(4)


def segment_cmsg(size: int) -> list[tuple[int, int, bytes]]:
    """The ancillary data of a GSO ``sendmsg`` whose segments are ``size`` bytes."""
    return [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]


def gso_runs(datagrams: list[bytes]) -> list[tuple[int, int]]:
    """Split ``datagrams`` into ``(start, end)`` runs that one GSO send can carry.

    A run's datagrams all have the first one's size, except that the last may
    be shorter (the kernel cuts the buffer at the segment size); at most
    :data:`GSO_MAX_SEGMENTS` and :data:`GSO_MAX_BYTES` per run. Order is kept.
    """
    runs = []
    i, n = 0, len(datagrams)
    while i < n:
        size = len(datagrams[i])
        total, j = size, i + 1
        while j < n and j - i < GSO_MAX_SEGMENTS:
            s = len(datagrams[j])
            if s > size or total + s > GSO_MAX_BYTES:
                break
            total += s
            j += 1
            if s < size:
                break  # a shorter datagram ends the run
        runs.append((i, j))
        i = j
    return runs


def split_gro(data: bytes, segment: int) -> list[bytes]:
    """The datagrams of one GRO buffer of ``segment``-byte segments (last may be short)."""
    if segment <= 0 or len(data) <= segment:
        return [data]
    return [data[k : k + segment] for k in range(0, len(data), segment)]
