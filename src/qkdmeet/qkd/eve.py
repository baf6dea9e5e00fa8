"""Eavesdroppers on the quantum channel, as changes to the pulse classes.

Each attack is a :class:`qkdmeet.qkd.events.ChannelModel`: it says, per
intensity, what fraction of pulses it touches and what light then reaches
Bob. :func:`qkdmeet.qkd.events.sample_detections` samples real events from
it, so the attack shows up only through the statistics the protocol sees.

- :class:`InterceptResend` (fraction f): Eve, next to Alice, measures a
  fraction f of the pulses with a perfect detector in a random basis. If the
  pulse held a photon, she resends a coherent pulse in her basis and bit
  through the same channel; an empty pulse leaves her nothing to resend. She
  makes the resent pulses bright enough (:meth:`InterceptResend.resend_intensity`)
  that Bob's overall detection rate stays what he expects, so about a
  fraction f of his detections come from her. Where her basis was wrong
  (half the time) Bob's bit is random in Alice's basis: errors rise by about
  f/4 in both bases.
- :class:`PhotonNumberSplitting`: Eve measures the photon number without
  disturbing the qubit, blocks every single-photon pulse, keeps one photon of
  each multi-photon pulse and forwards the rest over a lossless channel. To
  keep Bob's signal gain at the value he expects, she forwards only a
  fraction of the multi-photon pulses when the lossless channel would give
  more. No error is added, but the single-photon yield is that of dark
  counts alone, which the decoy-state bounds detect (s_X1 collapses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qkdmeet.qkd.events import (
    SOURCE_ALICE,
    SOURCE_RESEND,
    PulseClass,
    coherent_class,
    empty_class,
    fock_class,
    honest_classes,
)
from qkdmeet.qkd.params import LinkParams

#: Photon numbers above this are lumped together (Poisson tail < 1e-15 for mu <= 1).
MAX_PHOTON_NUMBER = 24
#: The brightest pulse an intercept-resend attacker sends (mean photon number).
_MAX_RESEND_MU = 10.0


@dataclass(frozen=True, slots=True)
class NoEavesdropper:
    """The honest channel."""

    def pulse_classes(self, params: LinkParams) -> list[PulseClass]:
        return honest_classes(params)

    def __str__(self) -> str:
        return "none"


@dataclass(frozen=True, slots=True)
class InterceptResend:
    """Intercept-resend on a fraction ``fraction`` of the pulses (see the module docstring)."""

    fraction: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fraction) and 0.0 <= self.fraction <= 1.0):
            raise ValueError(f"intercept-resend fraction must be in [0, 1], got {self.fraction!r}")

    def resend_intensity(self, params: LinkParams) -> float:
        """Mean photon number of Eve's resent pulses that keeps Bob's average gain unchanged.

        Solves sum_k p_k [(1 - e^-k) D(mu_e) + e^-k D(0)] = sum_k p_k D(k) for mu_e (capped
        at 10 photons, where no brighter pulse could hide the loss).
        """
        mus, ps = params.mu, params.p_mu
        quiet = (1.0 - params.p_dc) ** 2  # neither detector fires a dark count
        honest = sum(
            p * (1.0 - quiet * math.exp(-params.eta_sys * k)) for k, p in zip(mus, ps, strict=True)
        )
        caught = sum(p * (1.0 - math.exp(-k)) for k, p in zip(mus, ps, strict=True))
        # empty intercepted pulses still give dark counts
        target = (honest - (1.0 - caught) * (1.0 - quiet)) / caught
        if target >= 1.0 - 1e-12:
            return _MAX_RESEND_MU
        mu_e = -math.log((1.0 - target) / quiet) / params.eta_sys
        return min(max(mu_e, 0.0), _MAX_RESEND_MU)

    def pulse_classes(self, params: LinkParams) -> list[PulseClass]:
        f = self.fraction
        resend_mu = self.resend_intensity(params)
        out: list[PulseClass] = []
        for k, (mu, p) in enumerate(zip(params.mu, params.p_mu, strict=True)):
            out.append(
                coherent_class(p * (1 - f), k, mu, params.eta_sys, params.e_mis, SOURCE_ALICE)
            )
            caught = 1.0 - math.exp(-mu)
            out.append(
                coherent_class(
                    p * f * caught, k, resend_mu, params.eta_sys, params.e_mis, SOURCE_RESEND
                )
            )
            out.append(empty_class(p * f * (1.0 - caught), k))
        return out

    def __str__(self) -> str:
        return f"intercept-resend:{self.fraction:g}"


def _poisson(mu: float, n: int) -> float:
    if mu == 0.0:
        return 1.0 if n == 0 else 0.0
    return math.exp(-mu + n * math.log(mu) - math.lgamma(n + 1))


@dataclass(frozen=True, slots=True)
class PhotonNumberSplitting:
    """Photon-number-splitting attack (see the module docstring)."""

    def forward_fraction(self, params: LinkParams) -> float:
        """Fraction of multi-photon pulses Eve forwards to keep Bob's signal gain as expected."""
        mu1 = params.mu[0]
        honest = 1.0 - math.exp(-params.eta_sys * mu1)
        split = sum(
            _poisson(mu1, n) * (1.0 - (1.0 - params.eta_bob) ** (n - 1))
            for n in range(2, MAX_PHOTON_NUMBER + 1)
        )
        return 1.0 if split <= honest else honest / split

    def pulse_classes(self, params: LinkParams) -> list[PulseClass]:
        fwd = self.forward_fraction(params)
        out: list[PulseClass] = []
        for k, (mu, p) in enumerate(zip(params.mu, params.p_mu, strict=True)):
            p01 = _poisson(mu, 0) + _poisson(mu, 1)
            blocked = p01
            for n in range(2, MAX_PHOTON_NUMBER + 1):
                pn = _poisson(mu, n)
                if n == MAX_PHOTON_NUMBER:
                    pn = max(1.0 - p01 - sum(_poisson(mu, j) for j in range(2, n)), 0.0)
                if pn <= 0.0:
                    continue
                out.append(
                    fock_class(p * pn * fwd, k, n - 1, params.eta_bob, params.e_mis, SOURCE_ALICE)
                )
                blocked += pn * (1.0 - fwd)
            out.append(empty_class(p * blocked, k))
        return out

    def __str__(self) -> str:
        return "pns"


Eavesdropper = NoEavesdropper | InterceptResend | PhotonNumberSplitting


def parse_eve(spec: str | None) -> Eavesdropper | None:
    """Parse ``"none"``, ``"intercept-resend:F"`` (F in [0, 1]) or ``"pns"``; None means no Eve."""
    if spec is None:
        return None
    s = spec.strip().lower()
    if s in ("", "none"):
        return None
    if s == "pns":
        return PhotonNumberSplitting()
    name, sep, arg = s.partition(":")
    if name in ("intercept-resend", "ir"):
        if not sep:
            return InterceptResend(1.0)
        try:
            fraction = float(arg)
        except ValueError:
            raise ValueError(
                f"intercept-resend needs a fraction, as in intercept-resend:0.5; got {spec!r}"
            ) from None
        return InterceptResend(fraction)
    raise ValueError(f"unknown eavesdropper {spec!r}; use none, pns or intercept-resend:F")
