"""``qkdmeet bench qkd --json``: the QKD layer's figures in one JSON object.

- ``kernels``: each post-processing stage alone
  (:func:`qkdmeet.qkd.kernels.bench.run_kernel_benchmarks`: sifting, Cascade
  efficiency f, frame error rate and throughput at QBER 1-4 %, verification,
  privacy amplification);
- ``model``: fidelity of the link model (Toshiba-like preset at 2 dB and
  1.4 dB with blocks of 10^8 against the field result; Lim et al. 2014 Fig. 1
  figures), from :mod:`qkdmeet.qkd.model_bench`;
- ``end_to_end``: the real-time link (both actors in this process, the
  authenticated in-memory channel, the pulse source at the device clock) at
  2 dB for ``--seconds``: distilled secure bits per wall-clock second, the
  fraction of the infinite-key f = 1 ceiling of the same device
  (:func:`qkdmeet.qkd.finite_key.asymptotic_key_rate_bps`) it reaches, the
  busy time of every stage at each end, and the stage that limits;
  ``--sweep`` repeats it for several block sizes (how the default block size
  was chosen).

Progress goes to stderr. Timings come from a shared 2-core machine: run
under ``flock /tmp/qkdmeet-bench.lock`` and compare medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from qkdmeet.qkd.link import DEFAULT_BLOCK_BITS, json_ready, link_params
from qkdmeet.qkd.protocol import ProtocolConfig
from qkdmeet.qkd.rate_curve import LIM_BLOCK_SIZES


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def limiting_stage(stats: dict[str, Any]) -> dict[str, Any]:
    """Which busy time comes closest to the wall-clock time: that stage holds the link back.

    The source's sampling runs in its own thread; each end's stages run one
    after another (one block at a time), so an end's total is its load.
    """
    elapsed = max(float(stats["elapsed_s"]), 1e-9)
    st = stats["stage_seconds"]
    loads = {
        "sampling (simulated device)": float(st["sampling"]) / elapsed,
        "transmitter post-processing": sum(st["alice"].values()) / elapsed,
        "receiver post-processing": sum(st["bob"].values()) / elapsed,
    }
    stages: dict[str, float] = {}
    for end in ("alice", "bob"):
        for name, sec in st[end].items():
            stages[f"{end}:{name}"] = float(sec) / elapsed
    top = max(stages, key=lambda k: stages[k]) if stages else ""
    return {
        "load_per_actor": loads,
        "load_per_stage": stages,
        "busiest_actor": max(loads, key=lambda k: loads[k]),
        "busiest_stage": top,
        "note": "load = busy seconds per wall-clock second; the 2 cores are shared by the "
        "source and both ends (and, on this machine, other users)",
    }


async def end_to_end(
    seconds: float, *, block_bits: int, loss_db: float = 2.0, realtime: bool = True, seed: int = 7
) -> dict[str, Any]:
    """The real-time link for ``seconds``: rates, ceiling fraction, stage loads."""
    from qkdmeet.qkd.cli import simulate

    params = link_params("toshiba", loss_db=loss_db, block_bits=block_bits)
    stats = await simulate(
        params, ProtocolConfig(block_bits=block_bits), seconds, seed=seed, realtime=realtime
    )
    blocks_s = stats["elapsed_s"] / max(stats["blocks"] + stats["aborted_blocks"], 1)
    return {
        "loss_db": loss_db,
        "block_bits": block_bits,
        "realtime": realtime,
        "seconds": stats["elapsed_s"],
        "secure_key_rate_bps": stats["secure_key_rate_bps"],
        "secure_plus_auth_rate_bps": (stats["secure_bits"] + stats["auth_key_refilled_bits"])
        / max(stats["elapsed_s"], 1e-9),
        "ceiling_fraction": stats["ceiling_fraction"],
        "asymptotic_key_rate_bps": stats["asymptotic_key_rate_bps"],
        "model_secure_key_rate_bps": stats["model_secure_key_rate_bps"],
        "sifted_rate_bps": stats["sifted_rate_bps"],
        "device_fraction_processed": stats["device_fraction_processed"],
        "blocks": stats["blocks"],
        "aborted_blocks": stats["aborted_blocks"],
        "wall_seconds_per_block": blocks_s,
        "qber": stats["qber"],
        "phase_error_bound": stats["phase_error_bound"],
        "ec_efficiency": stats["ec_efficiency"],
        "auth_key_spent_bits": stats["auth_key_spent_bits"],
        "auth_key_refilled_bits": stats["auth_key_refilled_bits"],
        "keys_identical": stats["keys_identical"],
        "stopped": stats["stopped"],
        "stage_seconds": stats["stage_seconds"],
        "limits": limiting_stage(stats),
    }


def model_figures(quick: bool) -> dict[str, Any]:
    from qkdmeet.qkd import model_bench

    out: dict[str, Any] = {
        "toshiba_2db": model_bench.toshiba_figures(2.0),
        "toshiba_sendai_1.4db": model_bench.toshiba_figures(1.4),
        "field_result_bps": model_bench.FIELD_RESULT_BPS,
    }
    sizes = (10**4, 10**7, 10**9) if quick else LIM_BLOCK_SIZES
    out["lim2014"] = model_bench.lim_figures(sizes)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from qkdmeet.qkd.kernels.bench import run_kernel_benchmarks

    result: dict[str, Any] = {"note": "medians on a shared 2-core machine; see module docstring"}
    _log("QKD kernels ...")
    if args.quick:
        result["kernels"] = run_kernel_benchmarks(quick=True)
    else:
        result["kernels"] = run_kernel_benchmarks(
            sift_counts=10_000_000,
            ec_bits=DEFAULT_BLOCK_BITS,
            pa_sizes=(1_000_000, DEFAULT_BLOCK_BITS, 10_000_000),
            repeats=args.repeats,
        )
    _log("link model ...")
    result["model"] = model_figures(args.quick)
    _log("end to end ...")
    seconds = 4.0 if args.quick else args.seconds
    block = 1_000_000 if args.quick else int(args.block_bits)
    runs = [
        asyncio.run(end_to_end(seconds, block_bits=block, seed=7 + i))
        for i in range(1 if args.quick else args.runs)
    ]
    rates = [r["secure_key_rate_bps"] for r in runs]
    med = sorted(runs, key=lambda r: r["secure_key_rate_bps"])[len(runs) // 2]
    result["end_to_end"] = {**med, "secure_key_rate_bps_runs": rates,
                            "secure_key_rate_bps_median": statistics.median(rates)}  # fmt: skip
    _log(f"  {med['secure_key_rate_bps'] / 1e6:.2f} Mb/s secure, limited by "
         f"{med['limits']['busiest_actor']} ({med['limits']['busiest_stage']})")  # fmt: skip
    if args.sweep:
        sweep = []
        for b in (1_000_000, 4_000_000, 10_000_000):
            _log(f"  sweep: blocks of {b:.0e} ...")
            r = asyncio.run(end_to_end(args.seconds, block_bits=b))
            sweep.append({k: r[k] for k in ("block_bits", "secure_key_rate_bps",
                                             "ceiling_fraction", "wall_seconds_per_block",
                                             "blocks", "model_secure_key_rate_bps")})  # fmt: skip
        result["block_size_sweep"] = sweep
    e2e = result["end_to_end"]
    ec = result["kernels"]["error_correction"]
    result["summary"] = {
        "secure_key_rate_bps": e2e["secure_key_rate_bps_median"],
        "ceiling_fraction": e2e["ceiling_fraction"],
        "goal_bps": 10e6,
        "minimum_bps": 3e6,
        "limiting": e2e["limits"]["busiest_actor"],
        "limiting_stage": e2e["limits"]["busiest_stage"],
        "ec_efficiency_by_qber": {str(r["qber"]): r["efficiency_f"] for r in ec},
        "ec_frame_error_rate_by_qber": {str(r["qber"]): r["frame_error_rate"] for r in ec},
        "model_toshiba_2db_bps": result["model"]["toshiba_2db"]["model_secure_key_rate_bps"],
        "kernel_stages": result["kernels"]["summary"],
    }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="qkdmeet bench qkd", description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quick", action="store_true", help="small sizes, short run (smoke test)")
    p.add_argument("--seconds", type=float, default=30.0, help="end-to-end run time")
    p.add_argument("--runs", type=int, default=3, help="end-to-end runs (median reported)")
    p.add_argument("--repeats", type=int, default=3, help="kernel benchmark repeats")
    p.add_argument("--block-bits", type=float, default=DEFAULT_BLOCK_BITS)
    p.add_argument("--sweep", action="store_true", help="also try blocks of 1e6, 4e6, 1e7")
    args = p.parse_args(list(argv) if argv is not None else None)
    if args.runs < 1 or args.seconds <= 0:
        print("--runs must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    result = json_ready(run(args))
    print(json.dumps(result) if args.json else json.dumps(result["summary"], indent=2))
    return 0 if result["end_to_end"]["keys_identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
