"""The kernels' warm-up runs the real path once on a small block."""

from __future__ import annotations

from qkdmeet.qkd.link import link_params
from qkdmeet.qkd.warmup import warm_up


def test_warm_up_runs_every_stage() -> None:
    params = link_params("toshiba", loss_db=2.0, block_bits=100_000)
    out = warm_up(params)
    assert out["sifted_bits"] >= 1024  # enough for Cascade, verification and hashing to run
    assert out["cascade_rounds"] > 5
    assert 0.0 < out["seconds"] < 120.0
