"""The KME config model: what :func:`write` puts in a file, :func:`load` reads back."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from qkdmeet.kme import config
from qkdmeet.kme.config import KmeConfig, QkdFeed, SimulatedLink
from tests.roundtrip import unset_fields


def _model(base: Path, *, qkd: bool) -> KmeConfig:
    """Every field away from its default (``link`` and ``qkd`` take turns)."""
    (base / "psk.bin").write_bytes(b"\x01" * 64)
    return KmeConfig(
        kme_id="KME-X", host="0.0.0.0", port=8443, db=base / "x.db", cert=base / "x.pem",
        key=base / "x.key", ca=base / "ca.pem", local_saes=("SAE-X", "SAE-X2"),
        remote_saes=("SAE-Y",), peer_kme_id="KME-Y", peer_url="https://10.0.0.2:8443",
        authority=True, key_size=512, max_key_per_request=64, max_key_size=4096,
        min_key_size=128, max_key_count=5000, audit_log=base / "audit.jsonl",
        key_expiry_seconds=30.5,
        link=None if qkd else SimulatedLink(b"\x07" * 32, 2.5e6, 8192, 1234.5),
        qkd=QkdFeed("transmitter", "10.0.0.1:7700", b"\x01" * 64, psk_file=base / "psk.bin",
                    preset="lim2014", loss_db=3.5, block_bits=200_000, eve="pns",
                    seed=9) if qkd else None,
    )


@pytest.mark.parametrize("qkd", [False, True])
def test_every_field_survives_the_round_trip(tmp_path: Path, qkd: bool) -> None:
    cfg = _model(tmp_path, qkd=qkd)
    # one key source at a time; loss or distance (the next test takes distance)
    assert unset_fields(cfg) == (["link", "qkd.distance_km"] if qkd else ["qkd"])
    assert config.load(config.write(cfg, tmp_path / "kme.toml")) == cfg


def test_the_other_qkd_fields_round_trip(tmp_path: Path) -> None:
    # the receiver's connect address, distance instead of loss, the secret inline
    q = QkdFeed("receiver", "10.0.0.1:7700", b"\x02" * 40, distance_km=12.0)
    cfg = dataclasses.replace(_model(tmp_path, qkd=True), qkd=q)
    text = config.write(cfg, tmp_path / "kme.toml").read_text()
    assert tomllib.loads(text)["qkd"]["connect"] == "10.0.0.1:7700"
    assert config.load(tmp_path / "kme.toml") == cfg


def test_relative_paths_are_read_against_the_files_folder(tmp_path: Path) -> None:
    cfg = dataclasses.replace(_model(tmp_path, qkd=False), db=Path("kme.db"), audit_log=None)
    loaded = config.load(config.write(cfg, tmp_path / "kme.toml"))
    assert loaded.db == tmp_path / "kme.db"
    assert loaded.audit_log == Path(f"{tmp_path / 'kme.db'}.audit.jsonl")  # the default
    assert config.parse(config.dump(cfg)) == dataclasses.replace(
        cfg, audit_log=Path("kme.db.audit.jsonl"))
