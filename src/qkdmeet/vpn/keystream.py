"""ETSI 014 keys as an addressed stream of pad and mask bytes.

Addressing: a packet's key is ``(key ID, offset)``; ``key[0:32]`` of each key
is the Poly1305 hash key pair of every packet in that key; a packet takes
``32`` mask bytes then ``length`` pad bytes from ``offset`` on. A packet never
spans two keys: when the rest of the current key is too short, the rest is
discarded (counted) and the next key opened.

Master side (:class:`SenderKeyStream`): keys are fetched with ``enc_keys``
ahead of need by a background task that keeps ``prefetch_bytes`` buffered, so
the data path never waits on an HTTP round trip; :meth:`~SenderKeyStream.reserve`
is synchronous and returns ``None`` when no key is buffered (fail closed).

Slave side (:class:`ReceiverKeyStream`): key IDs arrive in-band (ANNOUNCE
packets list the master's next keys, and every DATA header names its key);
the slave fetches them with ``dec_keys`` in the background and keeps the last
:data:`OPEN_KEYS` keys in use open.

Never reuse across restarts -- the choice made here: a restarted master
*discards* every key it held (buffered or partly used) and opens only keys
newly delivered by ``enc_keys``, which an ETSI 014 KME delivers once. As a
guard against a KME that would deliver a key twice, the master appends every
key ID it receives to ``state_dir/used_keys`` (fsync'd before the first byte of
that key is used) and refuses such a key again. Sequence numbers are
reserved in blocks persisted to ``state_dir/sequence`` so a restarted sender
always continues above every number it sent, and the peer's replay window
keeps accepting it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from qkdmeet.crypto.wegman_carter import WegmanCarterMac
from qkdmeet.kme.types import Key, KeySupplier
from qkdmeet.vpn.constants import (
    KEY_HASH_BYTES,
    KEY_MASK_BYTES,
    KEY_STOP_DRAIN_SECONDS,
    KME_RETRY_MAX_SECONDS,
    KME_RETRY_SECONDS,
    MAX_KEYS_PER_REQUEST,
    MAX_SEQUENCE,
    OPEN_KEYS,
    RETIRED_KEYS,
    SEQUENCE_RESERVATION,
)
from qkdmeet.vpn.keygroups import GroupingSupplier
from qkdmeet.vpn.metrics import DirectionMetrics, RateMeter

log = logging.getLogger(__name__)

#: Callback told of every key range used: (key ID, offset, length in bytes).
Ledger = Callable[[uuid.UUID, int, int], None]

_MIN_KEY_BYTES = KEY_HASH_BYTES + KEY_MASK_BYTES + 1
#: Announced key IDs a slave remembers while it has no room to fetch them (16 B each).
ANNOUNCED_KEYS = 1024


class _BufferPool:
    """Zeroed buffers of the sizes keys come in, reused from key to key.

    A fresh 1 MiB ``bytearray`` is a fresh ``mmap``: its 256 page faults cost
    0.5-1 ms on this VM, paid on the event loop at every key switch (the
    tunnel's latency p99 at 10 Mb/s was made of those stalls). A buffer comes
    back here only after :meth:`OpenKey.close` zeroed it and dropped every
    reference the key held to it.
    """

    def __init__(self, per_size: int = 2 * OPEN_KEYS) -> None:
        self._free: dict[int, list[bytearray]] = {}
        self._per_size = per_size

    def take(self, size: int) -> bytearray:
        free = self._free.get(size)
        return free.pop() if free else bytearray(size)

    def give(self, buf: bytearray) -> None:
        free = self._free.setdefault(len(buf), [])
        if len(free) < self._per_size:
            free.append(buf)


_POOL = _BufferPool()
_EMPTY = np.zeros(0, np.uint8)


class OpenKey:
    """A key being used: its bytes (zeroed on close), hash keys and position."""

    __slots__ = ("_seen_buf", "closed", "data", "id_array", "key_id", "mac", "r", "raw_id",
                 "seen", "used", "view")

    def __init__(self, key: Key) -> None:
        self.key_id = key.key_id
        self.raw_id = key.key_id.bytes
        self.data = _POOL.take(len(key.key))
        self.data[:] = key.key
        self.mac = WegmanCarterMac(bytes(self.data[:KEY_HASH_BYTES]))
        #: The same bytes as a uint8 array (no copy), the hash key r1 || r2 and the
        #: key ID, for the kernels of :mod:`qkdmeet.vpn.fastpath` and :mod:`.pump`.
        self.view = np.frombuffer(self.data, np.uint8)
        self.r = np.frombuffer(bytes(self.data[:KEY_HASH_BYTES]), np.uint8)
        self.id_array = np.frombuffer(self.raw_id, np.uint8)
        self.used = KEY_HASH_BYTES  # sender: next offset; receiver: bytes accepted
        #: receiver: bit ``off`` set once a packet at offset ``off`` was accepted
        self._seen_buf = _POOL.take((len(self.data) + 7) // 8)
        self.seen = np.frombuffer(self._seen_buf, np.uint8)
        self.closed = False

    def offset_seen(self, off: int) -> bool:
        return bool(self.seen[off >> 3] & (1 << (off & 7)))

    def mark_seen(self, off: int) -> None:
        self.seen[off >> 3] |= 1 << (off & 7)

    def close(self) -> None:
        """Zero the key and return its buffers; a closed key holds no key bytes."""
        if self.closed:
            return
        self.view.fill(0)
        self.seen.fill(0)
        data, seen_buf = self.data, self._seen_buf
        # no view on the buffers may outlive this key: they go to the next key
        self.view = self.seen = _EMPTY
        self.data = self._seen_buf = bytearray()
        self.closed = True
        _POOL.give(data)
        _POOL.give(seen_buf)


@dataclass(slots=True)
class Slot:
    """Key reserved for one outbound packet."""

    sequence: int
    key: OpenKey
    offset: int


class SenderState:
    """Persistent sequence reservation and used-key journal of a master."""

    def __init__(self, state_dir: Path | None) -> None:
        self._dir = state_dir
        self.used: set[bytes] = set()
        self.next_sequence = 0
        self.reserved_until = 0
        self.restarted = False  # a previous run left state: this is a restart
        if state_dir is None:
            self.reserved_until = MAX_SEQUENCE
            return
        state_dir.mkdir(parents=True, exist_ok=True)
        seq_file = state_dir / "sequence"
        if seq_file.exists():
            self.restarted = True
            try:
                self.next_sequence = int(seq_file.read_text().strip())
            except ValueError as exc:
                raise ValueError(f"corrupt sequence state in {seq_file}") from exc
        journal = state_dir / "used_keys"
        if journal.exists():
            for line in journal.read_text().split():
                with contextlib.suppress(ValueError):
                    self.used.add(uuid.UUID(line).bytes)
        self.reserved_until = self.next_sequence
        self._journal = journal.open("a")

    def _write_atomic(self, name: str, text: str) -> None:
        assert self._dir is not None
        tmp = self._dir / (name + ".tmp")
        with tmp.open("w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._dir / name)

    def take_sequence(self) -> int:
        seq = self.reserve()
        self.next_sequence = seq + 1
        return seq

    def reserve(self) -> int:
        """The next sequence number, with a reservation (persisted) that covers it."""
        seq = self.next_sequence
        if seq >= self.reserved_until:
            if seq >= MAX_SEQUENCE:
                raise OverflowError("sequence space exhausted")
            self.reserved_until = min(MAX_SEQUENCE, seq + SEQUENCE_RESERVATION)
            self._write_atomic("sequence", f"{self.reserved_until}\n")
        return seq

    def mark_used(self, raw_ids: list[bytes]) -> list[bool]:
        """Record keys as taken (one fsync for all); False for a key taken before
        (refuse it). Blocking: the sender calls it in a thread as keys arrive."""
        fresh = []
        for r in raw_ids:  # one by one: an ID twice in one delivery is refused the second time
            fresh.append(r not in self.used)
            self.used.add(r)
        if self._dir is not None and any(fresh):
            try:
                for raw, new in zip(raw_ids, fresh, strict=True):
                    if new:
                        self._journal.write(str(uuid.UUID(bytes=raw)) + "\n")
                self._journal.flush()
                os.fsync(self._journal.fileno())
            except ValueError:  # journal closed by a stop meanwhile: use none of them
                return [False] * len(raw_ids)
        return fresh

    @property
    def persistent(self) -> bool:
        return self._dir is not None

    def close(self) -> None:
        if self._dir is not None:
            self._journal.close()


class SenderKeyStream:
    """Master side: buffered keys from ``enc_keys``, reserved packet by packet."""

    def __init__(
        self,
        supplier: KeySupplier,
        slave_sae_id: str,
        metrics: DirectionMetrics,
        *,
        key_size_bits: int,
        prefetch_bytes: int,
        state_dir: Path | None = None,
        ledger: Ledger | None = None,
        on_new_keys: Callable[[list[uuid.UUID]], None] | None = None,
    ) -> None:
        if key_size_bits % 8 or key_size_bits // 8 < _MIN_KEY_BYTES:
            raise ValueError(f"key size must be whole bytes and >= {_MIN_KEY_BYTES * 8} bits")
        self._supplier = supplier
        self._slave = slave_sae_id
        self._metrics = metrics
        self._key_size_bits = key_size_bits
        self._prefetch = max(prefetch_bytes, key_size_bits // 8)
        self._state = SenderState(state_dir)
        self._ledger = ledger
        self._on_new_keys = on_new_keys
        self._queue: deque[Key] = deque()
        self._current: OpenKey | None = None
        self._buffered = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._idle = asyncio.Event()  # clear while an enc_keys request is under way
        self._idle.set()
        self.kme_errors = 0
        self.arrival = RateMeter()
        self.consumption = RateMeter()
        self.production = RateMeter()
        self.kme_stock_bytes: int | None = None
        self._stock_polled = float("-inf")
        #: bytes of one key as fetched: the configured size, or what the KME's
        #: limits allow (a :class:`GroupingSupplier` negotiates it)
        self.key_bytes = key_size_bits // 8
        #: seconds the prefetch waits before its next try after a KME failure
        self.retry_delay = KME_RETRY_SECONDS

    @property
    def buffered(self) -> int:
        return self._buffered

    async def _negotiate(self) -> None:
        """Plan requests within the KME's limits (``status``) before the first fetch,
        and again after the supplier dropped its plan (a 400)."""
        sup = self._supplier
        if isinstance(sup, GroupingSupplier) and sup.plan_for(self._slave) is None:
            plan = await sup.negotiate(self._slave, self._key_size_bits)
            self.key_bytes = plan.key_bits // 8
            log.info("KME limits: keys of %d bits, %d per group, %d per request",
                     plan.etsi_bits, plan.members, plan.per_request)

    async def _back_off(self) -> None:
        """Wait before retrying a refusing or slow KME, twice as long each time
        (up to :data:`KME_RETRY_MAX_SECONDS`); the tunnel drops for want of key
        meanwhile (fail closed)."""
        delay = self.retry_delay
        self.retry_delay = min(KME_RETRY_MAX_SECONDS, 2 * delay)
        await asyncio.sleep(delay)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._prefetch_loop(), name="vpn-key-prefetch")

    async def stop(self) -> None:
        if self._task is not None:
            # a request under way is let finish: its keys are counted, then discarded
            self._stopping = True
            if not self._idle.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(KEY_STOP_DRAIN_SECONDS):
                        await self._idle.wait()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._current is not None:
            self._metrics.key_discarded_bytes += len(self._current.data) - self._current.used
            self._current.close()
            self._current = None
        for key in self._queue:
            self._metrics.key_discarded_bytes += len(key.key)
        self._queue.clear()
        self._buffered = 0
        self._metrics.key_buffered_bytes = 0
        self._state.close()

    def rotate(self) -> int:
        """Discard the current and every buffered key (the peer lost them); returns bytes.

        Used when the slave restarted: the keys it had fetched are gone with it
        and an ETSI 014 KME delivers a key to the slave only once.
        """
        lost = 0
        if self._current is not None:
            lost += len(self._current.data) - self._current.used
            self._current.close()
            self._current = None
        lost += sum(len(k.key) for k in self._queue)
        self._queue.clear()
        self._metrics.key_discarded_bytes += lost
        self._buffered = 0
        self._metrics.key_buffered_bytes = 0
        self._wake.set()
        return lost

    @property
    def restarted(self) -> bool:
        return self._state.restarted

    def reserve(self, length: int) -> Slot | None:
        """Key for one packet of ``length`` body bytes, or ``None`` (no key: drop)."""
        need = KEY_MASK_BYTES + length
        cur = self._current
        while cur is None or cur.used + need > len(cur.data):
            if cur is not None:
                tail = len(cur.data) - cur.used
                self._metrics.key_discarded_bytes += tail
                self._buffered -= tail
                cur.close()
                self._current = cur = None
            cur = self._open_next(need)
            if cur is None:
                self._metrics.key_buffered_bytes = self._buffered
                self._wake.set()
                return None
        offset = cur.used
        self._account(cur, offset + need, 1, length)
        if self._ledger is not None:
            self._ledger(cur.key_id, offset, need)
        return Slot(self._state.take_sequence(), cur, offset)

    def run(self) -> tuple[OpenKey, int, int, int] | None:
        """For the batched path (:mod:`.pump`): the open key, its next offset, the
        next sequence number and the end of their reservation; ``None`` when no
        key is open or its rest cannot carry a packet (then :meth:`reserve` opens
        the next one)."""
        cur = self._current
        if cur is None or cur.used + KEY_MASK_BYTES >= len(cur.data):
            return None
        seq = self._state.reserve()
        return cur, cur.used, seq, self._state.reserved_until

    def commit_run(self, key: OpenKey, offset: int, sequence: int, packets: int,
                   payload: int, ledger: npt.NDArray[np.int64]) -> None:
        """Account a batch the kernel sealed with ``key``: it moved to ``offset``
        and ``sequence``; ``ledger`` holds its ``offset, length`` pairs."""
        self._account(key, offset, packets, payload)
        self._state.next_sequence = sequence
        if self._ledger is not None:
            for i in range(packets):
                self._ledger(key.key_id, int(ledger[2 * i]), int(ledger[2 * i + 1]))

    def _account(self, key: OpenKey, offset: int, packets: int, payload: int) -> None:
        """``packets`` carrying ``payload`` bytes moved ``key`` on to ``offset``."""
        self._buffered -= offset - key.used
        key.used = offset
        m = self._metrics
        m.key_mask_bytes += KEY_MASK_BYTES * packets
        m.key_pad_bytes += payload
        m.key_buffered_bytes = self._buffered
        if self._buffered < self._prefetch // 2:
            self._wake.set()

    @property
    def has_ledger(self) -> bool:
        return self._ledger is not None

    def _open_next(self, need: int) -> OpenKey | None:
        while self._queue:
            key = self._queue.popleft()
            if len(key.key) < KEY_HASH_BYTES + need:
                # too short for this packet: never partially trusted, counted
                self._metrics.key_discarded_bytes += len(key.key)
                self._buffered -= len(key.key)
                continue
            opened = OpenKey(key)
            self._current = opened
            self._metrics.key_hash_bytes += KEY_HASH_BYTES
            self._buffered -= KEY_HASH_BYTES
            if self._ledger is not None:
                self._ledger(key.key_id, 0, KEY_HASH_BYTES)
            return opened
        return None

    async def _prefetch_loop(self) -> None:
        while not self._stopping:
            deficit = self._prefetch - self._buffered
            if deficit <= 0:
                self._wake.clear()
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a
                # cancellation that races with the event being set
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
                await self._poll_kme_stock()
                self._sample_rates()
                continue
            try:
                await self._negotiate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the KME boundary: any failure means "no key yet"
                self.kme_errors += 1
                log.debug("status failed: %s", exc)
                await self._back_off()
                continue
            number = min(MAX_KEYS_PER_REQUEST, -(-deficit // self.key_bytes))
            self._idle.clear()
            try:
                got = await self._request(number)
            finally:
                self._idle.set()
            if not got and not self._stopping:
                await self._back_off()

    async def _request(self, number: int) -> bool:
        """One ``enc_keys`` request, its keys journaled and queued; False if none came."""
        try:
            keys = await self._supplier.enc_keys(self._slave, number, self._key_size_bits)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the KME boundary: any failure means "no key yet"
            self.kme_errors += 1
            log.debug("enc_keys failed: %s", exc)
            self._sample_rates()
            return False
        if not keys:
            return False
        self.retry_delay = KME_RETRY_SECONDS
        fresh = await self._journal(keys)
        delivered = sum(len(k.key) for k in keys)
        arrived = sum(len(k.key) for k in fresh)
        self._metrics.key_arrived_bytes += delivered
        self._metrics.key_discarded_bytes += delivered - arrived  # refused: reissued
        self._queue.extend(fresh)
        self._buffered += arrived
        self._metrics.key_buffered_bytes = self._buffered
        self._sample_rates()
        if self._on_new_keys is not None:
            self._on_new_keys([k.key_id for k in fresh])
        return True

    async def _journal(self, keys: list[Key]) -> list[Key]:
        """The keys never taken before, journaled (fsync'd) before any is queued.

        Done as keys arrive, in a thread, not as each is opened on the data
        path: the fsync took 5-10 ms on this machine's disk while the key store
        wrote files, a stall of the tunnel at every key switch. A restarted
        master discards what it had buffered, so journaling a key at arrival
        refuses exactly the keys that opening it would have.
        """
        raw = [k.key_id.bytes for k in keys]
        fresh = (await asyncio.to_thread(self._state.mark_used, raw) if self._state.persistent
                 else self._state.mark_used(raw))
        for key, ok in zip(keys, fresh, strict=True):
            if not ok:
                log.error("KME delivered key %s a second time: refused", key.key_id)
                self._metrics.drop("key_reissued")
        return [k for k, ok in zip(keys, fresh, strict=True) if ok]

    async def _poll_kme_stock(self) -> None:
        """Key the KME holds for this link (ETSI 014 ``status``), at most once a second.

        The KME's production rate is d(stock + fetched)/dt: what the budget
        endpoint reports as arrival rate once known (our own fetches alone
        only follow our consumption).
        """
        now = time.monotonic()
        if now - self._stock_polled < 1.0:
            return
        self._stock_polled = now
        try:
            st = await self._supplier.status(self._slave)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # KME boundary: the figure is then unknown
            log.debug("status failed: %s", exc)
            self.kme_stock_bytes = None
            return
        self.kme_stock_bytes = st.stored_key_count * st.key_size // 8
        self.production.sample(self.kme_stock_bytes + self._metrics.key_arrived_bytes, now)

    def _sample_rates(self) -> None:
        self.arrival.sample(self._metrics.key_arrived_bytes)
        self.consumption.sample(self._metrics.key_bytes - self._metrics.key_discarded_bytes)


class ReceiverKeyStream:
    """Slave side: keys fetched by ID with ``dec_keys``, the recent ones kept open."""

    def __init__(
        self,
        supplier: KeySupplier,
        master_sae_id: str,
        metrics: DirectionMetrics,
        on_key_ready: Callable[[bytes, bool], None],
        *,
        max_held: int = 4 * MAX_KEYS_PER_REQUEST,
    ) -> None:
        self._supplier = supplier
        self._master = master_sae_id
        self._metrics = metrics
        self._on_key_ready = on_key_ready
        self._max_held = max_held
        self._held: dict[bytes, OpenKey] = {}  # fetched, not yet used
        self._open: OrderedDict[bytes, OpenKey] = OrderedDict()  # in use, newest last
        self._fetching: set[bytes] = set()
        #: announced, not yet fetched for want of room; fetched in order as keys open
        self._announced: OrderedDict[bytes, None] = OrderedDict()
        self._retired: OrderedDict[bytes, None] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.kme_errors = 0

    def get(self, raw_id: bytes) -> OpenKey | None:
        key = self._open.get(raw_id)
        if key is not None:
            return key
        return self._held.get(raw_id)

    def is_retired(self, raw_id: bytes) -> bool:
        return raw_id in self._retired

    def is_fetching(self, raw_id: bytes) -> bool:
        return raw_id in self._fetching

    def used(self, key: OpenKey, nbytes: int) -> None:
        """Account an authenticated packet's key; the first use opens the key."""
        m = self._metrics
        if key.raw_id in self._held:
            del self._held[key.raw_id]
            self._open[key.raw_id] = key
            m.key_hash_bytes += KEY_HASH_BYTES
            m.key_buffered_bytes -= KEY_HASH_BYTES
            while len(self._open) > OPEN_KEYS:
                _, old = self._open.popitem(last=False)
                self._retire(old)
            self._fetch_announced()  # a held key opened: room for the next announced one
        self.used_run(key, nbytes, 1)

    def used_run(self, key: OpenKey, nbytes: int, packets: int) -> None:
        """Account a batch of ``packets`` accepted by the kernel with an open ``key``."""
        key.used += nbytes
        m = self._metrics
        m.key_mask_bytes += KEY_MASK_BYTES * packets
        m.key_pad_bytes += nbytes - KEY_MASK_BYTES * packets
        m.key_buffered_bytes -= nbytes

    def want(self, raw_ids: list[bytes], *, urgent: bool = False) -> None:
        """Fetch these keys in the background unless known, fetching or retired.

        Announced keys are fetched while fewer than ``max_held`` are held or on
        their way; the rest wait, in the order announced (at most
        :data:`ANNOUNCED_KEYS` of them), and are fetched as held keys open. The master
        buffers as much key as it likes and announces each key when it gets
        it, so under a sustained load its announcements run ahead of this
        room: forgetting them made every such key an urgent fetch with its
        packets held meanwhile, and ``pending_full`` drops at 250 Mb/s. An
        ``urgent`` key (packets are waiting for it) is fetched regardless:
        when the announcement of the key in use was lost (an overloaded WAN
        drops datagrams) and later keys fill the room, waiting for room would
        drop every packet of that key.
        """
        if self._stopping:
            return
        new = [
            r
            for r in raw_ids
            if r not in self._open
            and r not in self._held
            and r not in self._fetching
            and r not in self._retired
        ]
        if urgent:
            for r in new:
                self._announced.pop(r, None)
            self._start_fetch(new)
            return
        for r in new:
            self._announced[r] = None
        while len(self._announced) > ANNOUNCED_KEYS:
            self._announced.popitem(last=False)  # bounded (announcements are authenticated)
        self._fetch_announced()

    def _fetch_announced(self) -> None:
        room = self._max_held - len(self._held) - len(self._fetching)
        batch: list[bytes] = []
        while self._announced and len(batch) < room:
            r, _ = self._announced.popitem(last=False)
            if r not in self._open and r not in self._held and r not in self._retired:
                batch.append(r)
        self._start_fetch(batch)

    def _start_fetch(self, new: list[bytes]) -> None:
        self._fetching.update(new)
        for i in range(0, len(new), MAX_KEYS_PER_REQUEST):
            task = asyncio.create_task(
                self._fetch(new[i : i + MAX_KEYS_PER_REQUEST]), name="vpn-key-fetch"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _fetch(self, raw_ids: list[bytes]) -> None:
        ids = [uuid.UUID(bytes=r) for r in raw_ids]
        keys: list[Key] = []
        for attempt in range(3):
            if attempt and self._stopping:
                break
            if attempt:
                await asyncio.sleep(KME_RETRY_SECONDS * attempt)
            try:
                keys = await self._supplier.dec_keys(self._master, ids)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # KME boundary: the key may not have arrived yet
                self.kme_errors += 1
                log.debug("dec_keys attempt %d failed: %s", attempt, exc)
        got = {k.key_id.bytes: k for k in keys}
        for raw in raw_ids:
            self._fetching.discard(raw)
            key = got.get(raw)
            if key is None or len(key.key) < _MIN_KEY_BYTES:
                self._remember_retired(raw)
                self._on_key_ready(raw, False)
                continue
            opened = OpenKey(key)
            self._held[raw] = opened
            self._metrics.key_arrived_bytes += len(key.key)
            # whole key buffered until opened, so arrived == consumed + buffered
            self._metrics.key_buffered_bytes += len(key.key)
            self._on_key_ready(raw, True)
        if not self._stopping:
            self._fetch_announced()  # a failed fetch left room

    def _retire(self, key: OpenKey) -> None:
        rest = len(key.data) - key.used
        self._metrics.key_discarded_bytes += max(0, rest)
        self._metrics.key_buffered_bytes -= max(0, rest)
        key.close()
        self._remember_retired(key.raw_id)

    def _remember_retired(self, raw: bytes) -> None:
        self._retired[raw] = None
        while len(self._retired) > RETIRED_KEYS:
            self._retired.popitem(last=False)

    async def stop(self) -> None:
        # fetches under way are let finish: what the KME delivered is counted, then discarded
        self._stopping = True
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=KEY_STOP_DRAIN_SECONDS)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for key in list(self._open.values()) + list(self._held.values()):
            key.close()
        self._open.clear()
        self._held.clear()
        self._announced.clear()
        # what was buffered is discarded unused: arrived == consumed still holds
        self._metrics.key_discarded_bytes += max(0, self._metrics.key_buffered_bytes)
        self._metrics.key_buffered_bytes = 0
