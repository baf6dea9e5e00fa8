"""Key hygiene of the KME (issue 14): file modes, secure_delete, no delivered key left
on disk (db, -wal, -shm), expiry of unclaimed keys and ranges, audit log, metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import stat
import uuid
from pathlib import Path

import pytest

from qkdmeet.kme import audit
from qkdmeet.kme.client import KeysNotFound
from qkdmeet.kme.pair import KmePair, write_pair
from qkdmeet.kme.store import SCRUB_INTERVAL_SECONDS, KeyStore, Reservation

from .conftest import sae_client


def res(start: int, n: int, size: int = 32) -> Reservation:
    return Reservation(start, size, tuple(uuid.uuid4() for _ in range(n)), "M", "S")


def on_disk(stores: list[KeyStore]) -> bytes:
    return b"".join(f.read_bytes() for st in stores for f in st.files() if f.exists())


def test_files_are_0600_from_the_start_and_secure_delete_is_on(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    sqlite3.connect(old).close()
    old.chmod(0o644)
    for path in (tmp_path / "k.db", old):
        st = KeyStore(path)
        st.add_block(0, os.urandom(64))
        for f in st.files():
            assert f.exists() and stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert st._db.execute("PRAGMA secure_delete").fetchone()[0] == 1
        st.close()


def test_a_delivered_key_is_in_no_file_of_either_store(tmp_path: Path) -> None:
    master, slave = KeyStore(tmp_path / "a.db"), KeyStore(tmp_path / "b.db")
    block = os.urandom(4096)
    master.add_block(0, block)
    slave.add_block(0, block)
    r = res(master.allocate(10 * 32), 10)
    slave.hold_for_slave(r)  # the slave's KME keeps the keys for its SAE
    got = master.take_for_master(r)  # the master's KME hands them out
    delivered = slave.deliver_to_slave("M", "S", r.key_ids)
    assert got == delivered
    # before the scrub the WAL still holds older page images with the key: the
    # defect of issue 14, and what this test would catch without scrub()
    assert any(k.key in on_disk([master, slave]) for k in got)
    assert master.scrub() and slave.scrub()
    data = on_disk([master, slave])
    assert all(k.key not in data for k in got)
    # the rest of the block is still in stock and readable
    assert master._read(320, 4096) == block[320:]
    master.close()
    slave.close()


async def test_server_scrubs_the_wal_after_dec_keys(pair: KmePair) -> None:
    async with sae_client(pair, "a") as m, sae_client(pair, "b") as s:
        keys = await m.enc_keys("SAE-B", 8, 256)
        assert await s.dec_keys("SAE-A", [k.key_id for k in keys]) == keys
    await asyncio.sleep(3 * SCRUB_INTERVAL_SECONDS)
    stores = [srv.store for srv in pair.servers.values()]
    data = on_disk(stores)
    assert all(k.key not in data for k in keys)
    assert all(st.scrubs > 0 for st in stores)


def test_unclaimed_keys_and_ranges_expire_and_are_never_delivered(tmp_path: Path) -> None:
    st = KeyStore(tmp_path / "k.db")
    st.add_block(0, os.urandom(256))
    held = res(64, 2)
    st.hold_for_slave(held)  # [64, 128) held; [0, 64) was reserved but never spent here
    assert st.expire(60.0) == (0, 0)  # young: kept
    assert st.held_count("M", "S") == 2
    import time

    assert st.expire(60.0, now=time.time() + 120) == (2, 64)
    assert st.held_count("M", "S") == 0
    with pytest.raises(KeyError):
        st.deliver_to_slave("M", "S", held.key_ids)
    assert st._meta("spent_prefix") == 128  # the gap was destroyed, not left in stock
    st.close()


async def test_audit_log_of_deliveries_and_refusals_survives_a_restart(tmp_path: Path) -> None:
    files = write_pair(tmp_path)
    p = KmePair(files)
    await p.start()
    await p.fill(4, 4096)
    async with sae_client(p, "a") as m, sae_client(p, "b") as s:
        keys = await m.enc_keys("SAE-B", 3, 256)
        await s.dec_keys("SAE-A", [k.key_id for k in keys])
        with pytest.raises(KeysNotFound):
            await s.dec_keys("SAE-A", [keys[0].key_id])  # delivered once: refused now
    log_a = p.servers["a"].config.audit_log
    log_b = p.servers["b"].config.audit_log
    assert log_a is not None and log_b is not None
    await p.stop()
    assert stat.S_IMODE(log_b.stat().st_mode) == 0o600
    lines = [json.loads(x) for x in log_b.read_text().splitlines()]
    dec = [e for e in lines if e["op"] == "dec_keys"]
    assert dec[0]["result"] == "delivered" and dec[0]["key_IDs"] == [str(k.key_id) for k in keys]
    assert dec[0]["sizes_bits"] == [256] * 3 and dec[0]["caller"] == "SAE-B"
    assert dec[1]["result"] == "refused" and "not found" in dec[1]["reason"]
    text = log_a.read_text() + log_b.read_text()
    for k in keys:  # never key material
        assert base64.b64encode(k.key).decode() not in text and k.key.hex() not in text
    # counters persisted: the same after a restart, and the summary counts them
    before = audit.AuditLog(log_b).counters
    assert before["deliveries"] == 1 and before["refusals"] == 1 and before["keys_delivered"] == 3
    p2 = KmePair(files)
    await p2.start()
    assert p2.servers["b"].audit is not None
    assert p2.servers["b"].audit.counters == before
    await p2.stop()
    summary = audit.summarise(log_b)
    assert summary["counters"]["bits_delivered"] == 3 * 256
    assert summary["in_files"]["deliveries"] == 1


def test_audit_log_rotates_and_keeps_counting(tmp_path: Path) -> None:
    a = audit.AuditLog(tmp_path / "audit.jsonl", max_bytes=400, keep=2)
    for _ in range(20):
        a.record(op="dec_keys", caller="S", role="sae", other="M", status=200,
                 key_ids=[str(uuid.uuid4())], sizes_bits=[256])
    a.close()
    assert (tmp_path / "audit.jsonl.1").exists() and not (tmp_path / "audit.jsonl.3").exists()
    assert audit.AuditLog(tmp_path / "audit.jsonl").counters["deliveries"] == 20


async def test_prometheus_text_has_help_and_type_for_every_sample(pair: KmePair) -> None:
    import aiohttp

    from qkdmeet.kme.tls import client_context

    d = pair.files.directory
    async with sae_client(pair, "a") as m:
        await m.enc_keys("SAE-B", 2, 256)
    ctx = client_context(d / "sae-a.pem", d / "sae-a.key", d / "ca.pem")
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s,
        s.get(f"https://127.0.0.1:{pair.files.ports['a']}/metrics") as r,
    ):
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await r.text()
    typed, helped = set(), set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in ("counter", "gauge") and (kind != "counter" or name.endswith("_total"))
            typed.add(name)
        elif line.startswith("# HELP "):
            helped.add(line.split()[2])
        else:
            name = line.split("{")[0].split()[0]
            assert name in typed and name in helped, line
    assert "qkdmeet_kme_enc_keys_total" in typed


def test_kme_audit_command_summarises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from qkdmeet.cli import main

    a = audit.AuditLog(tmp_path / "audit.jsonl")
    a.record(op="enc_keys", caller="SAE-A", role="sae", other="SAE-B", status=200,
             key_ids=[str(uuid.uuid4())], sizes_bits=[256])
    a.record(op="peer_reserve", caller="KME-B", role="sae", other=None, status=401,
             reason="unauthorized")
    a.close()
    assert main(["kme", "audit", "--log", str(tmp_path / "audit.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counters"]["deliveries"] == 1 and out["counters"]["refusals"] == 1
    assert out["refusals_by_reason"] == {"peer_reserve: unauthorized": 1}
