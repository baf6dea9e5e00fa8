"""The demo's child processes: each started in a namespace, logged, owned, stopped.

Every process is started in its own session (process group) with output to
``<logs>/<name>.log``; :meth:`ProcessSet.stop_all` stops them in reverse
start order (SIGTERM to the group, SIGKILL after a grace period), so nothing
outlives the demo even when it is interrupted. ``Topology.down`` then kills
whatever is still inside the namespaces, as a second line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qkdmeet.errors import DemoError
from qkdmeet.testbed import netns

log = logging.getLogger(__name__)


class ProcessError(DemoError, RuntimeError):
    """A child process failed to start or became ready too late."""


@dataclass(slots=True)
class Owned:
    name: str
    ns: str | None
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, nbytes: int = 2000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-nbytes:].decode(errors="replace")


def qkdmeet_argv(*args: str) -> list[str]:
    """``python -m qkdmeet ARGS`` with this interpreter."""
    return [sys.executable, "-m", "qkdmeet", *args]


class ProcessSet:
    """The processes one demo run owns."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._procs: list[Owned] = []

    def __iter__(self) -> Iterator[Owned]:
        return iter(list(self._procs))

    def get(self, name: str) -> Owned | None:
        for p in reversed(self._procs):
            if p.name == name:
                return p
        return None

    def spawn(self, name: str, ns: str | None, argv: Sequence[str]) -> Owned:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with log_path.open("ab") as out:
            full = netns.argv_in(ns, argv) if ns else list(argv)
            proc: subprocess.Popen[bytes] = subprocess.Popen(
                full, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                start_new_session=True, env=env,
            )
        owned = Owned(name, ns, proc, log_path)
        self._procs.append(owned)
        log.info("started %s (pid %d) in %s", name, proc.pid, ns or "host")
        return owned

    def adopt(self, name: str, ns: str | None, proc: subprocess.Popen[bytes],
              log_path: Path) -> Owned:
        """Own a process started elsewhere (e.g. by ``Topology.start_gateway``)."""
        owned = Owned(name, ns, proc, log_path)
        self._procs.append(owned)
        return owned

    def wait_ready(self, owned: Owned, ready: Callable[[], bool], timeout: float) -> None:
        """Poll ``ready`` until true; raise with the log's tail if the process dies first."""
        deadline = time.monotonic() + timeout
        while not ready():
            if not owned.alive:
                raise ProcessError(
                    f"{owned.name} exited with {owned.proc.returncode}:\n{owned.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"{owned.name} not ready after {timeout:.0f} s:\n{owned.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self, owned: Owned, grace: float = 8.0) -> int | None:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds; its exit code."""
        if owned.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(owned.proc.pid, signal.SIGTERM)
            try:
                owned.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s: killed", owned.name, grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(owned.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            owned.proc.wait(timeout=5)
        with contextlib.suppress(ValueError):
            self._procs.remove(owned)
        return owned.proc.returncode

    def kill(self, owned: Owned) -> None:
        """SIGKILL at once (a crash, for the gateway-restart scenario)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(owned.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            owned.proc.wait(timeout=5)
        with contextlib.suppress(ValueError):
            self._procs.remove(owned)

    def stop_all(self) -> None:
        for owned in reversed(list(self._procs)):
            self.stop(owned)
