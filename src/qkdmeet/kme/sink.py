"""A :class:`qkdmeet.qkd.sink.KeySink` that appends the link's blocks to a KME's store."""

from __future__ import annotations

from qkdmeet.kme.store import KeyStore
from qkdmeet.qkd.sink import KeyBlock


class StoreSink:
    """Stores each block durably (one transaction) before ``put`` returns.

    A block already stored (same or lower ``block_id``, e.g. replayed after a
    restart) is counted in ``duplicates`` and ignored.
    """

    def __init__(self, store: KeyStore, link_id: str | None = None) -> None:
        self.store = store
        self.link_id = link_id
        self.duplicates = 0
        self.foreign = 0

    async def put(self, block: KeyBlock) -> None:
        if self.link_id is not None and block.link_id != self.link_id:
            self.foreign += 1
            return
        if not self.store.add_block(block.block_id, block.key):
            self.duplicates += 1
