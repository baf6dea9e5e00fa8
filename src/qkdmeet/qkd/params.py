"""Parameters of the simulated decoy-state BB84 link, and the named presets.

One frozen :class:`LinkParams` describes a device and its channel: the
source (clock, three intensities and their probabilities, basis bias), the
channel (loss in dB), Bob's detectors (efficiency, dark count and afterpulse
probabilities, misalignment) and the security targets of the finite-key
analysis (Lim et al., PRA 89, 022307, 2014).

Presets (``PRESETS``, :func:`get_preset`):

``"toshiba"``
    The GHz system of the field test (Yuan et al., JLT 36, 3427, 2018): 1 GHz
    clock, eta_Bob 0.30, p_dc 1e-6, p_ap 0.04, e_mis 0.01, blocks of 10^8
    sifted X bits, default channel 7 km of fibre (1.4 dB, as in Sendai). The
    intensities, their probabilities and q_x were found by
    :func:`qkdmeet.qkd.finite_key.optimise_intensities` at 2 dB and frozen
    here.
``"lim2014"``
    The evaluation parameters of Lim et al. 2014 (eta_Bob 0.10, p_dc 6e-7,
    p_ap 0.04, e_mis 5e-3, f_EC 1.16, mu3 = 2e-4, eps_cor 1e-15,
    eps_sec = 1e-15 per key bit); the remaining parameters are to be optimised
    per distance, as in the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

#: Attenuation of standard telecom fibre at 1550 nm (dB/km).
FIBRE_ALPHA_DB_PER_KM = 0.2

#: Sifted X bits per real-time block, chosen by measurement (``qkdmeet qkd simulate``, the
#: two ends in two processes, toshiba at 2 dB, 60 s runs on the shared 2-core machine,
#: 2026-12-04): 1e7 -> 2.33 Mb/s after warm-up (first key at 5.4 s), 2e7 -> 2.00 Mb/s
#: (first key at 7.3 s); with per-block authentication and block-sized chunks the
#: per-block costs no longer favour 4e6, whose finite-key ceiling is lower (7.3 against
#: 8.7 Mb/s net).
DEFAULT_BLOCK_BITS = 10_000_000
#: Blocks the receiver keeps in flight: while one waits for a Cascade round trip the
#: others' sifting, error correction and hashing use the cores (measured: depth 2 ->
#: 2.43 Mb/s, 3 -> 2.7, 5 -> 2.40).
DEFAULT_PIPELINE_DEPTH = 3


@dataclass(frozen=True, slots=True)
class LinkParams:
    """A decoy-state BB84 device and its channel. All probabilities are per pulse.

    ``mu`` holds the intensities (mu1 signal, mu2 decoy, mu3 weak decoy or
    vacuum) with ``mu1 > mu2 + mu3`` and ``mu2 > mu3 >= 0``; ``p_mu`` their
    probabilities. ``q_x`` is the probability that Alice (and Bob) choose the
    key basis X. ``n_x`` is the block size in sifted X bits.
    ``eps_sec_per_bit``, when set, makes eps_sec proportional to the key
    length (eps_sec = eps_sec_per_bit * l, the convention of Lim et al.'s
    evaluation) and ``eps_sec`` is then only the starting guess.
    """

    clock_hz: float = 1e9
    mu: tuple[float, float, float] = (0.5, 0.1, 2e-4)
    p_mu: tuple[float, float, float] = (0.8, 0.15, 0.05)
    q_x: float = 0.9
    eta_bob: float = 0.30
    p_dc: float = 1e-6
    p_ap: float = 0.04
    e_mis: float = 0.01
    loss_db: float = 2.0
    f_ec: float = 1.1
    eps_sec: float = 1e-10
    eps_cor: float = 1e-15
    n_x: int = 10**8
    eps_sec_per_bit: float | None = None

    def __post_init__(self) -> None:
        _validate(self)

    # -- derived quantities -------------------------------------------------

    @property
    def eta_channel(self) -> float:
        """Channel transmittance 10^(-loss/10)."""
        return float(10.0 ** (-self.loss_db / 10.0))

    @property
    def eta_sys(self) -> float:
        """Overall transmittance: channel times Bob's detection efficiency."""
        return self.eta_channel * self.eta_bob

    @property
    def distance_km(self) -> float:
        """The fibre length this loss corresponds to at 0.2 dB/km."""
        return self.loss_db / FIBRE_ALPHA_DB_PER_KM

    # -- variants -------------------------------------------------------------

    def with_loss_db(self, loss_db: float) -> LinkParams:
        return replace(self, loss_db=float(loss_db))

    def with_distance_km(
        self, distance_km: float, alpha_db_per_km: float = FIBRE_ALPHA_DB_PER_KM
    ) -> LinkParams:
        if not math.isfinite(distance_km) or distance_km < 0:
            raise ValueError(f"distance_km must be a finite number >= 0, got {distance_km!r}")
        if not math.isfinite(alpha_db_per_km) or alpha_db_per_km <= 0:
            raise ValueError(f"alpha_db_per_km must be > 0, got {alpha_db_per_km!r}")
        return replace(self, loss_db=float(distance_km) * alpha_db_per_km)

    def with_intensities(
        self,
        mu: tuple[float, float, float],
        p_mu: tuple[float, float, float],
        q_x: float | None = None,
    ) -> LinkParams:
        return replace(self, mu=mu, p_mu=p_mu, q_x=self.q_x if q_x is None else q_x)


def _prob(name: str, value: float, *, open_low: bool = False, open_high: bool = False) -> None:
    ok = math.isfinite(value) and value >= 0.0 and value <= 1.0
    if ok and open_low and value == 0.0:
        ok = False
    if ok and open_high and value == 1.0:
        ok = False
    if not ok:
        lo = "(" if open_low else "["
        hi = ")" if open_high else "]"
        raise ValueError(f"{name} must be a probability in {lo}0, 1{hi}, got {value!r}")


def _validate(p: LinkParams) -> None:
    if not math.isfinite(p.clock_hz) or p.clock_hz <= 0:
        raise ValueError(f"clock_hz must be > 0, got {p.clock_hz!r}")
    if len(p.mu) != 3 or len(p.p_mu) != 3:
        raise ValueError("mu and p_mu must each hold exactly three values (mu1, mu2, mu3)")
    mu1, mu2, mu3 = (float(m) for m in p.mu)
    if not all(math.isfinite(m) for m in (mu1, mu2, mu3)):
        raise ValueError(f"intensities must be finite, got {p.mu!r}")
    if not mu3 >= 0.0:
        raise ValueError(f"mu3 must be >= 0, got {mu3!r}")
    if not mu2 > mu3:
        raise ValueError(f"intensities need mu2 > mu3, got mu2={mu2!r}, mu3={mu3!r}")
    if not mu1 > mu2 + mu3:
        raise ValueError(f"intensities need mu1 > mu2 + mu3, got {p.mu!r}")
    if mu1 > 20.0:
        raise ValueError(f"mu1 = {mu1!r} photons per pulse is not a weak coherent source")
    for i, pk in enumerate(p.p_mu):
        _prob(f"p_mu[{i}]", float(pk), open_low=True)
    if abs(sum(p.p_mu) - 1.0) > 1e-9:
        raise ValueError(f"p_mu must sum to 1, got {p.p_mu!r} (sum {sum(p.p_mu)!r})")
    _prob("q_x", p.q_x, open_low=True, open_high=True)
    _prob("eta_bob", p.eta_bob, open_low=True)
    _prob("p_dc", p.p_dc, open_high=True)
    if p.p_dc > 0.1:
        raise ValueError(f"p_dc must be <= 0.1 (a dark count probability per gate), got {p.p_dc!r}")
    _prob("p_ap", p.p_ap, open_high=True)
    if p.p_ap > 0.5:
        raise ValueError(f"p_ap must be <= 0.5, got {p.p_ap!r}")
    _prob("e_mis", p.e_mis)
    if p.e_mis >= 0.5:
        raise ValueError(f"e_mis must be < 0.5, got {p.e_mis!r}")
    if not math.isfinite(p.loss_db) or p.loss_db < 0:
        raise ValueError(f"loss_db must be a finite number >= 0, got {p.loss_db!r}")
    if not math.isfinite(p.f_ec) or p.f_ec < 1.0:
        raise ValueError(f"f_ec must be >= 1 (Shannon limit), got {p.f_ec!r}")
    _prob("eps_sec", p.eps_sec, open_low=True, open_high=True)
    _prob("eps_cor", p.eps_cor, open_low=True, open_high=True)
    if p.eps_sec_per_bit is not None:
        _prob("eps_sec_per_bit", p.eps_sec_per_bit, open_low=True, open_high=True)
    if isinstance(p.n_x, bool) or not isinstance(p.n_x, int) or p.n_x < 100:
        raise ValueError(f"n_x must be an integer >= 100 (sifted X bits per block), got {p.n_x!r}")


#: The field test's GHz system. Intensities, probabilities and q_x:
#: optimise_intensities(...) at 2 dB with n_x = 1e8, f_EC 1.1, mu3 fixed at 2e-4
#: gave mu = (0.421, 0.218), p = (0.562, 0.307, 0.131), q_x = 0.8965 and
#: 12.12 Mb/s; rounded here (q_x to 0.90), 12.11 Mb/s at 2 dB, 14.06 Mb/s at 1.4 dB.
TOSHIBA = LinkParams(
    clock_hz=1e9,
    mu=(0.42, 0.22, 2e-4),
    p_mu=(0.56, 0.31, 0.13),
    q_x=0.90,
    eta_bob=0.30,
    p_dc=1e-6,
    p_ap=0.04,
    e_mis=0.01,
    loss_db=7.0 * FIBRE_ALPHA_DB_PER_KM,
    f_ec=1.1,
    eps_sec=1e-10,
    eps_cor=1e-15,
    n_x=10**8,
)

#: Lim et al. 2014's evaluation set (the free parameters are re-optimised per distance).
LIM2014 = LinkParams(
    clock_hz=1e9,
    mu=(0.5, 0.1, 2e-4),
    p_mu=(0.7, 0.2, 0.1),
    q_x=0.9,
    eta_bob=0.10,
    p_dc=6e-7,
    p_ap=0.04,
    e_mis=5e-3,
    loss_db=0.0,
    f_ec=1.16,
    eps_sec=1e-10,
    eps_cor=1e-15,
    n_x=10**9,
    eps_sec_per_bit=1e-15,
)

PRESETS: dict[str, LinkParams] = {"toshiba": TOSHIBA, "lim2014": LIM2014}


def get_preset(name: str) -> LinkParams:
    """The preset called ``name`` (case-insensitive); ValueError naming the choices otherwise."""
    try:
        return PRESETS[name.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown link preset {name!r}; choose one of {', '.join(sorted(PRESETS))}"
        ) from None
