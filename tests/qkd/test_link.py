"""The networked ends over TCP on loopback, the quantum-channel wire format, and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qkdmeet.cli import main as cli_main
from qkdmeet.qkd.channel import (
    ChannelError,
    QuantumChannel,
    decode_bob_chunk,
    encode_bob_chunk,
)
from qkdmeet.qkd.link import link_params
from qkdmeet.qkd.nodes import ReceiverNode, TransmitterNode, parse_address
from qkdmeet.qkd.protocol import ProtocolConfig
from qkdmeet.qkd.sink import ListSink

BLOCK = 100_000


def test_bob_chunk_round_trips_and_bad_frames_are_refused() -> None:
    params = link_params("toshiba", loss_db=2.0, block_bits=BLOCK, optimise=False)
    ch = QuantumChannel(params, np.random.default_rng(1), chunk_pulses=100_000)
    ch.skip(12345)
    alice, bob = ch.emit(200_000)
    assert bob.first_pulse == 12345 and len(bob) == len(alice) > 1000
    back = decode_bob_chunk(b"".join(encode_bob_chunk(bob)))
    assert back.first_pulse == bob.first_pulse and back.n_pulses == bob.n_pulses
    for name in ("pulse_index", "basis", "bit", "double_click"):
        assert np.array_equal(getattr(back.events, name), getattr(bob.events, name))
    assert not hasattr(bob.events, "intensity")  # Bob never sees Alice's choices
    frame = b"".join(encode_bob_chunk(bob))
    with pytest.raises(ChannelError):
        decode_bob_chunk(frame[:-1])
    with pytest.raises(ChannelError):
        decode_bob_chunk(b"\x00" * 5)


def test_cut_fibre_leaves_only_dark_counts() -> None:
    params = link_params("toshiba", loss_db=2.0, block_bits=BLOCK, optimise=False)
    ch = QuantumChannel(params, np.random.default_rng(2))
    ch.set_cut(True)
    _, dark = ch.emit(1_000_000)
    ch.set_cut(False)
    _, lit = ch.emit(1_000_000)
    assert len(dark) < 20 < 10_000 < len(lit)


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert parse_address("[::1]:7") == ("::1", 7)
    with pytest.raises(ValueError):
        parse_address("localhost")


async def start_pair(secret: bytes, seeds: tuple[int, int], first_block: int = 0
                     ) -> tuple[TransmitterNode, ReceiverNode, ListSink, ListSink]:
    """Both ends of a 2 dB link over TCP on loopback, blocks of BLOCK bits, the source
    as fast as the CPU allows; each end delivers into its own ListSink."""
    params = link_params("toshiba", loss_db=2.0, block_bits=BLOCK)
    config = ProtocolConfig(block_bits=BLOCK)
    sink_a, sink_b = ListSink(), ListSink()
    tx = TransmitterNode(params, "127.0.0.1:0", sink_a, secret, config=config, seed=seeds[0],
                         realtime=False, chunk_pulses=2_000_000)  # fmt: skip
    await tx.start()
    rx = ReceiverNode(params, f"127.0.0.1:{tx.port}", sink_b, secret, config=config,
                      seed=seeds[1], first_block=first_block)  # fmt: skip
    await rx.start()
    return tx, rx, sink_a, sink_b


async def test_transmitter_and_receiver_over_tcp_give_identical_blocks() -> None:
    secret = os.urandom(32 + 2 * 2048 * 32)
    tx, rx, sink_a, sink_b = await start_pair(secret, (21, 22), first_block=7)
    try:
        async with asyncio.timeout(60):
            while True:
                if len(sink_b.blocks) >= 2 and len(sink_a.blocks) >= 2:
                    break
                await asyncio.sleep(0.02)
    finally:
        await rx.stop()
        await tx.stop()
    pairs = list(zip(sink_a.blocks, sink_b.blocks, strict=False))
    assert pairs and all(a.block_id == b.block_id and a.key == b.key for a, b in pairs)
    assert sink_b.blocks[0].block_id == 7  # the larger of the two ends' next block ids
    st_a, st_b = tx.stats(), rx.stats()
    assert st_a["role"] == "transmitter" and st_b["role"] == "receiver"
    assert st_b["blocks"] >= 2 and st_b["detections"] > 0


async def test_pipelined_blocks_over_tcp_all_complete_with_identical_keys() -> None:
    """Several blocks in flight over a real socket (whose writes yield): every block's
    checkpoints verify at both ends and both ends deliver the same keys. (A checkpoint
    tag read back from shared state after the write let another block's tag in.)"""
    secret = os.urandom(32 + 2 * 2048 * 32)
    tx, rx, sink_a, sink_b = await start_pair(secret, (23, 24))
    try:
        async with asyncio.timeout(120):
            while True:
                if len(sink_a.blocks) >= 10 and len(sink_b.blocks) >= 10:
                    break
                await asyncio.sleep(0.02)
    finally:
        await rx.stop()
        await tx.stop()
    assert tx.actor is not None and rx.actor is not None
    assert tx.actor.stats.aborted_blocks == 0 and rx.actor.stats.aborted_blocks == 0
    assert tx.actor.channel.rejected == 0 and rx.actor.channel.rejected == 0
    a = {b.block_id: b.key for b in sink_a.blocks}
    b = {b.block_id: b.key for b in sink_b.blocks}
    common = set(a) & set(b)
    assert len(common) >= 10 and all(a[i] == b[i] for i in common)


async def test_attack_mid_run_gives_no_key_from_attacked_pulses_and_key_returns() -> None:
    # blocks of 1e5 bits do not pay for their own authentication (Cascade's
    # messages take more masks than the key refills): a reserve for the whole test
    secret = os.urandom(32 + 2 * 16384 * 32)
    tx, rx, sink_a, sink_b = await start_pair(secret, (31, 32))

    async def until(cond: Callable[[], bool]) -> None:
        try:
            async with asyncio.timeout(90):
                while not cond():  # noqa: ASYNC110 (polling the link's stats: no event)
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise AssertionError(f"link stuck: {tx.stats()} / {rx.stats()}") from None

    try:
        await until(lambda: tx.stats().get("blocks", 0) >= 2)
        assert tx.stats()["attacked_pulses"] == 0
        tx.set_eve("intercept-resend:1.0")
        await until(lambda: tx.stats()["attacked_blocks"] >= 3)
        during = tx.stats()
        assert during["last_block_ok"] is False
        assert during["last_block_qber"] > 0.15  # what the operator sees: the attack
        tx.set_eve(None)
        blocks = tx.stats()["blocks"]
        await until(lambda: len(sink_b.blocks) > 2 and tx.stats()["blocks"] >= blocks + 2)
    finally:
        await rx.stop()
        await tx.stop()
    st = tx.stats()
    assert st["attacked_blocks"] >= 3 and st["attacked_blocks_with_key"] == 0
    assert st["aborted_blocks"] >= st["attacked_blocks"]
    assert st["last_block_ok"] is True and st["last_block_qber"] < 0.05  # key is back
    assert [b.key for b in sink_a.blocks] == [b.key for b in sink_b.blocks]


def test_attack_summary_counts_overlapping_blocks() -> None:
    from qkdmeet.qkd.figures import attack_summary
    from qkdmeet.qkd.protocol import BlockReport

    reports = [BlockReport(0, True, pulses=100, first_pulse=0, secure_bits=10),
               BlockReport(1, False, pulses=100, first_pulse=100),
               BlockReport(2, True, pulses=100, first_pulse=200, secure_bits=10),
               BlockReport(3, True, pulses=100, first_pulse=300, auth_bits=5)]
    out = attack_summary(reports, [(150, 250)])
    assert out == {"attacked_pulses": 100, "attacked_blocks": 2, "attacked_blocks_with_key": 1}
    assert attack_summary(reports, [])["attacked_blocks"] == 0
    assert attack_summary(reports, [(399, 400)])["attacked_blocks_with_key"] == 1


def test_cli_simulate_json(capsys: pytest.CaptureFixture[str]) -> None:
    # blocks of 1e6: smaller ones cost more authentication key than they distil
    rc = cli_main(["qkd", "simulate", "--loss-db", "2", "--seconds", "14", "--block-bits",
                   "1e6", "--seed", "3", "--json"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    for field in (
        "secure_key_rate_bps", "model_secure_key_rate_bps", "sifted_rate_bps", "qber",
        "phase_error_bound", "ec_efficiency", "blocks", "aborted_blocks", "secure_bits",
        "ceiling_fraction", "asymptotic_key_rate_bps",
    ):  # fmt: skip
        assert field in out
    assert out["keys_identical"] is True
    assert out["blocks"] >= 1 and out["sifted_rate_bps"] > 0
    assert 0.01 < out["qber"] < 0.05


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["qkd", "simulate", "--eve", "nonsense", "--seconds", "1"]) == 2
    assert "unknown eavesdropper" in capsys.readouterr().err
    assert cli_main(["qkd", "receiver", "--connect", "127.0.0.1:1"]) == 2
    assert "pre-shared secret" in capsys.readouterr().err


async def test_receiver_restart_goes_on_from_its_saved_auth_state(tmp_path: Path) -> None:
    params = link_params("toshiba", loss_db=2.0, block_bits=BLOCK)
    config = ProtocolConfig(block_bits=BLOCK)
    secret = os.urandom(32 + 2 * 2048 * 32)
    sink_a, sink_b = ListSink(), ListSink()
    tx = TransmitterNode(params, "127.0.0.1:0", sink_a, secret, config=config, seed=31,
                         realtime=False, chunk_pulses=2_000_000,
                         auth_state=tmp_path / "a.auth")  # fmt: skip
    await tx.start()

    async def run_receiver(blocks: int) -> None:
        rx = ReceiverNode(params, f"127.0.0.1:{tx.port}", sink_b, secret, config=config,
                          seed=32, retry_seconds=0.05, first_block=len(sink_b.blocks),
                          auth_state=tmp_path / "b.auth")  # fmt: skip
        await rx.start()
        try:
            async with asyncio.timeout(60):
                while True:
                    if len(sink_b.blocks) >= blocks:
                        break
                    await asyncio.sleep(0.02)
        finally:
            await rx.stop()

    try:
        await run_receiver(1)
        saved = (tmp_path / "b.auth").read_bytes()
        await run_receiver(3)  # a fresh receiver process would load the same file
    finally:
        await tx.stop()
    assert saved != (tmp_path / "b.auth").read_bytes()
    by_id = {b.block_id: b.key for b in sink_a.blocks}
    assert len(sink_b.blocks) >= 3
    assert all(by_id.get(b.block_id) == b.key for b in sink_b.blocks)
    ids = [b.block_id for b in sink_b.blocks]
    assert ids == sorted(set(ids))
