"""``qkdmeet kme pair --dir DIR --json``: start, read the JSON, use EtsiClient, stop."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from qkdmeet.kme.client import EtsiClient
from qkdmeet.kme.pair import KmePair, write_pair


async def test_kme_pair_json(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "qkdmeet",
        "kme",
        "pair",
        "--dir",
        str(tmp_path),
        "--json",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        info = json.loads(line)
        a, b = info["sites"]["a"], info["sites"]["b"]
        async with (
            EtsiClient(
                a["kme_url"], cert_file=a["sae_cert"], key_file=a["sae_key"], ca_file=info["ca"]
            ) as m,
            EtsiClient(
                b["kme_url"], cert_file=b["sae_cert"], key_file=b["sae_key"], ca_file=info["ca"]
            ) as s,
        ):
            st = await m.status(b["sae_id"])
            assert st.stored_key_count > 0
            keys = await m.enc_keys(b["sae_id"], 4, 256)
            assert await s.dec_keys(a["sae_id"], [k.key_id for k in keys]) == keys
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_pki_init(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "qkdmeet",
        "pki",
        "init",
        str(tmp_path / "p"),
        stderr=asyncio.subprocess.PIPE,
    )
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert (tmp_path / "p" / "kme-b.pem").exists()


async def test_two_serve_processes_fed_by_seeded_link(tmp_path: Path) -> None:
    files = write_pair(tmp_path, link_bits_per_second=4e6)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "qkdmeet",
            "kme",
            "serve",
            "--config",
            str(files.configs[s]),
            stderr=asyncio.subprocess.DEVNULL,
        )
        for s in ("a", "b")
    ]
    d = files.directory
    try:
        async with (
            EtsiClient(
                f"https://127.0.0.1:{files.ports['b']}",
                cert_file=d / "sae-b.pem",
                key_file=d / "sae-b.key",
                ca_file=d / "ca.pem",
                retries=8,
            ) as m,
            EtsiClient(
                f"https://127.0.0.1:{files.ports['a']}",
                cert_file=d / "sae-a.pem",
                key_file=d / "sae-a.key",
                ca_file=d / "ca.pem",
                retries=8,
            ) as s,
        ):
            keys = await m.enc_keys("SAE-A", 8, 256)  # retried until the link has delivered
            assert await s.dec_keys("SAE-B", [k.key_id for k in keys]) == keys
            assert (await s.status("SAE-B")).stored_key_count > 0
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            assert await asyncio.wait_for(p.wait(), 30) == 0


async def test_kme_status_cli(pair: KmePair) -> None:
    info = pair.describe()
    a = info["sites"]["a"]
    args = ["--url", a["kme_url"], "--slave", "SAE-B", "--cert", a["sae_cert"]]
    args += ["--key", a["sae_key"], "--ca", info["ca"]]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qkdmeet", "kme", "status", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    st = json.loads(out)
    assert st["source_kme_id"] == "KME-A" and st["stored_key_count"] == 8 * 16384 * 8 // 256
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "qkdmeet",
        "kme",
        "status",
        *args[:2],
        "--slave",
        "SAE-Z",
        *args[4:],
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and b"unknown SAE ID" in err
