"""Secure key rate against fibre length, from the finite-key model, as a PNG.

For each preset and block size the intensities, their probabilities and q_x
are re-optimised at every distance (:func:`qkdmeet.qkd.finite_key.optimise_intensities`,
warm-started from the previous distance) for the rate net of authentication.
Every finite-key curve's ``rate`` is net of the key that authenticating the
classical channel takes (``auth_bits_per_block`` per block, by default
:data:`qkdmeet.qkd.finite_key.AUTH_BITS_PER_BLOCK`), with the gross rate
(``gross_rate``) and the authentication share (``auth_share``) beside it; the
plot draws net solid and gross dotted in the same colour. Panels:

- ``toshiba``: secure key rate in bits per second at the device's clock,
  blocks of n_X = 10^8, with the infinite-key ceiling at f_EC = 1 (dashed);
- ``lim2014``: secret key rate per pulse for n_X = 10^4 ... 10^9 and the
  asymptotic rate; the gross curves are the quantity of Lim et al. 2014,
  Fig. 1 (the paper does not charge authentication).

Run ``python -m qkdmeet.qkd.rate_curve out.png [--max-km 150] [--step-km 5]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qkdmeet.qkd import finite_key as fk
from qkdmeet.qkd.params import LinkParams, get_preset

#: Block sizes of Lim et al. 2014, Fig. 1.
LIM_BLOCK_SIZES = (10**4, 10**5, 10**6, 10**7, 10**8, 10**9)


@dataclass(slots=True)
class RateCurve:
    """One curve: ``rate[i]`` at ``distance_km[i]`` in ``unit`` ("bit/s" or "bit/pulse").

    ``rate`` is net of authentication (``auth_bits_per_block`` of key per
    block; negative where authentication costs more than the block yields),
    ``gross_rate`` before it, ``auth_share`` the share of the gross key that
    authentication takes (0 to 1). ``n_x`` is None for the asymptotic
    (infinite-key) curve, where authentication costs nothing per bit.
    """

    preset: str
    n_x: int | None
    unit: str
    distance_km: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)
    gross_rate: list[float] = field(default_factory=list)
    auth_share: list[float] = field(default_factory=list)
    auth_bits_per_block: float = 0.0

    @property
    def label(self) -> str:
        if self.n_x is None:
            return "asymptotic, f = 1"
        return f"n_X = 1e{round(math.log10(self.n_x))}"

    @property
    def max_distance_km(self) -> float:
        """The longest distance on the curve with a positive rate (0 when none)."""
        positive = [d for d, r in zip(self.distance_km, self.rate, strict=True) if r > 0]
        return max(positive) if positive else 0.0

    @property
    def max_distance_km_gross(self) -> float:
        """As :attr:`max_distance_km` for the gross rate (the rate itself when none is kept)."""
        rates = self.gross_rate or self.rate
        positive = [d for d, r in zip(self.distance_km, rates, strict=True) if r > 0]
        return max(positive) if positive else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "preset": self.preset,
            "n_x": self.n_x,
            "unit": self.unit,
            "distance_km": self.distance_km,
            "rate": self.rate,
            "rate_is": "net of authentication",
            "gross_rate": self.gross_rate,
            "auth_share": self.auth_share,
            "auth_bits_per_block": self.auth_bits_per_block,
            "max_distance_km": self.max_distance_km,
            "max_distance_km_gross": self.max_distance_km_gross,
        }


def _distances(max_km: float, step_km: float) -> list[float]:
    if not (math.isfinite(max_km) and max_km > 0):
        raise ValueError(f"max_km must be > 0, got {max_km!r}")
    if not (math.isfinite(step_km) and 0 < step_km <= max_km):
        raise ValueError(f"step_km must be in (0, max_km], got {step_km!r}")
    n = math.floor(max_km / step_km + 1e-9)
    return [i * step_km for i in range(n + 1)]


def finite_key_curve(
    base: LinkParams,
    preset: str,
    n_x: int,
    distances: Sequence[float],
    per_pulse: bool,
    auth_bits_per_block: float = fk.AUTH_BITS_PER_BLOCK,
) -> RateCurve:
    """Finite-key rate along ``distances``, intensities re-optimised for the net rate."""
    curve = RateCurve(
        preset, n_x, "bit/pulse" if per_pulse else "bit/s", auth_bits_per_block=auth_bits_per_block
    )
    start = dataclasses.replace(base, n_x=n_x)
    for d in distances:
        here = start.with_distance_km(d)
        opt = fk.optimise_intensities(here, auth_bits_per_block=auth_bits_per_block)
        r = fk.net_key_rate(opt, auth_bits_per_block)
        if r.net_bps > 0:
            start = opt  # warm start for the next distance
        curve.distance_km.append(d)
        curve.rate.append(r.net_per_pulse if per_pulse else r.net_bps)
        curve.gross_rate.append(r.gross_per_pulse if per_pulse else r.gross_bps)
        curve.auth_share.append(r.auth_share)
    return curve


def asymptotic_curve(
    base: LinkParams, preset: str, distances: Sequence[float], per_pulse: bool
) -> RateCurve:
    """The infinite-key ceiling (f_EC = 1), with the finite-key optimiser's parameters at 10^10."""
    curve = RateCurve(preset, None, "bit/pulse" if per_pulse else "bit/s")
    start = dataclasses.replace(base, n_x=10**12)
    for d in distances:
        opt = fk.optimise_intensities(start.with_distance_km(d))
        best = dataclasses.replace(opt, q_x=0.995)  # infinite key: basis sifting costs nothing
        rate = fk.asymptotic_key_rate(best)
        if rate > 0:
            start = opt
        value = rate if per_pulse else rate * base.clock_hz
        curve.distance_km.append(d)
        curve.rate.append(value)
        curve.gross_rate.append(value)
        curve.auth_share.append(0.0)
    return curve


def max_distance_km(
    base: LinkParams,
    n_x: int,
    *,
    upper_km: float = 400.0,
    tol_km: float = 0.5,
    auth_bits_per_block: float = fk.AUTH_BITS_PER_BLOCK,
) -> float:
    """The longest fibre with a positive optimised net key rate at block ``n_x`` (bisection).

    Net of ``auth_bits_per_block`` of key per block (0: the gross rate, as in
    Lim et al. 2014). 0 when even 0 km gives no key.
    """
    params = dataclasses.replace(base, n_x=n_x)

    def positive(d: float) -> bool:
        opt = fk.optimise_intensities(
            params.with_distance_km(d), auth_bits_per_block=auth_bits_per_block
        )
        return fk.net_key_rate(opt, auth_bits_per_block).net_bps > 0

    if not positive(0.0):
        return 0.0
    if positive(upper_km):
        return upper_km
    lo, hi = 0.0, upper_km
    while hi - lo > tol_km:
        mid = 0.5 * (lo + hi)
        if positive(mid):
            lo = mid
        else:
            hi = mid
    return lo


def key_rate_curves(
    presets: Sequence[str] = ("toshiba", "lim2014"),
    max_km: float = 150.0,
    step_km: float = 5.0,
    lim_block_sizes: Sequence[int] = LIM_BLOCK_SIZES,
    auth_bits_per_block: float = fk.AUTH_BITS_PER_BLOCK,
) -> list[RateCurve]:
    """The curves for each preset (toshiba: bits/s at its block size; lim2014: bits/pulse).

    Finite-key curves are net of ``auth_bits_per_block`` per block, gross beside.
    """
    distances = _distances(max_km, step_km)
    curves: list[RateCurve] = []
    for name in presets:
        base = get_preset(name)
        per_pulse = name == "lim2014"
        sizes = list(lim_block_sizes) if per_pulse else [base.n_x]
        for n_x in sizes:
            curves.append(
                finite_key_curve(base, name, n_x, distances, per_pulse, auth_bits_per_block)
            )
        curves.append(asymptotic_curve(base, name, distances, per_pulse))
    return curves


def plot_key_rate_vs_distance(
    path: str | Path,
    presets: Sequence[str] = ("toshiba", "lim2014"),
    max_km: float = 150.0,
    *,
    step_km: float = 5.0,
    lim_block_sizes: Sequence[int] = LIM_BLOCK_SIZES,
    auth_bits_per_block: float = fk.AUTH_BITS_PER_BLOCK,
) -> list[RateCurve]:
    """Compute :func:`key_rate_curves` and draw them, one panel per preset, into ``path`` (PNG).

    Net of authentication solid, gross dotted in the same colour, asymptotic dashed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = key_rate_curves(presets, max_km, step_km, lim_block_sizes, auth_bits_per_block)
    fig, axes = plt.subplots(1, len(presets), figsize=(6.0 * len(presets), 4.5), squeeze=False)
    for ax, name in zip(axes[0], presets, strict=True):
        mine = [c for c in curves if c.preset == name]
        for c in mine:
            xs = [d for d, r in zip(c.distance_km, c.rate, strict=True) if r > 0]
            ys = [r for r in c.rate if r > 0]
            gx = [d for d, r in zip(c.distance_km, c.gross_rate, strict=True) if r > 0]
            gy = [r for r in c.gross_rate if r > 0]
            if c.n_x is None:
                if xs:
                    ax.semilogy(xs, ys, "--", color="k", label=c.label)
                continue
            color = None
            if xs:
                (line,) = ax.semilogy(xs, ys, "-", label=f"{c.label}, net")
                color = line.get_color()
            if gx:
                ax.semilogy(gx, gy, ":", color=color, linewidth=1.0,
                            label=f"{c.label}, gross" if color is None else None)  # fmt: skip
        ax.set_xlabel("fibre length (km), 0.2 dB/km")
        ax.set_ylabel(f"secure key rate ({mine[0].unit})" if mine else "secure key rate")
        ax.set_title(
            f"{name}: finite-key decoy BB84 (Lim et al. 2014)\n"
            f"solid: net of {auth_bits_per_block:g} auth bits/block; dotted: gross",
            fontsize=10,
        )
        ax.set_xlim(0, max_km)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=120)
    plt.close(fig)
    return curves


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qkdmeet.qkd.rate_curve", description="Plot key rate against distance."
    )
    parser.add_argument("output", help="PNG file to write")
    parser.add_argument("--max-km", type=float, default=150.0)
    parser.add_argument("--step-km", type=float, default=5.0)
    parser.add_argument("--preset", action="append", help="preset(s) to plot (default: all)")
    parser.add_argument("--json", action="store_true", help="print the curves as JSON")
    parser.add_argument(
        "--auth-bits-per-block",
        type=float,
        default=fk.AUTH_BITS_PER_BLOCK,
        help="key spent on authentication per block (default %(default)g)",
    )
    args = parser.parse_args(argv)
    presets = tuple(args.preset or ("toshiba", "lim2014"))
    try:
        if not (math.isfinite(args.auth_bits_per_block) and args.auth_bits_per_block >= 0):
            raise ValueError(f"--auth-bits-per-block must be >= 0, got {args.auth_bits_per_block}")
        curves = plot_key_rate_vs_distance(
            args.output,
            presets,
            args.max_km,
            step_km=args.step_km,
            auth_bits_per_block=args.auth_bits_per_block,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"output": str(args.output), "curves": [c.as_dict() for c in curves]}))
    else:
        for c in curves:
            r0 = c.rate[0] if c.rate else 0.0
            g0 = c.gross_rate[0] if c.gross_rate else r0
            a0 = c.auth_share[0] if c.auth_share else 0.0
            print(f"{c.preset:8s} {c.label:18s} at 0 km: net {r0:.3g} {c.unit} "
                  f"(gross {g0:.3g}, auth {a0:.2%}), reaches {c.max_distance_km:g} km net, "
                  f"{c.max_distance_km_gross:g} km gross")  # fmt: skip
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
