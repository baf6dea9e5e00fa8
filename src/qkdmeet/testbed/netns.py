"""Thin wrappers over iproute2 for network namespaces and veth pairs.

Every function runs ``ip`` (root needed) and raises :class:`NetnsError`
with the command's stderr when it fails. ``argv_in(ns, argv)`` and
:func:`spawn` start processes inside a namespace (``ip netns exec``), which
is how the demo runs its hosts, KMEs and gateways.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

from qkdmeet.errors import TestbedError


class NetnsError(TestbedError, RuntimeError):
    """An ``ip`` command failed."""


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        denied = "Operation not permitted" in proc.stderr or os.geteuid() != 0
        raise NetnsError(
            f"{' '.join(argv)}: {proc.stderr.strip()}",
            hint="run it as root: the testbed makes network namespaces" if denied else None,
        )
    return proc.stdout


def list_namespaces() -> list[str]:
    out = ip("netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def exists(ns: str) -> bool:
    return ns in list_namespaces()


def add(ns: str) -> None:
    if not exists(ns):
        ip("netns", "add", ns)
    ip("link", "set", "lo", "up", ns=ns)


def pids(ns: str) -> list[int]:
    out = ip("netns", "pids", ns, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def delete(ns: str) -> None:
    """Kill the processes inside ``ns`` and remove it (no error if absent)."""
    if not exists(ns):
        return
    for pid in pids(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    ip("netns", "del", ns, check=False)


def veth(a_ns: str, a_dev: str, b_ns: str, b_dev: str) -> None:
    """A veth pair with one end in each namespace."""
    ip("link", "add", a_dev, "netns", a_ns, "type", "veth", "peer", "name", b_dev, "netns", b_ns)


def address(ns: str, dev: str, cidr: str, *, mtu: int | None = None) -> None:
    ip("addr", "replace", cidr, "dev", dev, ns=ns)
    if mtu is not None:
        ip("link", "set", "dev", dev, "mtu", str(mtu), ns=ns)
    ip("link", "set", "dev", dev, "up", ns=ns)


def route(ns: str, dest: str, via: str) -> None:
    ip("route", "replace", dest, "via", via, ns=ns)


def sysctl(ns: str, key: str, value: str) -> None:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={value}"],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise NetnsError(f"sysctl {key} in {ns}: {proc.stderr.strip()}")


def argv_in(ns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *argv]


def spawn(ns: str, argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """Start ``argv`` inside ``ns``; the caller owns the process."""
    return subprocess.Popen(argv_in(ns, argv), **popen)


def run_in(ns: str, argv: Sequence[str], *, timeout: float = 30, check: bool = True,
           input_bytes: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` inside ``ns`` to completion."""
    proc = subprocess.run(argv_in(ns, argv), capture_output=True, timeout=timeout,
                          check=False, input=input_bytes)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} in {ns}: {proc.stderr.decode(errors='replace')}")
    return proc
