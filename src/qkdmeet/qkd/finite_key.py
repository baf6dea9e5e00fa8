"""Finite-key security of decoy-state BB84 (Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307, 2014).

From one block's statistics (:class:`DecoyCounts`: matching-basis detections
per intensity in X and Z, and the Z errors per intensity), :func:`estimate`
gives the lower bounds on vacuum and single-photon detections s_X0, s_X1,
s_Z0, s_Z1, the upper bound on single-photon Z errors v_Z1 and the bound
phi_X on the phase error rate of the single-photon X bits (eqs. 2-5 of the
paper). :func:`secret_key_length` turns them and the bits the error
correction disclosed into the key length (eq. 1):

    l = floor( s_X0 + s_X1 (1 - h(phi_X)) - lambda_EC
               - 6 log2(21/eps_sec) - log2(2/eps_cor) )

and returns 0 when the phase error bound exceeds its tolerance (the block is
aborted) or l is not positive.

With few or no observed Z errors the paper's gamma term (eq. 5), which
scales with sqrt(b (1 - b)) for the ratio b = v_Z1 / s_Z1, tends to 0 and is no
longer a valid sampling bound. :func:`estimate` therefore takes the larger of
the paper's phi_X and a tail bound that holds at every count, zero included
(:func:`phase_error_tail_bound`: the Chernoff bound of the hypergeometric
sampling of the single-photon errors into the Z and X sets). For blocks with
more than about a hundred single-photon Z errors and b below about 0.35 the
paper's value is the larger, so the result is the paper's, unchanged.

The model side: :func:`expected_counts` gives a block's expected statistics
from the optics; :func:`model_secure_key_rate_bps` the (gross) rate those
imply at the clock rate; :func:`net_key_rate` (:class:`NetKeyRate`) and
:func:`model_net_key_rate_bps` the rate net of the key that authenticating
the classical channel consumes (:data:`AUTH_BITS_PER_BLOCK` per block);
:func:`asymptotic_key_rate` the infinite-key ceiling at f_EC = 1;
:func:`optimise_intensities` chooses mu1, mu2, their probabilities and q_x
that maximise the finite-key rate (scipy), net of authentication on request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq, minimize

from qkdmeet.qkd import optics
from qkdmeet.qkd.events import BASIS_X, BASIS_Z, DetectionRecord
from qkdmeet.qkd.params import LinkParams

#: A block is aborted when its phase-error bound reaches this (h(phi) = 1 from here on).
PHASE_ERROR_TOLERANCE = 0.5
#: Numbers of the security-parameter split of Lim et al. (21 = number of estimated terms).
_EPS_SPLIT = 21.0
#: Key spent on authenticating the classical channel per block, in bits (the default of
#: :func:`net_key_rate`). The protocol authenticates each block with one 256-bit
#: Wegman-Carter mask per direction per block checkpoint, four masks (1024 bits) in all;
#: the figure doubles that as a margin, which also covers the 32-byte (256-bit) hash key
#: amortised over the blocks it serves and any extra authenticated message (a retry).
#: A protocol that authenticates every message instead spends one mask per message
#: (about 350 per direction per block before the per-checkpoint scheme, some 179 kbit):
#: pass that figure to :func:`net_key_rate` to model it.
AUTH_BITS_PER_BLOCK = 2048.0

IntArray = npt.NDArray[np.int64]


def binary_entropy(p: float) -> float:
    """h(p) = -p log2 p - (1-p) log2 (1-p), with h(0) = h(1) = 0; h(p) = 1 for p >= 0.5."""
    if not p > 0.0:
        return 0.0
    if p >= 0.5:
        return 1.0
    return -p * math.log2(p) - (1.0 - p) * math.log2(1.0 - p)


@dataclass(frozen=True, slots=True)
class DecoyCounts:
    """One block's sifted statistics, per intensity (index 0, 1, 2 = mu1, mu2, mu3).

    ``n_x[k]``, ``n_z[k]``: detections with both bases X (resp. Z) at
    intensity k; ``m_z[k]``: of the Z ones, those where Bob's bit differs
    from Alice's (revealed in the Z basis, which is not used for key);
    ``m_x[k]``: X-basis errors, when known (the model; in a run the QBER
    comes from error correction), else None.
    """

    n_x: tuple[int, int, int]
    n_z: tuple[int, int, int]
    m_z: tuple[int, int, int]
    m_x: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        for name in ("n_x", "n_z", "m_z"):
            v = getattr(self, name)
            if len(v) != 3 or any(not math.isfinite(x) or x < 0 for x in v):
                raise ValueError(f"{name} must hold three counts >= 0, got {v!r}")
        if any(m > n for m, n in zip(self.m_z, self.n_z, strict=True)):
            raise ValueError(f"error counts m_z {self.m_z!r} exceed detections n_z {self.n_z!r}")

    @classmethod
    def from_arrays(
        cls,
        n_x: npt.ArrayLike,
        n_z: npt.ArrayLike,
        m_z: npt.ArrayLike,
        m_x: npt.ArrayLike | None = None,
    ) -> DecoyCounts:
        def t3(a: npt.ArrayLike) -> tuple[int, int, int]:
            v = np.asarray(a).ravel()
            if v.size != 3:
                raise ValueError(f"expected three per-intensity counts, got {v.size}")
            return (int(v[0]), int(v[1]), int(v[2]))

        return cls(t3(n_x), t3(n_z), t3(m_z), None if m_x is None else t3(m_x))

    @property
    def total_x(self) -> int:
        return int(sum(self.n_x))

    @property
    def total_z(self) -> int:
        return int(sum(self.n_z))

    @property
    def qber_z(self) -> float:
        return sum(self.m_z) / self.total_z if self.total_z else float("nan")


@dataclass(frozen=True, slots=True)
class DecoyEstimate:
    """Bounds of Lim et al. 2014 for one block; ``phi_x`` is nan when the bounds collapse."""

    s_x0: float
    s_x1: float
    s_z0: float
    s_z1: float
    v_z1: float
    phi_x: float
    eps_sec: float

    @property
    def aborted(self) -> bool:
        """True when the phase error bound is unusable (nan or at/above the tolerance)."""
        return not (self.phi_x < PHASE_ERROR_TOLERANCE)


def _tau(params: LinkParams, n: int) -> float:
    return float(
        sum(
            math.exp(-k) * k**n * p / math.factorial(n)
            for k, p in zip(params.mu, params.p_mu, strict=True)
        )
    )


def _bounded(
    counts: tuple[int, int, int], total: int, params: LinkParams, eps: float
) -> tuple[list[float], list[float]]:
    """n^-_k and n^+_k: the Hoeffding-bounded, intensity-rescaled counts."""
    delta = math.sqrt(total / 2.0 * math.log(_EPS_SPLIT / eps))
    lo = [
        math.exp(k) / p * (n - delta)
        for k, p, n in zip(params.mu, params.p_mu, counts, strict=True)
    ]
    hi = [
        math.exp(k) / p * (n + delta)
        for k, p, n in zip(params.mu, params.p_mu, counts, strict=True)
    ]
    return lo, hi


def _vacuum_and_single(
    counts: tuple[int, int, int], params: LinkParams, eps: float
) -> tuple[float, float]:
    mu1, mu2, mu3 = params.mu
    tau0, tau1 = _tau(params, 0), _tau(params, 1)
    lo, hi = _bounded(counts, int(sum(counts)), params, eps)
    s0 = max(tau0 * (mu2 * lo[2] - mu3 * hi[1]) / (mu2 - mu3), 0.0)
    denom = mu1 * (mu2 - mu3) - mu2**2 + mu3**2
    s1 = tau1 * mu1 * (lo[1] - hi[2] - (mu2**2 - mu3**2) / mu1**2 * (hi[0] - s0 / tau0)) / denom
    return s0, max(s1, 0.0)


def gamma(a: float, b: float, c: float, d: float) -> float:
    """The statistical correction to the phase error rate (Lim et al. 2014, eq. 5)."""
    inner = (c + d) / (c * d * (1.0 - b) * b) * _EPS_SPLIT**2 / a**2
    return math.sqrt((c + d) * (1.0 - b) * b / (c * d * math.log(2.0)) * math.log2(inner))


def _kl(q: float, p: float) -> float:
    """Relative entropy D(q || p) of two Bernoulli laws, in nats (0 <= q < 1, 0 < p < 1)."""
    head = q * math.log(q / p) if q > 0.0 else 0.0
    return head + (1.0 - q) * math.log((1.0 - q) / (1.0 - p))


def _tail_exponent(k: float, total: float, p: float) -> float:
    """-ln of the Chernoff bound on P(at most k of ``total`` errors fall in the Z set).

    Each of the ``total`` single-photon errors lands in the Z set with
    probability p = c / (c + d), sampling without replacement; Hoeffding
    (1963, Thm. 4) bounds that tail by the binomial's exp(-total D(k/total || p))
    for k <= total p. It grows with ``total``, and falls as k grows along
    total = T + k (so that a larger observed count never gives a smaller bound).
    """
    return total * _kl(k / total, p)


def phase_error_tail_bound(v_z1: float, s_z1: float, s_x1: float, eps: float) -> float:
    """Upper bound on the single-photon X phase error rate from at most ``v_z1`` Z errors.

    The s_Z1 + s_X1 single-photon events are split at random into the Z set
    (size c = s_Z1) and the X set (d = s_X1). With T phase errors in X and
    j <= v_z1 errors in Z the total is T + j, and the chance of seeing so few in
    Z is at most exp(-(T + j) D(j / (T + j) || c / (c + d))). The bound is T / d
    for the T at which that reaches ``eps / 21`` (the share of one estimated term,
    as in eq. 5) with j = v_z1. At v_z1 = 0 this is the closed form
    T = ln(21 / eps) / ln(1 + c / d), about ln(21 / eps) / c for c << d: a few tens
    over s_Z1, not 0. Valid at every count, it lies within a few per cent of the
    paper's gamma term when the Z errors number in the hundreds or more.
    """
    c, d = float(s_z1), float(s_x1)
    if not (c > 0.0 and d > 0.0):
        return float("nan")
    k = max(float(v_z1), 0.0)
    log_inv = math.log(_EPS_SPLIT / eps)
    p = c / (c + d)
    if k == 0.0:
        total = log_inv / math.log1p(c / d)
    else:
        lo = k / p  # the exponent is 0 here and grows with the total
        hi = 2.0 * lo + log_inv / p
        while _tail_exponent(k, hi, p) < log_inv:
            hi *= 2.0
        total = float(brentq(lambda t: _tail_exponent(k, t, p) - log_inv, lo, hi, xtol=1e-9 * hi))
    return (total - k) / d


def estimate(
    counts: DecoyCounts, params: LinkParams, eps_sec: float | None = None
) -> DecoyEstimate:
    """The decoy-state bounds for one block (eqs. 2-5); ``eps_sec`` defaults to params.eps_sec.

    ``phi_x`` is the larger of the paper's v_Z1/s_Z1 + gamma and
    :func:`phase_error_tail_bound`, so that it stays a valid bound when few or
    no Z errors are seen (the paper's gamma tends to 0 with them). The paper's
    value is kept, unchanged, whenever the tail bound confirms it (one
    evaluation of the Chernoff exponent at the paper's phi_x).
    """
    eps = params.eps_sec if eps_sec is None else eps_sec
    s_x0, s_x1 = _vacuum_and_single(counts.n_x, params, eps)
    s_z0, s_z1 = _vacuum_and_single(counts.n_z, params, eps)
    mu2, mu3 = params.mu[1], params.mu[2]
    m_lo, m_hi = _bounded(counts.m_z, int(sum(counts.m_z)), params, eps)
    v_z1 = max(_tau(params, 1) * (m_hi[1] - m_lo[2]) / (mu2 - mu3), 0.0)
    phi = float("nan")
    if s_z1 > 0.0 and s_x1 > 0.0:
        ratio = v_z1 / s_z1
        if ratio < PHASE_ERROR_TOLERANCE:
            b = max(ratio, 1e-12)
            phi = ratio + gamma(eps, b, s_z1, s_x1)
            # The paper's phi stands when the tail bound is already met at T = phi s_X1.
            p = s_z1 / (s_z1 + s_x1)
            total = phi * s_x1 + v_z1
            confirmed = v_z1 < total * p and _tail_exponent(v_z1, total, p) >= math.log(
                _EPS_SPLIT / eps
            )
            if not confirmed:
                phi = max(phi, phase_error_tail_bound(v_z1, s_z1, s_x1, eps))
        else:
            phi = ratio
    return DecoyEstimate(s_x0, s_x1, s_z0, s_z1, v_z1, phi, eps)


def decoy_counts(record: DetectionRecord) -> DecoyCounts:
    """Both ends' sifted statistics of a record, with the X errors (an omniscient view).

    The protocol gets the same counts from sifting; this is for the model's
    checks and benchmarks, which may look at both halves.
    """
    a, b = record.alice, record.bob
    match = a.basis == b.basis
    err = a.bit != b.bit
    k = a.intensity.astype(np.int64)

    def per_intensity(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
        return np.bincount(k[mask], minlength=3)[:3]

    in_x = match & (a.basis == BASIS_X)
    in_z = match & (a.basis == BASIS_Z)
    return DecoyCounts.from_arrays(
        per_intensity(in_x),
        per_intensity(in_z),
        per_intensity(in_z & err),
        per_intensity(in_x & err),
    )


def key_length_bound(est: DecoyEstimate, lambda_ec: float, params: LinkParams) -> float:
    """The real-valued right side of eq. 1 (may be negative); -inf when aborted."""
    if est.aborted:
        return float("-inf")
    return (
        est.s_x0
        + est.s_x1 * (1.0 - binary_entropy(est.phi_x))
        - lambda_ec
        - 6.0 * math.log2(_EPS_SPLIT / est.eps_sec)
        - math.log2(2.0 / params.eps_cor)
    )


def secret_key_length(est: DecoyEstimate, lambda_ec: float, params: LinkParams) -> int:
    """Secure key length l (eq. 1); 0 when the block is aborted or l would not be positive."""
    if not math.isfinite(lambda_ec) or lambda_ec < 0:
        raise ValueError(f"lambda_ec must be a number of disclosed bits >= 0, got {lambda_ec!r}")
    bound = key_length_bound(est, lambda_ec, params)
    return max(math.floor(bound), 0) if math.isfinite(bound) else 0


# -- the model ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelBlock:
    """A block's expected statistics and what they give, at ``params.n_x`` sifted X bits."""

    n_pulses: float
    counts: DecoyCounts
    qber_x: float
    lambda_ec: float
    estimate: DecoyEstimate
    key_length: float  # real-valued bound (negative when no key)

    @property
    def key_rate_per_pulse(self) -> float:
        return max(self.key_length, 0.0) / self.n_pulses


def expected_counts(params: LinkParams) -> tuple[float, DecoyCounts]:
    """Pulses needed for ``n_x`` sifted X bits, and the block's expected counts (rounded)."""
    mu = optics.intensity_array(params)
    p = np.asarray(params.p_mu)
    r = optics.gain(params, mu)
    e = optics.error_probability(params, mu)
    qx, qz = params.q_x**2, (1.0 - params.q_x) ** 2
    n_pulses = params.n_x / (qx * float(np.dot(p, r)))
    return n_pulses, DecoyCounts.from_arrays(
        np.rint(n_pulses * qx * p * r),
        np.rint(n_pulses * qz * p * r),
        np.rint(n_pulses * qz * p * e),
        np.rint(n_pulses * qx * p * e),
    )


def model_block(params: LinkParams) -> ModelBlock:
    """The expected block at ``params``: counts, estimate, lambda_EC = f_EC n_X h(E_X), length."""
    n_pulses, counts = expected_counts(params)
    assert counts.m_x is not None
    n_x = max(counts.total_x, 1)
    qber_x = sum(counts.m_x) / n_x
    lam = params.f_ec * n_x * binary_entropy(qber_x)
    eps = params.eps_sec
    est = estimate(counts, params, eps)
    length = key_length_bound(est, lam, params)
    if params.eps_sec_per_bit is not None:
        # eps_sec = kappa * l: a fixed point reached in a few steps (l depends on log eps).
        for _ in range(4):
            eps = min(max(params.eps_sec_per_bit * max(length, 1.0), 1e-300), 0.5)
            est = estimate(counts, params, eps)
            length = key_length_bound(est, lam, params)
    return ModelBlock(n_pulses, counts, qber_x, lam, est, length)


def model_key_rate_per_pulse(params: LinkParams) -> float:
    """Expected secure bits per pulse (0 when the expected block gives no key)."""
    return model_block(params).key_rate_per_pulse


def model_secure_key_rate_bps(params: LinkParams) -> float:
    """Expected secure key rate of the modelled device at its clock rate (bits per second).

    Gross: before the key that authentication consumes; see :func:`model_net_key_rate_bps`.
    """
    return model_key_rate_per_pulse(params) * params.clock_hz


@dataclass(frozen=True, slots=True)
class NetKeyRate:
    """The modelled key rate gross and net of authentication, at ``params.n_x`` per block.

    ``gross_bps``: :func:`model_secure_key_rate_bps`; ``blocks_per_s``: the
    model's sifted X rate over n_X; ``auth_bps``: ``auth_bits_per_block`` times
    that. ``net_bps`` = gross - auth may be negative: authentication then costs
    more key than the blocks yield and the link runs down its pre-shared reserve.
    """

    gross_bps: float
    blocks_per_s: float
    auth_bits_per_block: float
    clock_hz: float

    @property
    def auth_bps(self) -> float:
        return self.auth_bits_per_block * self.blocks_per_s

    @property
    def net_bps(self) -> float:
        return self.gross_bps - self.auth_bps

    @property
    def auth_share(self) -> float:
        """The share of the gross key that authentication takes, in [0, 1] (1: all of it)."""
        if self.auth_bps <= 0.0:
            return 0.0
        if self.gross_bps <= self.auth_bps:
            return 1.0
        return self.auth_bps / self.gross_bps

    @property
    def gross_per_pulse(self) -> float:
        return self.gross_bps / self.clock_hz

    @property
    def net_per_pulse(self) -> float:
        return self.net_bps / self.clock_hz

    def as_dict(self) -> dict[str, float]:
        return {
            "net_key_rate_bps": self.net_bps,
            "gross_key_rate_bps": self.gross_bps,
            "auth_share": self.auth_share,
            "auth_rate_bps": self.auth_bps,
            "auth_bits_per_block": self.auth_bits_per_block,
            "blocks_per_s": self.blocks_per_s,
        }


def net_key_rate(
    params: LinkParams, auth_bits_per_block: float = AUTH_BITS_PER_BLOCK
) -> NetKeyRate:
    """The model's key rate gross and net of ``auth_bits_per_block`` of key per block."""
    if not (math.isfinite(auth_bits_per_block) and auth_bits_per_block >= 0.0):
        raise ValueError(f"auth_bits_per_block must be >= 0, got {auth_bits_per_block!r}")
    blocks_per_s = optics.sifted_x_rate_hz(params) / params.n_x
    return NetKeyRate(
        model_secure_key_rate_bps(params), blocks_per_s, float(auth_bits_per_block), params.clock_hz
    )


def model_net_key_rate_bps(
    params: LinkParams, auth_bits_per_block: float = AUTH_BITS_PER_BLOCK
) -> float:
    """:func:`model_secure_key_rate_bps` less the authentication key (negative: a net drain)."""
    return net_key_rate(params, auth_bits_per_block).net_bps


def asymptotic_key_rate(params: LinkParams) -> float:
    """Infinite-key secure bits per pulse at f_EC = 1, with the same device and basis bias.

    Exact photon-number yields Y_n = (1 + p_ap)(1 - (1 - 2 p_dc)(1 - eta)^n)
    and the single-photon error rate of the model replace the decoy bounds
    (perfect estimation): q_x^2 [ sum_k p_k e^-k (Y_0 + k Y_1 (1 - h(e_1))) - Q h(E) ].
    """
    eta = params.eta_sys
    y0 = (1.0 + params.p_ap) * 2.0 * params.p_dc
    d1 = 1.0 - (1.0 - 2.0 * params.p_dc) * (1.0 - eta)
    y1 = (1.0 + params.p_ap) * d1
    e1 = (params.p_dc + params.e_mis * eta + params.p_ap * d1 / 2.0) / y1
    weight0 = sum(p * math.exp(-k) for k, p in zip(params.mu, params.p_mu, strict=True))
    weight1 = sum(p * k * math.exp(-k) for k, p in zip(params.mu, params.p_mu, strict=True))
    q = optics.average_gain(params)
    rate = (
        weight0 * y0
        + weight1 * y1 * (1.0 - binary_entropy(e1))
        - q * binary_entropy(optics.average_qber(params))
    )
    return max(params.q_x**2 * rate, 0.0)


def asymptotic_key_rate_bps(params: LinkParams) -> float:
    return asymptotic_key_rate(params) * params.clock_hz


# -- optimisation ------------------------------------------------------------------------


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 60.0), -60.0)))


def _logit(y: float) -> float:
    y = min(max(y, 1e-9), 1.0 - 1e-9)
    return math.log(y / (1.0 - y))


_QX_MIN, _QX_MAX = 0.5, 0.995
_MU1_MAX = 1.5


def _decode(z: npt.NDArray[np.float64], params: LinkParams) -> LinkParams:
    mu3 = params.mu[2]
    mu1 = 2.0 * mu3 + 1e-4 + (_MU1_MAX - 2.0 * mu3) * _sigmoid(float(z[0]))
    mu2 = mu3 + (mu1 - 2.0 * mu3) * (0.02 + 0.96 * _sigmoid(float(z[1])))
    w = np.exp(np.clip(np.array([z[2], z[3], 0.0]), -30, 30))
    p = w / w.sum()
    p = np.maximum(p, 1e-6)
    p /= p.sum()
    p3 = 1.0 - float(p[0]) - float(p[1])
    qx = _QX_MIN + (_QX_MAX - _QX_MIN) * _sigmoid(float(z[4]))
    return params.with_intensities((mu1, mu2, mu3), (float(p[0]), float(p[1]), p3), qx)


def _encode(params: LinkParams) -> npt.NDArray[np.float64]:
    mu1, mu2, mu3 = params.mu
    p1, p2, p3 = params.p_mu
    return np.array(
        [
            _logit((mu1 - 2.0 * mu3 - 1e-4) / (_MU1_MAX - 2.0 * mu3)),
            _logit(((mu2 - mu3) / (mu1 - 2.0 * mu3) - 0.02) / 0.96),
            math.log(p1 / p3),
            math.log(p2 / p3),
            _logit((params.q_x - _QX_MIN) / (_QX_MAX - _QX_MIN)),
        ]
    )


def optimise_intensities(
    params: LinkParams, *, starts: int = 4, auth_bits_per_block: float = 0.0
) -> LinkParams:
    """Parameters with mu1, mu2, p_mu and q_x chosen to maximise the finite-key rate per pulse.

    mu3 stays as given (a vacuum or weak decoy the source can make). The
    objective is the real-valued key length, less ``auth_bits_per_block`` (0:
    the gross rate; :data:`AUTH_BITS_PER_BLOCK`: net of authentication), per
    pulse (negative values guide the search out of the no-key region);
    Nelder-Mead from ``starts`` points. Returns ``params`` unchanged when
    nothing gives a positive key.
    """

    def objective(z: npt.NDArray[np.float64]) -> float:
        try:
            cand = _decode(z, params)
            blk = model_block(cand)
        except (ValueError, OverflowError, ZeroDivisionError):
            return 1e9
        if not math.isfinite(blk.key_length):
            return 1e3
        return -(blk.key_length - auth_bits_per_block) / blk.n_pulses * 1e6

    # Seeds from a balanced basis choice upwards: at small blocks a strong bias
    # leaves too few Z detections and the search would start in the flat
    # no-key region.
    seeds = [_encode(params)]
    for mu1, mu2, p_mu, qx in (
        (0.5, 0.1, (0.7, 0.2, 0.1), 0.9),
        (0.4, 0.15, (0.6, 0.3, 0.1), 0.75),
        (0.4, 0.15, (0.4, 0.4, 0.2), 0.55),
    ):
        seeds.append(_encode(params.with_intensities((mu1, mu2, params.mu[2]), p_mu, qx)))
    rng = np.random.default_rng(12345)
    while len(seeds) < starts:
        seeds.append(seeds[0] + rng.normal(0, 0.5, size=5))
    best_z, best_f = seeds[0], objective(seeds[0])
    for z0 in seeds[:starts]:
        res = minimize(
            objective,
            z0,
            method="Nelder-Mead",
            options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 2000},
        )
        if res.fun < best_f:
            best_z, best_f = res.x, float(res.fun)
    if best_f >= 0.0:
        return params
    return _decode(best_z, params)
