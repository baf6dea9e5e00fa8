"""Traffic probes run inside testbed namespaces: ICMP echo, UDP and TCP echo,
UDP load with one-way latency, TCP bulk transfer.

``python -m qkdmeet.testbed.probe COMMAND ...`` prints one JSON object. All
namespaces share the kernel's CLOCK_MONOTONIC, so one-way latency is the
receiver's clock minus the send time the sender wrote into the packet.
Payloads are random and checked end to end (``intact``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import socket
import struct
import sys
import time
from typing import Any

_IP_MTU_DISCOVER = 10
_IP_PMTUDISC_DO = 2
_STAMP = struct.Struct("!QQ")  # sequence, send time (ns, CLOCK_MONOTONIC)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return int(~s & 0xFFFF)


def ping(dst: str, count: int, size: int, timeout: float) -> dict[str, Any]:
    """ICMP echo with a random payload; counts replies whose payload is intact."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.settimeout(timeout)
    ident = os.getpid() & 0xFFFF
    received, intact, rtts = 0, 0, []
    for seq in range(count):
        payload = os.urandom(size)
        hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        pkt = struct.pack("!BBHHH", 8, 0, _checksum(hdr + payload), ident, seq) + payload
        t0 = time.monotonic()
        sock.sendto(pkt, (dst, 0))
        deadline = t0 + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                break
            ihl = (data[0] & 0x0F) * 4
            typ, _, _, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
            if typ == 0 and rid == ident and rseq == seq:
                received += 1
                rtts.append((time.monotonic() - t0) * 1000)
                intact += data[ihl + 8 :] == payload
                break
    return {"sent": count, "received": received, "intact": intact, "rtt_ms": rtts}


def udp_echo_server(port: int, seconds: float) -> dict[str, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(0.2)
    n, end = 0, time.monotonic() + seconds
    print(json.dumps({"ready": True}), flush=True)
    while time.monotonic() < end:
        try:
            data, addr = sock.recvfrom(65535)
        except TimeoutError:
            continue
        sock.sendto(data, addr)
        n += 1
    return {"echoed": n}


def udp_echo(
    dst: str, port: int, count: int, size: int, timeout: float, df: bool = False
) -> dict[str, Any]:
    """Echo ``count`` random datagrams; ``df``: forbid fragmentation (path MTU test)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if df:
        sock.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _IP_PMTUDISC_DO)
    sock.settimeout(timeout)
    got, intact = 0, 0
    for _ in range(count):
        payload = os.urandom(size)
        try:
            sock.sendto(payload, (dst, port))
        except OSError:  # EMSGSIZE with df: the path MTU is smaller
            continue
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            continue
        got += 1
        intact += data == payload
    return {"sent": count, "received": got, "intact": intact}


def tcp_echo_server(port: int, seconds: float) -> dict[str, Any]:
    srv = socket.create_server(("0.0.0.0", port))
    srv.settimeout(seconds)
    print(json.dumps({"ready": True}), flush=True)
    conn, _ = srv.accept()
    total = 0
    with conn:
        while chunk := conn.recv(65536):
            conn.sendall(chunk)
            total += len(chunk)
    return {"echoed_bytes": total}


def tcp_echo(dst: str, port: int, nbytes: int, timeout: float) -> dict[str, Any]:
    data = os.urandom(nbytes)
    sock = socket.create_connection((dst, port), timeout=timeout)
    back = bytearray()
    view = memoryview(data)
    sent = 0
    while sent < nbytes or len(back) < nbytes:
        if sent < nbytes:
            sock.settimeout(0.01)
            with contextlib.suppress(TimeoutError):  # send buffer full: read the echo first
                sent += sock.send(view[sent : sent + 16384])
        sock.settimeout(0.01 if sent < nbytes else timeout)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        back += chunk
    sock.close()
    return {
        "bytes": nbytes,
        "received": len(back),
        "intact": hashlib.sha256(back).digest() == hashlib.sha256(data).digest(),
    }


def udp_sink(port: int, seconds: float, idle: float) -> dict[str, Any]:
    """Count datagrams; one-way latency of each from its stamp."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("0.0.0.0", port))
    sock.settimeout(idle)
    print(json.dumps({"ready": True}), flush=True)
    lat: list[int] = []
    nbytes, first, last = 0, 0.0, 0.0
    end = time.monotonic() + seconds
    seen: set[int] = set()
    while time.monotonic() < end:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            if nbytes:
                break
            continue
        now = time.monotonic_ns()
        seq, sent_ns = _STAMP.unpack_from(data)
        if seq in seen:
            continue
        seen.add(seq)
        if not nbytes:
            first = now / 1e9
        last = now / 1e9
        nbytes += len(data)
        lat.append(now - sent_ns)
    lat.sort()
    span = last - first
    return {
        "packets": len(lat),
        "bytes": nbytes,
        "seconds": span,
        "mbps": nbytes * 8 / span / 1e6 if span > 0 else 0.0,
        "latency_us_p50": lat[len(lat) // 2] / 1000 if lat else None,
        "latency_us_p99": lat[int(len(lat) * 0.99)] / 1000 if lat else None,
    }


#: Below this interval between datagrams the load leaves in bursts (see udp_load).
BURST_BELOW_S = 0.0005


def udp_load(dst: str, port: int, seconds: float, size: int, mbps: float) -> dict[str, Any]:
    """Send stamped datagrams of ``size`` bytes at ``mbps`` (0: as fast as possible).

    The sender sleeps until the next datagram is due and then sends all that
    are due; below an interval of :data:`BURST_BELOW_S` it sleeps that long,
    so fast loads leave in bursts (about 11 datagrams at 250 Mb/s). It never
    spins: spinning on 45 µs intervals (250 Mb/s) took a whole core of this
    2-core testbed from the gateways under test, and spinning for the last
    200 µs before each datagram a fifth of a core at 10 Mb/s. A late wake-up
    only shifts send times; latency is measured from the stamp taken at send.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.connect((dst, port))
    filler = os.urandom(size - _STAMP.size)
    interval = size * 8 / (mbps * 1e6) if mbps > 0 else 0.0
    start = time.monotonic()
    end = start + seconds
    seq, errors = 0, 0
    send, pack, clock_ns = sock.send, _STAMP.pack, time.monotonic_ns
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = 1
        if interval:
            due = min(64, int((now - start) / interval) + 1 - seq)
            if due <= 0:
                time.sleep(max(start + seq * interval - now, min(interval, BURST_BELOW_S)))
                continue
        for _ in range(due):
            try:
                send(pack(seq, clock_ns()) + filler)
            except OSError:
                errors += 1
            seq += 1
    return {"sent": seq, "send_errors": errors, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m qkdmeet.testbed.probe")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("ping")
    a.add_argument("dst")
    a.add_argument("--count", type=int, default=3)
    a.add_argument("--size", type=int, default=56)
    a.add_argument("--timeout", type=float, default=2.0)
    for name in ("udp-echo-server", "tcp-echo-server"):
        s = sub.add_parser(name)
        s.add_argument("port", type=int)
        s.add_argument("--seconds", type=float, default=30)
    u = sub.add_parser("udp-echo")
    u.add_argument("dst")
    u.add_argument("port", type=int)
    u.add_argument("--count", type=int, default=5)
    u.add_argument("--size", type=int, default=1000)
    u.add_argument("--timeout", type=float, default=2.0)
    u.add_argument("--df", action="store_true", help="set Don't Fragment")
    t = sub.add_parser("tcp-echo")
    t.add_argument("dst")
    t.add_argument("port", type=int)
    t.add_argument("--bytes", type=int, default=1 << 20)
    t.add_argument("--timeout", type=float, default=10.0)
    k = sub.add_parser("udp-sink")
    k.add_argument("port", type=int)
    k.add_argument("--seconds", type=float, default=10)
    k.add_argument("--idle", type=float, default=1.0)
    ld = sub.add_parser("udp-load")
    ld.add_argument("dst")
    ld.add_argument("port", type=int)
    ld.add_argument("--seconds", type=float, default=3)
    ld.add_argument("--size", type=int, default=1200)
    ld.add_argument("--mbps", type=float, default=0.0)
    args = p.parse_args(argv)
    if args.cmd == "ping":
        out = ping(args.dst, args.count, args.size, args.timeout)
    elif args.cmd == "udp-echo-server":
        out = udp_echo_server(args.port, args.seconds)
    elif args.cmd == "tcp-echo-server":
        out = tcp_echo_server(args.port, args.seconds)
    elif args.cmd == "udp-echo":
        out = udp_echo(args.dst, args.port, args.count, args.size, args.timeout, args.df)
    elif args.cmd == "tcp-echo":
        out = tcp_echo(args.dst, args.port, args.bytes, args.timeout)
    elif args.cmd == "udp-sink":
        out = udp_sink(args.port, args.seconds, args.idle)
    else:
        out = udp_load(args.dst, args.port, args.seconds, args.size, args.mbps)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
