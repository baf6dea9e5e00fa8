"""Gateways that negotiate with any ETSI 014 KME: key groups of small keys.

A vendor KME serves keys of its own sizes (typically 256 bits) and few per
request (typically at most 10), and answers 400 to anything else. The
gateway's key stream wants keys large enough for whole packets (a packet
never spans keys; every key spends its first 32 bytes on the hash keys).
:class:`GroupingSupplier` sits between the key stream and the KME's
:class:`~qkdmeet.kme.types.KeySupplier` and bridges the two:

* **negotiation**: before fetching it reads the KME's ``status`` (for the
  peer SAE: the same KME limits serve both directions) and plans ETSI
  requests within ``min_key_size``/``max_key_size``/``max_key_per_request``
  (:func:`plan`). A ``400`` re-reads ``status`` before the next request.
* **key groups**: when the wanted key is larger than ``max_key_size``, up to
  :data:`MAX_GROUP_MEMBERS` ETSI keys, in the order the KME delivered them,
  are concatenated into one key of the stream. Its ID is
  :func:`group_id`: a hash of its members' key IDs, so a group's ID binds its
  member list. The master sends the members in-band (a GROUP packet, one
  per group: key IDs on the wire as before, 16 bytes per member); the slave
  learns them (:meth:`GroupingSupplier.learn`) and fetches the members with
  ``dec_keys``. A key of one member only is the ETSI key itself, with its
  own ID: against a KME that serves the wanted size nothing changes.
* **pipelining**: the ETSI requests of a batch run concurrently, at most
  ``in_flight`` at once per gateway, so a KME that serves 10 keys of 256
  bits per request still feeds the tunnel; its round trip is hidden behind
  the others.

Never reused: a member delivered by ``enc_keys`` goes into exactly one group
(members left over from a partly failed batch wait, in memory, for the next
group and are never handed out twice); a slave's member fetched for a group
whose other members are not there yet is kept until the group completes (a
retry fetches only what is missing) or is forgotten (bounded), never put in
another group.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import uuid
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from qkdmeet.errors import VpnError
from qkdmeet.kme.types import Key, KeyStatus, KeySupplier
from qkdmeet.vpn.constants import KEY_HASH_BYTES, KEY_MASK_BYTES, TUN_MTU

#: Members of one key group at most: its GROUP packet (group ID and member
#: IDs, 16 bytes each) fits one inner packet of :data:`TUN_MTU` bytes.
MAX_GROUP_MEMBERS = (TUN_MTU - 16) // 16
#: Domain separation of :func:`group_id`.
GROUP_TAG = b"qkdmeet key group v1\x00"
#: ETSI requests a gateway keeps in flight to its KME at most (default).
DEFAULT_IN_FLIGHT = 16
#: Groups (and partly fetched groups) a supplier remembers.
REMEMBERED_GROUPS = 8192
#: Seconds a slave waits for the GROUP packet of a group it is asked to fetch.
GROUP_WAIT_SECONDS = 1.0
#: A key of the stream must carry one full inner packet.
MIN_STREAM_KEY_BYTES = KEY_HASH_BYTES + KEY_MASK_BYTES + TUN_MTU

T = TypeVar("T")


class NegotiationError(VpnError):
    """The KME's limits allow no key the tunnel can use."""


def group_id(members: Sequence[uuid.UUID]) -> uuid.UUID:
    """The ID of the group of ``members`` (in order): it binds the member list."""
    h = hashlib.sha256(GROUP_TAG)
    h.update(len(members).to_bytes(2, "big"))
    for m in members:
        h.update(m.bytes)
    return uuid.UUID(bytes=h.digest()[:16])


def group_body(gid: uuid.UUID, members: Sequence[uuid.UUID]) -> bytes:
    """Body of a GROUP packet: the group ID, then its members' IDs."""
    return gid.bytes + b"".join(m.bytes for m in members)


def parse_group(body: bytes | memoryview) -> tuple[uuid.UUID, tuple[uuid.UUID, ...]] | None:
    """Group ID and members of a GROUP body, or ``None`` when malformed or unbound."""
    n = len(body)
    if n % 16 or n < 32 or n > 16 * (MAX_GROUP_MEMBERS + 1):
        return None
    raw = bytes(body)
    gid = uuid.UUID(bytes=raw[:16])
    members = tuple(uuid.UUID(bytes=raw[i : i + 16]) for i in range(16, n, 16))
    if group_id(members) != gid:
        return None
    return gid, members


@dataclass(frozen=True, slots=True)
class Plan:
    """How to ask a KME for keys: ETSI key size, keys per group and per request."""

    etsi_bits: int
    members: int
    per_request: int

    @property
    def key_bits(self) -> int:
        """Size of one key of the stream (a group)."""
        return self.etsi_bits * self.members


def plan(status: KeyStatus, wanted_bits: int, *, min_bits: int = 8 * MIN_STREAM_KEY_BYTES) -> Plan:
    """ETSI requests within the KME's limits for stream keys of about ``wanted_bits``."""
    lo, hi = max(8, status.min_key_size), status.max_key_size
    per = max(1, status.max_key_per_request)
    if lo > hi:
        raise NegotiationError(f"KME reports min_key_size {lo} > max_key_size {hi}")
    if lo <= wanted_bits <= hi and wanted_bits % 8 == 0:
        return Plan(wanted_bits, 1, per)
    etsi = hi - hi % 8
    if etsi < lo:
        raise NegotiationError(f"no multiple of 8 bits in [{lo}, {hi}]")
    if wanted_bits < lo:
        etsi = -(-lo // 8) * 8
    members = max(1, min(MAX_GROUP_MEMBERS, math.ceil(wanted_bits / etsi)))
    members = max(members, min(MAX_GROUP_MEMBERS, math.ceil(min_bits / etsi)))
    if etsi * members < min_bits:
        raise NegotiationError(
            f"KME keys of at most {hi} bits, {MAX_GROUP_MEMBERS} per group, "
            f"cannot carry one {TUN_MTU}-byte packet"
        )
    return Plan(etsi, members, per)


class GroupingSupplier:
    """A :class:`KeySupplier` of stream keys made of the KME's keys (see the module)."""

    def __init__(self, inner: KeySupplier, *, in_flight: int = DEFAULT_IN_FLIGHT) -> None:
        self.inner = inner
        self._limit = asyncio.Semaphore(max(1, in_flight))
        self._plans: dict[str, Plan] = {}
        self._wanted: dict[str, int] = {}
        self._per_request: dict[str, int] = {}
        #: groups made here (master) or learned from the peer (slave): ID -> members
        self._groups: OrderedDict[uuid.UUID, tuple[uuid.UUID, ...]] = OrderedDict()
        #: master: keys delivered by enc_keys not yet in a group
        self._leftover: dict[str, list[Key]] = {}
        #: slave: members fetched for groups not yet complete
        self._partial: OrderedDict[uuid.UUID, Key] = OrderedDict()
        self._learned = asyncio.Event()  # set (and replaced) whenever a group is learned
        self.requests = 0
        self.request_errors = 0
        #: failed ETSI requests by exception class and first words of the message
        self.errors_by_kind: Counter[str] = Counter()
        self.negotiations = 0
        self.max_in_flight_seen = 0
        self._in_flight = 0

    # -- negotiation -------------------------------------------------------------
    async def status(self, slave_sae_id: str) -> KeyStatus:
        return await self.inner.status(slave_sae_id)

    async def negotiate(self, peer_sae_id: str, wanted_bits: int) -> Plan:
        """Read the KME's ``status`` and plan requests; the plan is kept per peer."""
        st = await self.inner.status(peer_sae_id)
        self.negotiations += 1
        self._per_request[peer_sae_id] = max(1, st.max_key_per_request)
        p = plan(st, wanted_bits)
        self._plans[peer_sae_id] = p
        self._wanted[peer_sae_id] = wanted_bits
        return p

    def plan_for(self, peer_sae_id: str) -> Plan | None:
        """The plan of the last negotiation for this peer (``None`` before it)."""
        return self._plans.get(peer_sae_id)

    async def _plan(self, peer: str, wanted_bits: int) -> Plan:
        p = self._plans.get(peer)
        if p is None:
            p = await self.negotiate(peer, self._wanted.get(peer, wanted_bits))
        return p

    def members(self, gid: uuid.UUID) -> tuple[uuid.UUID, ...] | None:
        """The members of a group made or learned here (``None`` for a plain key)."""
        return self._groups.get(gid)

    def learn(self, gid: uuid.UUID, members: Sequence[uuid.UUID]) -> bool:
        """Remember a group announced by the peer; False if ``gid`` does not bind ``members``."""
        members = tuple(members)
        if not 1 < len(members) <= MAX_GROUP_MEMBERS or group_id(members) != gid:
            return False
        self._remember(gid, members)
        self._learned.set()
        self._learned = asyncio.Event()
        return True

    def _remember(self, gid: uuid.UUID, members: tuple[uuid.UUID, ...]) -> None:
        self._groups[gid] = members
        self._groups.move_to_end(gid)
        while len(self._groups) > REMEMBERED_GROUPS:
            self._groups.popitem(last=False)

    @property
    def in_flight(self) -> int:
        """ETSI requests under way now."""
        return self._in_flight

    @property
    def held_bytes(self) -> int:
        """Key delivered by the KME that is in no key of the stream yet: members left
        over from a partly failed batch (master) or fetched for a group not yet
        complete (slave). Zero at rest when the KME answered every request."""
        return sum(len(k.key) for ks in self._leftover.values() for k in ks) + sum(
            len(k.key) for k in self._partial.values()
        )

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` once a request slot is free (the coroutine is made only then)."""
        async with self._limit:
            self._in_flight += 1
            self.max_in_flight_seen = max(self.max_in_flight_seen, self._in_flight)
            self.requests += 1
            try:
                return await fn()
            except Exception as exc:
                self.request_errors += 1
                self.errors_by_kind[f"{type(exc).__name__}: {str(exc)[:60]}"] += 1
                raise
            finally:
                self._in_flight -= 1

    def _forget_plan_on(self, peer: str, errors: Sequence[BaseException]) -> None:
        from qkdmeet.kme.client import KmeBadRequest  # a 400: the limits may have changed

        if any(isinstance(e, KmeBadRequest) for e in errors):
            self._plans.pop(peer, None)

    # -- master ------------------------------------------------------------------
    async def enc_keys(self, slave_sae_id: str, number: int, size_bits: int) -> list[Key]:
        """``number`` stream keys (fewer when the KME delivered fewer), each one group."""
        p = await self._plan(slave_sae_id, size_bits)
        if p.members == 1:
            counts = [min(p.per_request, number - i) for i in range(0, number, p.per_request)]
        else:
            have = len(self._leftover.get(slave_sae_id, ()))
            need = max(0, number * p.members - have)
            counts = [min(p.per_request, need - i) for i in range(0, need, p.per_request)]
        results = await asyncio.gather(
            *(self._call(partial(self.inner.enc_keys, slave_sae_id, n, p.etsi_bits))
              for n in counts),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        for e in errors:
            if isinstance(e, asyncio.CancelledError):
                raise e
        self._forget_plan_on(slave_sae_id, errors)
        got = [k for r in results if not isinstance(r, BaseException) for k in r]
        if p.members == 1:
            if not got and errors:
                raise errors[0]
            return got
        pool = self._leftover.setdefault(slave_sae_id, [])
        pool.extend(got)
        out: list[Key] = []
        while len(pool) >= p.members:
            members, pool[:] = pool[: p.members], pool[p.members :]
            ids = tuple(k.key_id for k in members)
            gid = group_id(ids)
            self._remember(gid, ids)
            out.append(Key(gid, b"".join(k.key for k in members)))
        if not out and errors:
            raise errors[0]
        return out

    # -- slave -------------------------------------------------------------------
    async def dec_keys(self, master_sae_id: str, key_ids: Sequence[uuid.UUID]) -> list[Key]:
        """The keys (plain or groups) by ID; a group is returned only when complete."""
        per = self._per_request.get(master_sae_id, 0)
        if not per:
            try:
                per = max(1, (await self.inner.status(master_sae_id)).max_key_per_request)
                self._per_request[master_sae_id] = per
            except Exception:  # the KME's status unknown: a limit vendor KMEs accept
                per = 10
        p = self._plans.get(master_sae_id)
        if p is not None and p.members > 1:
            # the peer sends only groups: an unknown ID is a group whose GROUP packet
            # is still on its way (a DATA packet overtook it); wait for it a little
            loop = asyncio.get_running_loop()
            deadline = loop.time() + GROUP_WAIT_SECONDS
            while any(k not in self._groups for k in key_ids) and loop.time() < deadline:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - loop.time()):
                        await self._learned.wait()
        plain = [k for k in key_ids if k not in self._groups]
        groups = {k: self._groups[k] for k in key_ids if k in self._groups}
        members = [m for ms in groups.values() for m in ms if m not in self._partial]
        # plain IDs apart: an unknown one fails its whole request, never a group's
        chunks = [members[i : i + per] for i in range(0, len(members), per)]
        chunks += [plain[i : i + per] for i in range(0, len(plain), per)]
        results = await asyncio.gather(
            *(self._call(partial(self.inner.dec_keys, master_sae_id, c)) for c in chunks),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        for e in errors:
            if isinstance(e, asyncio.CancelledError):
                raise e
        fetched = {k.key_id: k for r in results if not isinstance(r, BaseException) for k in r}
        plain_set = set(plain)
        out = [fetched[k] for k in plain if k in fetched]
        for k, key in fetched.items():
            if k not in plain_set:
                self._partial[k] = key
        for gid, members in groups.items():
            if all(m in self._partial for m in members):
                keys = [self._partial.pop(m) for m in members]
                self._groups.pop(gid, None)
                out.append(Key(gid, b"".join(k.key for k in keys)))
        while len(self._partial) > REMEMBERED_GROUPS:
            self._partial.popitem(last=False)
        if not out and errors:
            raise errors[0]
        return out
