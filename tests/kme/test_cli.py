"""``qkdmeet kme pair --dir DIR --json``: start, read the JSON, use EtsiClient, stop."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from qkdmeet.kme.client import EtsiClient


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
