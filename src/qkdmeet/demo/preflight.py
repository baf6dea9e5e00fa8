"""What the demo needs from the machine, checked before anything is built.

Each check returns a precise message naming what is missing and how to get
it, so that ``qkdmeet demo`` on an unsuitable machine says exactly why it
cannot run instead of failing half-way through building the testbed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Missing:
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}: {self.fix}"


def _netns_works() -> bool:
    name = f"qkm-preflight-{os.getpid()}"
    try:
        add = subprocess.run(["ip", "netns", "add", name], capture_output=True, timeout=10)
        if add.returncode != 0:
            return False
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        return True
    except (OSError, subprocess.SubprocessError):
        return False


def check_demo_host() -> list[Missing]:
    """Everything missing for the two-site demo on this host (empty when it can run)."""
    missing: list[Missing] = []
    if os.name != "posix" or not os.path.exists("/proc/self/ns/net"):
        missing.append(Missing("Linux network namespaces", "run the demo on Linux"))
        return missing
    if os.geteuid() != 0:
        missing.append(Missing(
            "root privileges",
            "the demo creates network namespaces, veth pairs and TUN devices; "
            "run it as root (e.g. `sudo .venv/bin/qkdmeet demo`)",
        ))
    if shutil.which("ip") is None:
        missing.append(Missing("the `ip` command (iproute2)", "apt-get install iproute2"))
    if not os.path.exists("/dev/net/tun"):
        missing.append(Missing(
            "/dev/net/tun",
            "load the tun module (`modprobe tun`) or give the container the TUN device",
        ))
    if not missing and not _netns_works():
        missing.append(Missing(
            "permission to create network namespaces",
            "`ip netns add` failed: in a container, grant CAP_SYS_ADMIN/CAP_NET_ADMIN",
        ))
    return missing
