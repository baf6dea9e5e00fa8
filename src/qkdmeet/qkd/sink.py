"""The boundary between the QKD link and key management.

Both ends of a link hand each distilled key block to a :class:`KeySink` as soon
as the block completes. Blocks arrive in ``block_id`` order at each end; the
two ends agree on ``block_id`` (it is fixed by the protocol messages, not by
timing) and on the key bytes, so a KME at each site stores the same key under
the same identifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class KeyBlock:
    """One distilled secure key block, identical at both ends of the link.

    ``link_id`` names the QKD link (the pair of sites); ``block_id`` counts the
    link's blocks from 0 and is the same at both ends; ``key`` holds the final
    key, ``len(key) * 8`` bits (the distilled length rounded down to whole
    bytes); ``qber`` and ``phase_error_bound`` are that block's estimates.
    """

    link_id: str
    block_id: int
    key: bytes = field(repr=False)
    qber: float = 0.0
    phase_error_bound: float = 0.0
    created_at: float = 0.0

    @property
    def bits(self) -> int:
        return len(self.key) * 8


@runtime_checkable
class KeySink(Protocol):
    """Where a link endpoint puts its key blocks (a KME's key store, a file, a test list).

    ``put`` must store the block durably before it returns: once it returns, the
    link endpoint forgets the key.
    """

    async def put(self, block: KeyBlock) -> None: ...


class ListSink:
    """A :class:`KeySink` that keeps blocks in memory (tests, the CLI's summary)."""

    def __init__(self) -> None:
        self.blocks: list[KeyBlock] = []

    async def put(self, block: KeyBlock) -> None:
        self.blocks.append(block)
