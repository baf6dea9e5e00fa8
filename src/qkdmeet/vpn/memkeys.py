"""In-memory, pair-consistent key supply for tests and benchmarks.

:class:`MemoryKeyPair` holds one pool of key per direction between two SAEs
and gives each SAE a :class:`~qkdmeet.kme.types.KeySupplier` view: a key that
the master gets from ``enc_keys`` can be fetched by the slave's ``dec_keys``
exactly once, as with an ETSI 014 KME pair. The pool has a byte budget
(``refill`` adds to it) so tests can exhaust key and give it back.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence

from qkdmeet.errors import VpnError
from qkdmeet.kme.types import Key, KeyStatus


class KeySupplyError(VpnError):
    """The key supply cannot serve a request (exhausted, unknown key ID)."""


class _Direction:
    def __init__(self, budget: int | None) -> None:
        self.budget = budget  # bytes the master may still take; None: unlimited
        self.issued: dict[uuid.UUID, bytes] = {}
        self.delivered = 0


class MemoryKeyPair:
    """Two SAEs sharing key in both directions, like two KMEs over one QKD link."""

    def __init__(self, sae_a: str, sae_b: str, *, budget_bytes: int | None = None) -> None:
        if sae_a == sae_b:
            raise ValueError("the two SAE IDs must differ")
        self.sae_a, self.sae_b = sae_a, sae_b
        self._dirs = {
            (sae_a, sae_b): _Direction(budget_bytes),
            (sae_b, sae_a): _Direction(budget_bytes),
        }
        self.failing = False

    def supplier(self, sae_id: str) -> MemoryKeySupplier:
        if sae_id not in (self.sae_a, self.sae_b):
            raise ValueError(f"unknown SAE {sae_id!r}")
        return MemoryKeySupplier(self, sae_id)

    def direction(self, master: str, slave: str) -> _Direction:
        try:
            return self._dirs[(master, slave)]
        except KeyError:
            raise KeySupplyError(f"no key between {master!r} and {slave!r}") from None

    def refill(self, master: str, slave: str, nbytes: int) -> None:
        d = self.direction(master, slave)
        d.budget = nbytes if d.budget is None else d.budget + nbytes

    def budget(self, master: str, slave: str) -> int | None:
        return self.direction(master, slave).budget


class MemoryKeySupplier:
    """One SAE's view of a :class:`MemoryKeyPair` (implements ``KeySupplier``)."""

    def __init__(self, pair: MemoryKeyPair, sae_id: str) -> None:
        self._pair = pair
        self.sae_id = sae_id

    async def status(self, slave_sae_id: str) -> KeyStatus:
        d = self._pair.direction(self.sae_id, slave_sae_id)
        return KeyStatus(
            source_kme_id="mem-" + self.sae_id,
            target_kme_id="mem-" + slave_sae_id,
            master_sae_id=self.sae_id,
            slave_sae_id=slave_sae_id,
            key_size=8 * 65536,
            # the budget in keys of key_size bits; unlimited reads as max_key_count
            stored_key_count=(1 << 20) if d.budget is None else d.budget // 65536,
            max_key_count=1 << 20,
            max_key_per_request=128,
            max_key_size=8 * (1 << 24),
            min_key_size=64,
        )

    async def enc_keys(self, slave_sae_id: str, number: int, size_bits: int) -> list[Key]:
        if self._pair.failing:
            raise KeySupplyError("key supply down")
        if number < 1 or size_bits < 8 or size_bits % 8:
            raise KeySupplyError(f"bad request: number={number} size={size_bits}")
        d = self._pair.direction(self.sae_id, slave_sae_id)
        size = size_bits // 8
        if d.budget is not None:
            number = min(number, d.budget // size)
            if number == 0:
                raise KeySupplyError("insufficient key")
            d.budget -= number * size
        keys = [Key(uuid.uuid4(), os.urandom(size)) for _ in range(number)]
        for k in keys:
            d.issued[k.key_id] = k.key
        d.delivered += number * size
        return keys

    async def dec_keys(self, master_sae_id: str, key_ids: Sequence[uuid.UUID]) -> list[Key]:
        if self._pair.failing:
            raise KeySupplyError("key supply down")
        d = self._pair.direction(master_sae_id, self.sae_id)
        missing = [k for k in key_ids if k not in d.issued]
        if missing:
            raise KeySupplyError(f"unknown key IDs: {missing[:3]}")
        return [Key(k, d.issued.pop(k)) for k in key_ids]
