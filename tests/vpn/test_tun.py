"""The Linux TUN device in a throwaway namespace (root)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root

SCRIPT = r"""
import asyncio, socket, struct, subprocess, sys
from qkdmeet.vpn.tun import TunDevice

async def main():
    tun = TunDevice("qkmtest0")
    tun.add_address("10.77.0.1/24")
    tun.add_route("10.78.0.0/24")
    got = []
    tun.open(got.extend)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"x" * 1342, ("10.78.0.5", 9))
    for _ in range(100):
        if any(p[0] >> 4 == 4 for p in got):
            break
        await asyncio.sleep(0.01)
    pkt = next(p for p in got if p[0] >> 4 == 4)
    mtu = int(open("/sys/class/net/qkmtest0/mtu").read())
    # a packet written to the TUN reaches a local socket
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind(("10.77.0.1", 5555))
    r.settimeout(2)
    payload = b"from-tun"
    udp = struct.pack("!HHHH", 4444, 5555, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                      socket.inet_aton("10.78.0.9"), socket.inet_aton("10.77.0.1"))
    csum = sum(struct.unpack("!10H", hdr))
    csum = (csum >> 16) + (csum & 0xFFFF)
    hdr = hdr[:10] + struct.pack("!H", ~(csum + (csum >> 16)) & 0xFFFF) + hdr[12:]
    subprocess.run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"], check=False)
    subprocess.run(["sysctl", "-qw", "net.ipv4.conf.qkmtest0.rp_filter=0"], check=False)
    tun.write(hdr + udp)
    data = r.recv(100)
    tun.close()
    print(len(pkt), mtu, data.decode())

asyncio.run(main())
"""


def test_tun_read_write_and_mtu() -> None:
    ns = f"qkmtun{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", SCRIPT],
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        size, mtu, text = out.stdout.split()
        assert int(size) == 1370  # a WebRTC-sized IP packet arrives whole
        assert int(mtu) == 1408
        assert text == "from-tun"
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_bad_name() -> None:
    from qkdmeet.vpn.tun import TunDevice

    with pytest.raises(ValueError):
        TunDevice("x" * 16)
