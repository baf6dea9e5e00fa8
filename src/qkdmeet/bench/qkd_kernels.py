"""Stage benchmarks of the post-processing kernels: sifting, Cascade, verification, PA.

``run_kernel_benchmarks(...) -> dict`` measures every stage on synthetic data
of the link's shape and returns plain numbers (the QKD layer's ``qkdmeet
bench qkd`` merges them into its report); ``main(argv)`` is the command line
(``--json`` prints one JSON object on stdout, progress goes to stderr).

Every figure is the median of ``repeats`` runs after a warm-up run (numba
compilation excluded). The machine is shared and noisy: compare medians.
Throughputs:
- sifting: announced detections processed per second, both ends' work
  (announcement, Alice's look-up and reply, Bob's sift);
- error correction: corrected key bits per second for Alice's and Bob's end
  separately (the rate of each end's core when blocks are pipelined), for
  both ends on one core, and for one block with the ends in two threads
  (Cascade is a ping-pong: only INIT overlaps, via ``ReconcilerBob.precompute``);
  efficiency f = disclosed / (n h(QBER)); frame error rate;
- verification: key bits tagged per second (one end);
- privacy amplification: output bits per second (one end) for each input size,
  Toeplitz and multiply-add-shift hashing.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from qkdmeet.qkd.kernels import ldpc
from qkdmeet.qkd.kernels.bits import binary_entropy
from qkdmeet.qkd.kernels.modular_hash import multiply_add_shift_hash, multiply_add_shift_seed_bits
from qkdmeet.qkd.kernels.privacy import toeplitz_hash, toeplitz_seed_bits
from qkdmeet.qkd.kernels.reconciliation import ReconcilerAlice, ReconcilerBob, reconcile_local
from qkdmeet.qkd.kernels.sifting import alice_sift, bob_announcement, bob_sift
from qkdmeet.qkd.kernels.verification import (
    verification_seed_bits,
    verification_tag,
    verification_tag_bits,
)

DEFAULT_QBERS = (0.01, 0.02, 0.03, 0.04)
DEFAULT_PA_SIZES = (1_000_000, 10_000_000, 100_000_000)
#: Secure fraction l / n assumed when sizing the PA output (Toshiba-like link at 2 dB).
DEFAULT_PA_RATIO = 0.5


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _median_time(fn: Callable[[], object], repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up: numba compilation, page faults
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


@dataclass
class _Events:
    pulse_index: npt.NDArray[np.int64]
    bit: npt.NDArray[np.uint8]
    basis: npt.NDArray[np.uint8]
    intensity: npt.NDArray[np.uint8]


def bench_sifting(counts: int, repeats: int, seed: int = 1) -> dict[str, Any]:
    """Both ends' sifting of ``counts`` detections (biased bases q_x = 0.9)."""
    rng = np.random.default_rng(seed)
    pulses = np.cumsum(rng.integers(1, 200, counts)).astype(np.int64)
    alice = _Events(
        pulses,
        rng.integers(0, 2, counts, dtype=np.uint8),
        (rng.random(counts) > 0.9).astype(np.uint8),
        rng.choice(3, counts, p=[0.7, 0.2, 0.1]).astype(np.uint8),
    )
    bob = _Events(
        pulses,
        rng.integers(0, 2, counts, dtype=np.uint8),
        (rng.random(counts) > 0.9).astype(np.uint8),
        np.zeros(counts, np.uint8),
    )

    pulse, basis = bob_announcement(bob)
    reply = alice_sift(alice, pulse, basis)

    def run_alice() -> object:
        return alice_sift(alice, pulse, basis)

    def run_bob() -> object:
        bob_announcement(bob)
        return bob_sift(bob, reply.reply_basis, reply.reply_intensity)

    t_alice, runs_alice = _median_time(run_alice, repeats)
    t_bob, runs_bob = _median_time(run_bob, repeats)
    return {
        "counts": counts,
        "counts_per_s_alice": counts / t_alice,
        "counts_per_s_bob": counts / t_bob,
        "counts_per_s": counts / (t_alice + t_bob),
        "counts_per_s_note": "counts_per_s: both ends' work on one core",
        "runs_s_alice": runs_alice,
        "runs_s_bob": runs_bob,
        "sifted_fraction": reply.sifted / counts,
    }


def _ping_pong_two_threads(
    a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8], qber: float, seed: int
) -> float:
    """One block's wall time with the two ends in two threads (INIT overlapped)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        t0 = time.perf_counter()
        alice = ReconcilerAlice(a)
        bob = ReconcilerBob(b, qber, seed=seed)
        init = bob.next_request()
        if init is None:  # pragma: no cover - a fresh reconciler always starts with INIT
            raise RuntimeError("Cascade produced no INIT request")
        pending = pool.submit(alice.answer, init)
        bob.precompute()
        bob.handle_reply(pending.result())
        while (request := bob.next_request()) is not None:
            bob.handle_reply(alice.answer(request))
        return time.perf_counter() - t0


def bench_error_correction(
    n: int, qbers: tuple[float, ...], repeats: int, seed: int = 2
) -> list[dict[str, Any]]:
    """Cascade on ``n``-bit blocks with i.i.d. errors at each QBER."""
    rng = np.random.default_rng(seed)
    out = []
    reconcile_local(  # compile every kernel before timing
        rng.integers(0, 2, 5000, dtype=np.uint8), rng.integers(0, 2, 5000, dtype=np.uint8), 0.3
    )
    for qber in qbers:
        f_list, t_alice, t_bob, t_both, rounds = [], [], [], [], []
        t_overlap: list[float] = []
        frames = frame_errors = residual = 0
        for _ in range(repeats):
            a = rng.integers(0, 2, n, dtype=np.uint8)
            b = a ^ (rng.random(n) < qber).astype(np.uint8)
            alice = ReconcilerAlice(a)
            t0 = time.perf_counter()
            bob = ReconcilerBob(b, qber, seed=int(rng.integers(1 << 62)))
            tb = time.perf_counter() - t0
            ta = 0.0
            while True:
                t0 = time.perf_counter()
                request = bob.next_request()
                tb += time.perf_counter() - t0
                if request is None:
                    break
                t0 = time.perf_counter()
                reply = alice.answer(request)
                ta += time.perf_counter() - t0
                t0 = time.perf_counter()
                bob.handle_reply(reply)
                tb += time.perf_counter() - t0
            corrected = bob.corrected_bits
            t_overlap.append(_ping_pong_two_threads(a, b, qber, int(rng.integers(1 << 62))))
            errors = int(np.count_nonzero(a != b))
            f_list.append(bob.leaked_bits / (n * binary_entropy(errors / n)))
            t_alice.append(ta)
            t_bob.append(tb)
            t_both.append(ta + tb)
            rounds.append(bob.rounds)
            fb = min(1 << 16, n)
            diff = corrected != a
            per_frame = np.add.reduceat(diff, np.arange(0, n, fb))
            frames += per_frame.size
            frame_errors += int(np.count_nonzero(per_frame))
            residual += int(diff.sum())
        row = {
            "qber": qber,
            "n": n,
            "efficiency_f": statistics.median(f_list),
            "efficiency_f_runs": f_list,
            "frames": frames,
            "frame_errors": frame_errors,
            "frame_error_rate": frame_errors / frames,
            "residual_errors": residual,
            "round_trips": statistics.median(rounds),
            "mbps_alice": n / statistics.median(t_alice) / 1e6,
            "mbps_bob": n / statistics.median(t_bob) / 1e6,
            "mbps_both_ends_one_core": n / statistics.median(t_both) / 1e6,
            "mbps_one_block_two_threads": n / statistics.median(t_overlap) / 1e6,
        }
        _log(
            f"  EC qber {qber:.2f}: f {row['efficiency_f']:.3f}, FER {frame_errors}/{frames}, "
            f"Alice {row['mbps_alice']:.1f} Mb/s, Bob {row['mbps_bob']:.1f} Mb/s, one block "
            f"on two threads {row['mbps_one_block_two_threads']:.1f} Mb/s"
        )
        out.append(row)
    return out


def bench_ldpc(
    n: int, qbers: tuple[float, ...], frames: int, max_fer: float = 0.2, seed: int = 5
) -> list[dict[str, Any]]:
    """The LDPC alternative: highest rate decoding ``frames`` frames with FER <= max_fer."""
    out = []
    for qber in qbers:
        rng = np.random.default_rng(seed)
        start = round(1.0 - binary_entropy(qber), 2)  # the Shannon limit, f = 1
        decode_s = 0.0
        decoded_bits = 0
        row: dict[str, Any] = {"qber": qber, "n": n, "frames": frames}
        for rate in np.arange(start, 0.3, -0.01):
            code = ldpc.LdpcCode.random(n, float(rate), seed=seed)
            failures = 0
            for _ in range(frames):
                a = rng.integers(0, 2, n, dtype=np.uint8)
                b = a ^ (rng.random(n) < qber).astype(np.uint8)
                s = ldpc.syndrome(code, a)
                t0 = time.perf_counter()
                x, ok = ldpc.decode(code, b, s, qber)
                decode_s += time.perf_counter() - t0
                decoded_bits += n
                failures += int(not (ok and np.array_equal(x, a)))
            if failures / frames <= max_fer:
                row.update(
                    rate=code.rate,
                    efficiency_f=code.m / (n * binary_entropy(qber)),
                    frame_error_rate=failures / frames,
                )
                break
        row["mbps_decoder"] = decoded_bits / decode_s / 1e6 if decode_s else 0.0
        _log(
            f"  LDPC qber {qber:.2f}: f {row.get('efficiency_f', math.inf):.3f}, "
            f"decoder {row['mbps_decoder']:.2f} Mb/s"
        )
        out.append(row)
    return out


def bench_verification(n: int, repeats: int, eps_cor: float = 1e-15) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    t = verification_tag_bits(eps_cor)
    key = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, verification_seed_bits(n, t), dtype=np.uint8)
    med, times = _median_time(lambda: verification_tag(key, seed, t), repeats)
    return {"n": n, "tag_bits": t, "seconds": med, "mbps": n / med / 1e6, "runs_s": times}


_PA_FAMILIES = {
    "toeplitz": (toeplitz_hash, toeplitz_seed_bits),
    "multiply_add_shift": (multiply_add_shift_hash, multiply_add_shift_seed_bits),
}


def bench_privacy(
    sizes: tuple[int, ...], repeats: int, ratio: float = DEFAULT_PA_RATIO
) -> list[dict[str, Any]]:
    """Both 2-universal families at each input size, output ``ratio * n`` bits."""
    rng = np.random.default_rng(4)
    out = []
    for n in sizes:
        out_len = int(n * ratio)
        key = rng.integers(0, 2, n, dtype=np.uint8)
        reps = repeats if n <= 10_000_000 else 1
        for family, (hash_fn, seed_bits) in _PA_FAMILIES.items():
            seed = rng.integers(0, 2, seed_bits(n, out_len), dtype=np.uint8)

            def run(
                k: npt.NDArray[np.uint8] = key,
                s: npt.NDArray[np.uint8] = seed,
                m: int = out_len,
                fn: Callable[..., object] = hash_fn,
            ) -> object:
                return fn(k, s, m)

            med, times = _median_time(run, reps)
            del seed
            row = {
                "family": family,
                "n": n,
                "output_bits": out_len,
                "seconds": med,
                "output_mbps": out_len / med / 1e6,
                "input_mbps": n / med / 1e6,
                "runs_s": times,
            }
            _log(f"  PA {family} n={n:.0e}: {row['output_mbps']:.1f} Mb/s out ({med:.2f} s)")
            out.append(row)
    return out


def run_kernel_benchmarks(
    *,
    sift_counts: int = 10_000_000,
    ec_bits: int = 10_000_000,
    qbers: tuple[float, ...] = DEFAULT_QBERS,
    verification_bits: int = 10_000_000,
    pa_sizes: tuple[int, ...] = DEFAULT_PA_SIZES,
    repeats: int = 3,
    quick: bool = False,
) -> dict[str, Any]:
    """Run every stage benchmark and return the figures (see the module docstring).

    ``quick`` replaces every size by 2 * 10^5 and runs once (a smoke run, ~2 s).
    """
    if quick:
        sift_counts = ec_bits = verification_bits = 200_000
        pa_sizes, repeats = (200_000,), 1
    _log("sifting ...")
    sifting = bench_sifting(sift_counts, repeats)
    _log(
        f"  Alice {sifting['counts_per_s_alice'] / 1e6:.0f}, Bob "
        f"{sifting['counts_per_s_bob'] / 1e6:.0f}, both on one core "
        f"{sifting['counts_per_s'] / 1e6:.0f} M counts/s"
    )
    _log("error correction ...")
    ec = bench_error_correction(ec_bits, qbers, repeats)
    _log("verification ...")
    verification = bench_verification(verification_bits, repeats)
    _log(f"  {verification['mbps']:.0f} Mb/s")
    _log("privacy amplification ...")
    pa = bench_privacy(pa_sizes, repeats)
    ec_one_end = min(min(r["mbps_alice"], r["mbps_bob"]) for r in ec)
    pa_at = {f"{r['family']}@{r['n']:.0e}": r["output_mbps"] for r in pa}
    # one end's busy time per sifted key bit, stages in sequence (each end on its own core)
    ec_s_per_bit = 1 / (ec_one_end * 1e6)
    ver_s_per_bit = 1 / (verification["mbps"] * 1e6)
    chain: dict[str, float] = {}
    for r in pa:
        if r["n"] != ec_bits:
            continue
        pa_s_per_bit = r["seconds"] / r["n"]
        per_bit = ec_s_per_bit + ver_s_per_bit + pa_s_per_bit
        chain[r["family"]] = DEFAULT_PA_RATIO / per_bit / 1e6
    stages = {
        "chain_secure_mbps_per_end": chain,
        "chain_assumes": f"secure fraction {DEFAULT_PA_RATIO} of the sifted X key, "
        f"{ec_bits}-bit blocks pipelined so neither end idles, sifting excluded",
        "sifting_counts_per_s": sifting["counts_per_s"],
        "sifting_counts_per_s_per_end_worst": min(
            sifting["counts_per_s_alice"], sifting["counts_per_s_bob"]
        ),
        "ec_mbps_per_end_worst": ec_one_end,
        "verification_mbps": verification["mbps"],
        "pa_output_mbps": pa_at,
    }
    return {
        "note": "medians of repeated runs on a shared, noisy 2-core machine; one core per end",
        "repeats": repeats,
        "sifting": sifting,
        "error_correction": ec,
        "verification": verification,
        "privacy_amplification": pa,
        "summary": stages,
    }


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="qkdmeet bench qkd-kernels", description=__doc__)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--ec-bits", type=float, default=1e7)
    p.add_argument("--sift-counts", type=float, default=1e7)
    p.add_argument("--pa-sizes", default="1e6,1e7,1e8", help="comma-separated input sizes")
    p.add_argument(
        "--ldpc", action="store_true", help="also measure the LDPC alternative (minutes)"
    )
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    if args.repeats < 1:
        print("--repeats must be at least 1", file=sys.stderr)
        return 2
    try:
        pa_sizes = tuple(int(float(x)) for x in args.pa_sizes.split(",") if x)
    except ValueError:
        print(f"--pa-sizes: not a list of numbers: {args.pa_sizes!r}", file=sys.stderr)
        return 2
    result = run_kernel_benchmarks(
        sift_counts=int(args.sift_counts),
        ec_bits=int(args.ec_bits),
        pa_sizes=pa_sizes,
        repeats=args.repeats,
        quick=args.quick,
    )
    if args.ldpc:
        _log("LDPC (the measured alternative to Cascade) ...")
        result["ldpc_alternative"] = bench_ldpc(1 << 14, DEFAULT_QBERS, 5)
    if args.json:
        print(json.dumps(result, default=float))
    else:
        s = result["summary"]
        print(
            f"sifting            {s['sifting_counts_per_s_per_end_worst'] / 1e6:8.1f} M counts/s "
            f"per end ({s['sifting_counts_per_s'] / 1e6:.1f} both ends on one core)"
        )
        for r in result["error_correction"]:
            print(
                f"EC qber {r['qber']:.2f}       f {r['efficiency_f']:.3f}  "
                f"FER {r['frame_error_rate']:.2g}  Alice {r['mbps_alice']:.1f} Mb/s  "
                f"Bob {r['mbps_bob']:.1f} Mb/s  both/1 core {r['mbps_both_ends_one_core']:.1f}"
            )
        print(f"verification       {s['verification_mbps']:8.1f} Mb/s")
        for r in result["privacy_amplification"]:
            print(f"PA {r['family']:<18} n={r['n']:.0e} {r['output_mbps']:8.1f} Mb/s output")
    return 0 if all(math.isfinite(r["efficiency_f"]) for r in result["error_correction"]) else 1
