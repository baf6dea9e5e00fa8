"""Sliding anti-replay window over 64-bit sequence numbers (RFC 6479 style,
as wireguard-go's ``replay`` package).

Contract: call :meth:`ReplayWindow.check` before the (costly) tag check to
reject early, and :meth:`ReplayWindow.accept` only after the packet
authenticated; ``accept`` re-checks and marks the number as seen. A number is
accepted once; numbers more than ``size`` behind the highest seen are too old.
Reordering inside the window is accepted, duplicates are not.
"""

from __future__ import annotations

from qkdmeet.vpn.constants import REPLAY_WINDOW_BITS


class ReplayWindow:
    """Accepts each sequence number at most once, within ``size`` of the newest."""

    __slots__ = ("_bits", "_highest", "_size", "_started")

    def __init__(self, size: int = REPLAY_WINDOW_BITS) -> None:
        if size <= 0:
            raise ValueError("window size must be positive")
        self._size = size
        self._bits = 0  # bit i set: number (highest - i) seen
        self._highest = 0
        self._started = False

    @property
    def highest(self) -> int:
        return self._highest

    def check(self, seq: int) -> str:
        """``""`` when ``seq`` would be accepted, else ``"replayed"``/``"too_old"``."""
        if not self._started or seq > self._highest:
            return ""
        behind = self._highest - seq
        if behind >= self._size:
            return "too_old"
        if (self._bits >> behind) & 1:
            return "replayed"
        return ""

    def accept(self, seq: int) -> str:
        """Mark ``seq`` seen; returns ``""`` or the reason it is refused."""
        reason = self.check(seq)
        if reason:
            return reason
        if not self._started:
            self._started = True
            self._highest = seq
            self._bits = 1
        elif seq > self._highest:
            shift = seq - self._highest
            if shift < self._size:
                self._bits = ((self._bits << shift) | 1) & ((1 << self._size) - 1)
            else:
                self._bits = 1
            self._highest = seq
        else:
            self._bits |= 1 << (self._highest - seq)
        return ""
