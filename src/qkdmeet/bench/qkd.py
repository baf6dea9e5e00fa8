"""``qkdmeet bench qkd --json``: the QKD layer's figures in one JSON object.

- ``kernels``: each post-processing stage alone
  (:func:`qkdmeet.bench.qkd_kernels.run_kernel_benchmarks`: sifting, Cascade
  efficiency f, frame error rate and throughput at QBER 1-4 %, verification,
  privacy amplification);
- ``model``: fidelity of the link model (Toshiba-like preset at 2 dB and
  1.4 dB with blocks of 10^8 against the field result; Lim et al. 2014 Fig. 1
  figures), from :mod:`qkdmeet.bench.qkd_model`;
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
import os
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from qkdmeet.qkd import finite_key as fk
from qkdmeet.qkd.figures import json_ready
from qkdmeet.qkd.link import DEFAULT_BLOCK_BITS, link_params
from qkdmeet.qkd.protocol import ProtocolConfig
from qkdmeet.qkd.rate_curve import LIM_BLOCK_SIZES


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def limiting_stage(stats: dict[str, Any]) -> dict[str, Any]:
    """Which end and stage hold the link back, from CPU seconds per wall-clock second.

    Stage times are CPU seconds (``time.thread_time`` of the thread that ran
    them). The source's sampling and each end's stages compete for the same
    cores: when the cores are full (``cpu_share_both_ends`` near the core
    count) the rate is CPU-bound and the biggest consumer is what to make
    cheaper; when they are not, the ends wait for each other (round trips).
    """
    elapsed = max(float(stats["elapsed_s"]), 1e-9)
    st = stats["stage_seconds"]
    loads = {
        "sampling (simulated device)": float(st["sampling"] or 0.0) / elapsed,
        "transmitter post-processing": sum(st["alice"].values()) / elapsed,
        "receiver post-processing": sum(st["bob"].values()) / elapsed,
    }
    stages: dict[str, float] = {}
    for end in ("alice", "bob"):
        for name, sec in st[end].items():
            stages[f"{end}:{name}"] = float(sec) / elapsed
    top = max(stages, key=lambda k: stages[k]) if stages else ""
    cores = os.cpu_count() or 1
    used = stats.get("cpu_share_both_ends")
    cpu_bound = isinstance(used, float) and used > 0.8 * cores
    return {
        "load_per_actor": loads,
        "load_per_stage": stages,
        "busiest_actor": max(loads, key=lambda k: loads[k]),
        "busiest_stage": top,
        "cpu_share_both_ends": used,
        "cores": cores,
        "why": (
            f"CPU-bound: both ends use {used:.2f} of {cores} cores; the largest consumer is "
            f"{max(loads, key=lambda k: loads[k])}"
            if cpu_bound and isinstance(used, float)
            else f"latency-bound: both ends use {used} of {cores} cores, the rest is waiting "
            "(round trips, the pipeline's depth)"
        ),
    }


def stage_throughput(stats: dict[str, Any]) -> dict[str, Any]:
    """Mb/s of input per core for every stage: sifted bits (detections for sampling
    and sifting) over the stage's CPU seconds."""
    st = stats["stage_seconds"]
    sifted = float(stats.get("sifted_bits") or 0.0)
    detections = float(stats.get("detections") or 0.0)
    out: dict[str, Any] = {}
    sampled = float(stats.get("sampled_device_seconds") or 0.0)
    if st.get("sampling"):
        out["sampling_device_seconds_per_core_second"] = sampled / float(st["sampling"])
    for end in ("alice", "bob"):
        for name, sec in st[end].items():
            if not sec:
                continue
            base = detections if name == "sifting" else sifted
            unit = "M_detections_per_s" if name == "sifting" else "Mb_per_s"
            out[f"{end}:{name}:{unit}"] = base / float(sec) / 1e6
    return out


async def end_to_end(
    seconds: float, *, block_bits: int, loss_db: float = 2.0, seed: int = 7
) -> dict[str, Any]:
    """The real-time link for ``seconds``, the two ends in two processes over TCP (the
    demo's shape): rates, the finite-key ceiling reached, stage loads and throughputs."""
    from qkdmeet.qkd.cli import derived_figures
    from qkdmeet.qkd.networked import run_two_processes

    params = link_params("toshiba", loss_db=loss_db, block_bits=block_bits)
    raw = await run_two_processes(
        {"loss_db": loss_db, "block_bits": block_bits, "seed": seed}, seconds
    )
    stats = derived_figures(raw, params, ProtocolConfig(block_bits=block_bits))
    net = fk.net_key_rate(params, fk.AUTH_BITS_PER_BLOCK)
    after = stats.get("secure_key_rate_after_warmup_bps") or 0.0
    blocks_s = stats["elapsed_s"] / max(stats["blocks"] + stats["aborted_blocks"], 1)
    return {
        "loss_db": loss_db,
        "block_bits": block_bits,
        "processes": stats.get("processes"),
        "seconds": stats["elapsed_s"],
        "secure_key_rate_bps": stats["secure_key_rate_bps"],
        "secure_key_rate_after_warmup_bps": after,
        "time_to_first_key_s": stats.get("time_to_first_key_s"),
        "model_net_key_rate_bps": net.net_bps,
        "model_secure_key_rate_bps": stats["model_secure_key_rate_bps"],
        "model_auth_share": net.auth_share,
        "model_fraction_reached": after / net.net_bps if net.net_bps > 0 else 0.0,
        "ceiling_fraction": stats["ceiling_fraction"],
        "asymptotic_key_rate_bps": stats["asymptotic_key_rate_bps"],
        "sifted_rate_bps": stats["sifted_rate_bps"],
        "device_fraction_processed": stats["device_fraction_processed"],
        "blocks": stats["blocks"],
        "aborted_blocks": stats["aborted_blocks"],
        "wall_seconds_per_block": blocks_s,
        "ec_round_trips_per_block": stats.get("ec_round_trips_per_block"),
        "messages_per_block": stats.get("messages_per_block"),
        "auth_masks_per_block": stats.get("auth_masks_per_block"),
        "auth_key_per_block_bits": stats.get("auth_key_per_block_bits"),
        "qber": stats["qber"],
        "phase_error_bound": stats["phase_error_bound"],
        "ec_efficiency": stats["ec_efficiency"],
        "auth_key_spent_bits": stats["auth_key_spent_bits"],
        "auth_key_refilled_bits": stats["auth_key_refilled_bits"],
        "keys_identical": stats["keys_identical"],
        "stopped": stats.get("process_errors"),
        "cpu_share": stats.get("cpu_share"),
        "stage_seconds": stats["stage_seconds"],
        "stage_throughput": stage_throughput(stats),
        "limits": limiting_stage(stats),
    }


def model_figures(quick: bool) -> dict[str, Any]:
    from qkdmeet.bench import qkd_model as model_bench

    out: dict[str, Any] = {
        "toshiba_2db": model_bench.toshiba_figures(2.0),
        "toshiba_sendai_1.4db": model_bench.toshiba_figures(1.4),
        "field_result_bps": model_bench.FIELD_RESULT_BPS,
    }
    sizes = (10**4, 10**7, 10**9) if quick else LIM_BLOCK_SIZES
    out["lim2014"] = model_bench.lim_figures(sizes)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from qkdmeet.bench.qkd_kernels import run_kernel_benchmarks

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
    seconds = 15.0 if args.quick else args.seconds  # two fresh processes: numba loads, block 1
    block = 1_000_000 if args.quick else int(args.block_bits)
    runs = [
        asyncio.run(end_to_end(seconds, block_bits=block, seed=7 + i))
        for i in range(1 if args.quick else args.runs)
    ]
    rates = [r["secure_key_rate_after_warmup_bps"] for r in runs]
    med = sorted(runs, key=lambda r: r["secure_key_rate_after_warmup_bps"])[len(runs) // 2]
    result["end_to_end"] = {**med, "secure_key_rate_bps_runs": rates,
                            "secure_key_rate_bps_median": statistics.median(rates)}  # fmt: skip
    _log(f"  {med['secure_key_rate_bps'] / 1e6:.2f} Mb/s secure, limited by "
         f"{med['limits']['busiest_actor']} ({med['limits']['busiest_stage']})")  # fmt: skip
    if args.sweep:
        sweep = []
        for b in (4_000_000, 10_000_000, 20_000_000, 40_000_000):
            _log(f"  sweep: blocks of {b:.0e} ...")
            r = asyncio.run(end_to_end(args.seconds, block_bits=b))
            sweep.append({k: r[k] for k in ("block_bits", "secure_key_rate_bps",
                                             "secure_key_rate_after_warmup_bps",
                                             "model_fraction_reached", "time_to_first_key_s",
                                             "wall_seconds_per_block", "blocks",
                                             "model_net_key_rate_bps")})  # fmt: skip
        result["block_size_sweep"] = sweep
    e2e = result["end_to_end"]
    ec = result["kernels"]["error_correction"]
    result["summary"] = {
        "secure_key_rate_bps": e2e["secure_key_rate_bps_median"],
        "secure_key_rate_after_warmup_bps": e2e["secure_key_rate_after_warmup_bps"],
        "model_net_key_rate_bps": e2e["model_net_key_rate_bps"],
        "model_fraction_reached": e2e["model_fraction_reached"],
        "time_to_first_key_s": e2e["time_to_first_key_s"],
        "block_bits": e2e["block_bits"],
        "ec_round_trips_per_block": e2e["ec_round_trips_per_block"],
        "auth_masks_per_block": e2e["auth_masks_per_block"],
        "cpu_share": e2e["cpu_share"],
        "limits_why": e2e["limits"]["why"],
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
    p.add_argument("--sweep", action="store_true", help="also try blocks of 4e6 to 4e7")
    args = p.parse_args(list(argv) if argv is not None else None)
    if args.runs < 1 or args.seconds <= 0:
        print("--runs must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    result = json_ready(run(args))
    print(json.dumps(result) if args.json else json.dumps(result["summary"], indent=2))
    return 0 if result["end_to_end"]["keys_identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
