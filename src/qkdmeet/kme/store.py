"""Durable key store of one KME: SQLite in WAL mode.

The QKD link's blocks are laid end to end into one key stream per link; a byte
of the stream is named by its absolute position, identical at both sites
because both receive the same blocks in the same order. The pair's allocation
authority (see :mod:`qkdmeet.kme.peer`) hands out *ranges* of the stream; a
range becomes keys (UUID key IDs, one slice of the range each).

Crash safety: every change is one SQLite transaction
(:meth:`KeyStore._transaction`, the only place that begins, commits or rolls
back one). A range is recorded as
spent in the same transaction that stores the slave's keys (or that precedes
handing keys to the master), so after ``kill -9`` a range is either spent (and
never handed out again) or untouched (and still in stock). A key held for a
slave is deleted in the same transaction that reads it for delivery. Blocks are
deleted once every byte of them is spent.

Key hygiene (issue 14):

* the database and its ``-wal``/``-shm`` files are mode 0600 from their
  creation (the file is created 0600 before SQLite opens it; SQLite gives its
  side files the database's mode), and an existing one is set to 0600;
* ``PRAGMA secure_delete=ON`` is set explicitly (and checked): a deleted key
  row's bytes are overwritten with zeros in its page;
* a spent range is zeroed inside its block in the same transaction that
  spends it (blob I/O: only the pages it covers are rewritten), so a
  delivered key's bytes are nowhere in the database once the transaction
  commits, even while the rest of its block waits to be spent;
* the WAL still holds the older page images that carried the key, so
  :meth:`KeyStore.scrub` checkpoints and truncates it: the server calls it at
  most :data:`SCRUB_INTERVAL_SECONDS` after a delivery (one fsync per
  interval, not per request), and :meth:`KeyStore.close` does too;
* keys held for a slave that never claims them, and ranges reserved that were
  never spent (the authority allocated, the peer never held or took them),
  expire after a configured time (:meth:`KeyStore.expire`): they are
  destroyed, never delivered later; both KMEs run the same expiry.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from qkdmeet.errors import KmeError
from qkdmeet.kme.types import Key

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    block_id INTEGER PRIMARY KEY, start INTEGER NOT NULL, stop INTEGER NOT NULL,
    data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS blocks_stop ON blocks (stop);
CREATE TABLE IF NOT EXISTS spent (start INTEGER PRIMARY KEY, stop INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    key_id BLOB PRIMARY KEY, master TEXT NOT NULL, slave TEXT NOT NULL, key BLOB NOT NULL,
    created REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


#: Seconds at most between a delivery and the WAL checkpoint that erases it there.
SCRUB_INTERVAL_SECONDS = 0.1
#: Blob handles one connection opens before the store reconnects (bounds the weak
#: references CPython's ``sqlite3`` keeps per blob ever opened: ~89 KiB at most).
BLOBS_PER_CONNECTION = 1024
#: Database files: owner read/write only.
FILE_MODE = 0o600


class StoreError(KmeError):
    """A request the store cannot satisfy (range not in stock, duplicate block)."""


@dataclass(frozen=True, slots=True)
class Reservation:
    """Keys cut from stream range ``[start, start + len(key_ids) * size)``."""

    start: int
    size: int
    key_ids: tuple[uuid.UUID, ...]
    master: str
    slave: str

    @property
    def stop(self) -> int:
        return self.start + self.size * len(self.key_ids)


class KeyStore:
    """Key stream blocks, spent ranges and keys held for slaves."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # created 0600 before SQLite opens it: its -wal and -shm get the same mode
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE))
        for f in self.files():
            if f.exists():
                f.chmod(FILE_MODE)
        self._db = self._connect()
        cols = {r[1] for r in self._db.execute("PRAGMA table_info(keys)")}
        if "created" not in cols:  # a database of an earlier version
            self._db.execute("ALTER TABLE keys ADD COLUMN created REAL NOT NULL DEFAULT 0")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS spent_at (start INTEGER PRIMARY KEY, at REAL NOT NULL)"
        )
        #: blob handles opened on this connection (see :data:`BLOBS_PER_CONNECTION`)
        self._blobs = 0
        #: key bytes erased from the tables since the last :meth:`scrub`
        self.dirty = False
        self.scrubs = 0

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA secure_delete=ON")
        if db.execute("PRAGMA secure_delete").fetchone()[0] != 1:
            raise StoreError("this SQLite cannot set secure_delete: key would stay on disk")
        db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: every commit survives kill -9 of the process (the OS has
        # the WAL pages); a power loss may drop the last commits on both sides.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA wal_autocheckpoint=10000")
        db.executescript(_SCHEMA)
        return db

    def _reconnect_if_due(self) -> None:
        """Between transactions: a fresh connection once this one has opened
        :data:`BLOBS_PER_CONNECTION` blob handles (CPython's ``sqlite3`` keeps a weak
        reference to every blob a connection ever opened, ~89 B each, until it closes)."""
        if self._blobs >= BLOBS_PER_CONNECTION:
            self._db.close()
            self._db = self._connect()
            self._blobs = 0

    def files(self) -> tuple[Path, Path, Path]:
        """The database and its WAL and shared-memory files."""
        return (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))

    def scrub(self) -> bool:
        """Checkpoint and truncate the WAL, where erased key bytes still sit in older
        page images; True if there was something to scrub."""
        if not self.dirty:
            return False
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.dirty = False
        self.scrubs += 1
        return True

    def close(self) -> None:
        self.dirty = True
        self.scrub()
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction around the block: ``BEGIN IMMEDIATE``, then
        ``COMMIT`` if the block completes, ``ROLLBACK`` if anything escapes it
        (an exception, a cancellation): all of the change or none of it."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        finally:
            self._reconnect_if_due()

    # -- the link side -------------------------------------------------
    def _meta(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, name: str, value: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    @property
    def stream_end(self) -> int:
        """Position one past the last byte received from the link."""
        return self._meta("stream_end")

    @property
    def next_block(self) -> int:
        """The block_id the store expects next from the link."""
        return self._meta("next_block")

    @property
    def cursor(self) -> int:
        """Allocation cursor (used by the authority): first never-reserved byte."""
        return self._meta("cursor")

    def add_block(self, block_id: int, data: bytes) -> bool:
        """Append a block; False (and nothing changed) if ``block_id`` is already stored."""
        with self._transaction():
            if block_id < self._meta("next_block"):
                return False  # nothing written: the commit is empty
            start = self.stream_end
            self._db.execute(
                "INSERT INTO blocks VALUES (?, ?, ?, ?)", (block_id, start, start + len(data), data)
            )
            self._set_meta("stream_end", start + len(data))
            self._set_meta("next_block", block_id + 1)
            return True

    # -- reading and spending ranges ----------------------------------
    def _read(self, start: int, stop: int) -> bytes:
        # One block at a time along the stop index; substr() on a BLOB counts
        # bytes from 1, so only the wanted slice leaves SQLite.
        out = bytearray()
        pos = start
        while pos < stop:
            row = self._db.execute(
                "SELECT start, substr(data, ? - start + 1, ? - ?) FROM blocks "
                "WHERE stop > ? ORDER BY stop LIMIT 1",
                (pos, stop, pos, pos),
            ).fetchone()
            if row is None or row[0] > pos or not row[1]:
                break
            out += row[1]
            pos += len(row[1])
        if pos != stop:
            raise StoreError(f"stream range [{start}, {stop}) is not in stock")
        return bytes(out)

    def _spend(self, start: int, stop: int) -> None:
        clash = self._db.execute(
            "SELECT 1 FROM spent WHERE start < ? AND stop > ?", (stop, start)
        ).fetchone()
        if clash or start < self._meta("spent_prefix"):
            raise StoreError(f"stream range [{start}, {stop}) was already spent")
        self._db.execute("INSERT INTO spent VALUES (?, ?)", (start, stop))
        self._db.execute("INSERT OR REPLACE INTO spent_at VALUES (?, ?)", (start, time.time()))
        self._zero(start, stop)
        self.dirty = True
        prefix = self._meta("spent_prefix")
        while True:
            row = self._db.execute("SELECT stop FROM spent WHERE start=?", (prefix,)).fetchone()
            if row is None:
                break
            self._db.execute("DELETE FROM spent WHERE start=?", (prefix,))
            self._db.execute("DELETE FROM spent_at WHERE start=?", (prefix,))
            prefix = int(row[0])
        self._set_meta("spent_prefix", prefix)
        self._db.execute("DELETE FROM blocks WHERE stop <= ?", (prefix,))

    def _zero(self, start: int, stop: int) -> None:
        """Overwrite stream bytes ``[start, stop)`` with zeros inside their blocks."""
        rows = self._db.execute(
            "SELECT rowid, start, stop FROM blocks WHERE stop > ? AND start < ?", (start, stop)
        ).fetchall()
        for rowid, b_start, b_stop in rows:
            lo, hi = max(start, b_start), min(stop, b_stop)
            self._blobs += 1
            with self._db.blobopen("blocks", "data", rowid) as blob:
                blob.seek(lo - b_start)
                blob.write(bytes(hi - lo))

    def expire(self, max_age_s: float, now: float | None = None) -> tuple[int, int]:
        """Destroy keys held for a slave longer than ``max_age_s`` and ranges reserved
        as long ago and never spent here; returns (keys, range bytes) destroyed.

        Allocation is monotonic, so a gap below a range spent ``max_age_s`` ago was
        allocated before it and has had that long: its hold or take was lost.
        """
        cutoff = (time.time() if now is None else now) - max_age_s
        with self._transaction():
            keys = self._db.execute("DELETE FROM keys WHERE created < ?", (cutoff,)).rowcount
            destroyed = 0
            while True:
                prefix = self._meta("spent_prefix")
                row = self._db.execute(
                    "SELECT s.start, a.at FROM spent s LEFT JOIN spent_at a USING (start) "
                    "ORDER BY s.start LIMIT 1"
                ).fetchone()
                if row is None or row[0] <= prefix or (row[1] or 0) >= cutoff:
                    break
                self._spend(prefix, int(row[0]))  # the gap: zeroed, never handed out
                destroyed += int(row[0]) - prefix
        if keys:
            self.dirty = True
        return keys, destroyed

    def stock_bytes(self) -> int:
        """Bytes received and not yet reserved (from the authority's cursor)."""
        return max(0, self.stream_end - max(self.cursor, self._meta("spent_prefix")))

    def allocate(self, nbytes: int) -> int:
        """Authority only: reserve the next ``nbytes`` of stream; returns the start."""
        with self._transaction():
            return self._allocate(nbytes)

    def _allocate(self, nbytes: int) -> int:
        start = max(self.cursor, self._meta("spent_prefix"))
        if start + nbytes > self.stream_end:
            raise StoreError("not enough key in stock")
        self._set_meta("cursor", start + nbytes)
        return start

    def allocate_and_hold(self, size: int, key_ids: tuple[uuid.UUID, ...], master: str,
                          slave: str) -> Reservation:
        """Authority only: :meth:`allocate` and :meth:`hold_for_slave` in one
        transaction (the cursor never advances without the keys being held)."""
        with self._transaction():
            res = Reservation(self._allocate(size * len(key_ids)), size, key_ids, master, slave)
            self._hold(res)
        return res

    def take_for_master(self, res: Reservation) -> list[Key]:
        """Spend the range and return its keys (the master's KME; nothing is kept)."""
        with self._transaction():
            data = self._read(res.start, res.stop)
            self._spend(res.start, res.stop)
        return [
            Key(kid, data[i * res.size : (i + 1) * res.size]) for i, kid in enumerate(res.key_ids)
        ]

    def hold_for_slave(self, *reservations: Reservation) -> None:
        """Spend the ranges and keep their keys, by ID, for the slaves (the slave's KME).

        All reservations in one transaction (group commit): all or none.
        """
        with self._transaction():
            for res in reservations:
                self._hold(res)

    def _hold(self, res: Reservation) -> None:
        data = self._read(res.start, res.stop)
        self._spend(res.start, res.stop)
        now = time.time()
        self._db.executemany(
            "INSERT INTO keys VALUES (?, ?, ?, ?, ?)",
            [
                (kid.bytes, res.master, res.slave, data[i * res.size : (i + 1) * res.size], now)
                for i, kid in enumerate(res.key_ids)
            ],
        )

    def deliver_to_slave(self, master: str, slave: str, key_ids: Sequence[uuid.UUID]) -> list[Key]:
        """Return and erase the keys; :class:`KeyError` (nothing erased) if any is missing."""
        out: list[Key] = []
        with self._transaction():
            for kid in key_ids:
                row = self._db.execute(
                    "SELECT key FROM keys WHERE key_id=? AND master=? AND slave=?",
                    (kid.bytes, master, slave),
                ).fetchone()
                if row is None:
                    raise KeyError(str(kid))
                out.append(Key(kid, bytes(row[0])))
                self._db.execute("DELETE FROM keys WHERE key_id=?", (kid.bytes,))
        self.dirty = True
        return out

    def held_count(self, master: str, slave: str) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM keys WHERE master=? AND slave=?", (master, slave)
        ).fetchone()
        return int(row[0])
