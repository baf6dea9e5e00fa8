"""Types shared by the ETSI GS QKD 014 server, its client and the key consumers.

A :class:`KeySupplier` is what an SAE (the VPN gateway) needs from key
management: as master, new keys with key IDs for a slave SAE; as slave, the
same keys by key ID. :class:`qkdmeet.kme.client.EtsiClient` implements it over
the ETSI 014 REST API with mutual TLS; tests may implement it in memory.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Key:
    """One key as ETSI 014 delivers it: a UUID key ID and the key bytes."""

    key_id: uuid.UUID
    key: bytes = field(repr=False)

    @property
    def size_bits(self) -> int:
        return len(self.key) * 8


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """The ETSI 014 Status object (sizes in bits)."""

    source_kme_id: str
    target_kme_id: str
    master_sae_id: str
    slave_sae_id: str
    key_size: int
    stored_key_count: int
    max_key_count: int
    max_key_per_request: int
    max_key_size: int
    min_key_size: int
    max_sae_id_count: int = 0


@runtime_checkable
class KeySupplier(Protocol):
    """Key for one SAE, as ETSI 014 master (``enc_keys``) and slave (``dec_keys``)."""

    async def status(self, slave_sae_id: str) -> KeyStatus: ...

    async def enc_keys(self, slave_sae_id: str, number: int, size_bits: int) -> list[Key]: ...

    async def dec_keys(self, master_sae_id: str, key_ids: Sequence[uuid.UUID]) -> list[Key]: ...
