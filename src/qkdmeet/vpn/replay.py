"""Sliding anti-replay window over 64-bit sequence numbers (RFC 6479 style,
as wireguard-go's ``replay`` package).

Contract: call :meth:`ReplayWindow.check` before the (costly) tag check to
reject early, and :meth:`ReplayWindow.accept` only after the packet
authenticated; ``accept`` re-checks and marks the number as seen. A number is
accepted once; numbers ``size`` or more behind the highest seen are too old.
Reordering inside the window is accepted, duplicates are not.

The state is two numpy arrays (a ring of ``size`` flags indexed by number
modulo ``size``, and ``[highest, started]``) handled by the kernels
:func:`window_check` and :func:`window_accept`, so that the batched data path
(:mod:`qkdmeet.vpn.pump`) and this class share one window.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from qkdmeet.vpn.constants import REPLAY_WINDOW_BITS

#: Results of the kernels.
OK, REPLAYED, TOO_OLD = 0, 1, 2
_REASONS = ("", "replayed", "too_old")


@numba.njit(cache=True, nogil=True)
def window_check(ring: npt.NDArray[np.uint8], state: npt.NDArray[np.uint64], seq: np.uint64
                 ) -> int:
    """:data:`OK` when ``seq`` would be accepted, else :data:`REPLAYED` / :data:`TOO_OLD`."""
    highest = state[0]
    if state[1] == 0 or seq > highest:
        return OK
    if highest - seq >= np.uint64(ring.size):
        return TOO_OLD
    if ring[seq % np.uint64(ring.size)]:
        return REPLAYED
    return OK


@numba.njit(cache=True, nogil=True)
def window_accept(ring: npt.NDArray[np.uint8], state: npt.NDArray[np.uint64], seq: np.uint64
                  ) -> int:
    """Mark ``seq`` seen; :data:`OK`, or the reason it is refused (nothing changed then)."""
    reason = window_check(ring, state, seq)
    if reason != OK:
        return reason
    size = np.uint64(ring.size)
    if state[1] == 0:
        ring[:] = 0
        state[1] = 1
        state[0] = seq
    elif seq > state[0]:
        # the numbers between the old highest and seq leave the ring unseen
        shift = seq - state[0]
        if shift >= size:
            ring[:] = 0
        else:
            for i in range(np.uint64(1), shift + np.uint64(1)):
                ring[(state[0] + i) % size] = 0
        state[0] = seq
    ring[seq % size] = 1
    return OK


class ReplayWindow:
    """Accepts each sequence number at most once, within ``size`` of the newest."""

    __slots__ = ("ring", "state")

    def __init__(self, size: int = REPLAY_WINDOW_BITS) -> None:
        if size <= 0:
            raise ValueError("window size must be positive")
        #: flag of number n at n % size; ``state`` is [highest, started]
        self.ring = np.zeros(size, np.uint8)
        self.state = np.zeros(2, np.uint64)

    @property
    def highest(self) -> int:
        return int(self.state[0])

    def check(self, seq: int) -> str:
        """``""`` when ``seq`` would be accepted, else ``"replayed"``/``"too_old"``."""
        return _REASONS[window_check(self.ring, self.state, np.uint64(seq))]

    def accept(self, seq: int) -> str:
        """Mark ``seq`` seen; returns ``""`` or the reason it is refused."""
        return _REASONS[window_accept(self.ring, self.state, np.uint64(seq))]
