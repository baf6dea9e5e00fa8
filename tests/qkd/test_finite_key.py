from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from qkdmeet.qkd import finite_key as fk
from qkdmeet.qkd import optics
from qkdmeet.qkd.events import sample_detections
from qkdmeet.qkd.params import LinkParams, get_preset

# A case worked by hand: mu = (0.6, 0.2, 0) so that mu3 = 0 simplifies eqs. 2-4.
HAND = LinkParams(
    mu=(0.6, 0.2, 0.0), p_mu=(0.5, 0.3, 0.2), q_x=0.5, eps_sec=1e-10, eps_cor=1e-15, n_x=10**6
)
# Realistic proportions: the vacuum decoy sees only dark counts (half of them errors).
COUNTS = fk.DecoyCounts(n_x=(800_000, 150_000, 40), n_z=(200_000, 40_000, 10), m_z=(4_000, 900, 5))


def test_binary_entropy() -> None:
    assert fk.binary_entropy(0.5) == 1.0
    assert fk.binary_entropy(0.0) == 0.0
    assert fk.binary_entropy(0.11) == pytest.approx(0.4999157, rel=1e-6)
    assert fk.binary_entropy(0.7) == 1.0


def test_key_length_formula_by_hand() -> None:
    # Step by step, transcribing Lim et al. 2014 eqs. 1-5 with the numbers written out.
    ln21 = math.log(21 / 1e-10)  # 26.0704...
    assert ln21 == pytest.approx(26.070373, rel=1e-6)
    tau0 = 0.5 * math.exp(-0.6) + 0.3 * math.exp(-0.2) + 0.2  # = 0.720025...
    tau1 = 0.5 * 0.6 * math.exp(-0.6) + 0.3 * 0.2 * math.exp(-0.2)  # = 0.213767...
    assert tau0 == pytest.approx(0.720025, rel=1e-5)
    assert tau1 == pytest.approx(0.213766, rel=1e-5)

    def bounds(n: tuple[int, int, int]) -> tuple[float, float]:
        d = math.sqrt(sum(n) / 2 * ln21)  # Hoeffding term
        lo = [math.exp(0.6) / 0.5 * (n[0] - d), math.exp(0.2) / 0.3 * (n[1] - d), (n[2] - d) / 0.2]
        hi = [math.exp(0.6) / 0.5 * (n[0] + d), math.exp(0.2) / 0.3 * (n[1] + d), (n[2] + d) / 0.2]
        s0 = max(tau0 * lo[2], 0.0)  # mu3 = 0: s0 >= tau0 n^-_{mu3}; a count is never negative
        s1 = (
            tau1
            * 0.6
            * (lo[1] - hi[2] - 0.2**2 / 0.6**2 * (hi[0] - s0 / tau0))
            / (0.6 * 0.2 - 0.2**2)
        )
        return s0, s1

    assert math.sqrt(950_040 / 2 * ln21) == pytest.approx(3519.0, rel=1e-4)
    s_x0, s_x1 = bounds(COUNTS.n_x)
    s_z0, s_z1 = bounds(COUNTS.n_z)
    assert s_x0 == 0.0  # 40 vacuum detections are far inside the Hoeffding term
    assert s_x1 == pytest.approx(405_978, rel=1e-5)
    assert s_z1 == pytest.approx(104_300, rel=1e-3)
    dm = math.sqrt(4_905 / 2 * ln21)
    v1 = tau1 * (math.exp(0.2) / 0.3 * (900 + dm) - (5 - dm) / 0.2) / 0.2
    assert v1 == pytest.approx(6_341.38, rel=1e-5)
    est = fk.estimate(COUNTS, HAND)
    assert est.s_x0 == s_x0 and est.s_z0 == s_z0
    assert est.s_x1 == pytest.approx(s_x1, rel=1e-12)
    assert est.s_z1 == pytest.approx(s_z1, rel=1e-12)
    assert est.v_z1 == pytest.approx(v1, rel=1e-12)
    b = v1 / s_z1
    c, dd = s_z1, s_x1
    g = math.sqrt(
        (c + dd)
        * (1 - b)
        * b
        / (c * dd * math.log(2))
        * math.log2((c + dd) / (c * dd * (1 - b) * b) * 21**2 / 1e-20)
    )
    assert est.phi_x == pytest.approx(b + g, rel=1e-9)
    assert 0.01 < est.phi_x < 0.2
    s0 = s_x0
    s1 = s_x1
    lam = 150_000.0
    expected = math.floor(
        s0
        + s1 * (1 - fk.binary_entropy(est.phi_x))
        - lam
        - 6 * math.log2(21 / 1e-10)
        - math.log2(2 / 1e-15)
    )
    assert expected > 0
    assert fk.secret_key_length(est, lam, HAND) == expected


def test_phase_error_bound_with_errors_and_abort() -> None:
    counts = dataclasses.replace(COUNTS, m_z=(8_000, 1_800, 5))
    est = fk.estimate(counts, HAND)
    assert 0 < est.phi_x < 0.5
    lam = 0.0
    assert fk.secret_key_length(est, lam, HAND) < fk.secret_key_length(
        fk.estimate(COUNTS, HAND), lam, HAND
    )
    bad = dataclasses.replace(COUNTS, m_z=(100_000, 20_000, 5))
    est_bad = fk.estimate(bad, HAND)
    assert est_bad.aborted
    assert fk.secret_key_length(est_bad, 0.0, HAND) == 0


def test_negative_length_is_zero_and_bad_input_raises() -> None:
    est = fk.estimate(COUNTS, HAND)
    assert fk.secret_key_length(est, 10**9, HAND) == 0
    with pytest.raises(ValueError, match="lambda_ec"):
        fk.secret_key_length(est, -1.0, HAND)
    with pytest.raises(ValueError, match="m_z"):
        fk.DecoyCounts(n_x=(1, 1, 1), n_z=(1, 1, 1), m_z=(2, 0, 0))
    with pytest.raises(ValueError, match="n_x"):
        fk.DecoyCounts(n_x=(-1, 1, 1), n_z=(1, 1, 1), m_z=(0, 0, 0))


def test_toshiba_model_rate_is_of_the_field_order() -> None:
    p = get_preset("toshiba").with_loss_db(2.0)
    rate = fk.model_secure_key_rate_bps(p)
    assert 10e6 < rate < 14e6
    ceiling = fk.asymptotic_key_rate_bps(p)
    assert rate < ceiling < 2 * rate
    # more loss, less key; longer blocks, more key
    assert fk.model_secure_key_rate_bps(p.with_loss_db(10.0)) < rate
    assert fk.model_secure_key_rate_bps(dataclasses.replace(p, n_x=10**9)) > rate


def test_optimiser_improves_a_poor_choice() -> None:
    p = (
        get_preset("toshiba")
        .with_intensities((0.8, 0.05, 2e-4), (0.34, 0.33, 0.33), 0.6)
        .with_loss_db(4.0)
    )
    before = fk.model_key_rate_per_pulse(p)
    opt = fk.optimise_intensities(p, starts=2)
    assert fk.model_key_rate_per_pulse(opt) > 1.2 * before
    assert opt.mu[2] == p.mu[2]


def test_estimates_on_sampled_events_agree_with_the_model() -> None:
    p = dataclasses.replace(get_preset("toshiba"), q_x=0.5, n_x=2 * 10**6).with_loss_db(3.0)
    n_pulses, expected = fk.expected_counts(p)
    rec = sample_detections(p, int(n_pulses), np.random.default_rng(11))
    counts = fk.decoy_counts(rec)
    for got, exp in zip(counts.n_x + counts.n_z, expected.n_x + expected.n_z, strict=True):
        assert abs(got - exp) < 5 * math.sqrt(exp) + 2
    for got, exp in zip(counts.m_z, expected.m_z, strict=True):
        assert abs(got - exp) < 5 * math.sqrt(exp) + 2
    est = fk.estimate(counts, p)
    model = fk.estimate(expected, p)
    assert est.s_x1 == pytest.approx(model.s_x1, rel=0.02)
    assert est.s_z1 == pytest.approx(model.s_z1, rel=0.02)
    assert est.phi_x == pytest.approx(model.phi_x, abs=0.01)


def test_lim_preset_per_bit_eps_and_block_size_order() -> None:
    lim = get_preset("lim2014").with_distance_km(50)
    rates = [
        fk.model_key_rate_per_pulse(fk.optimise_intensities(dataclasses.replace(lim, n_x=n)))
        for n in (10**6, 10**9)
    ]
    assert 0 < rates[0] < rates[1]
    blk = fk.model_block(fk.optimise_intensities(dataclasses.replace(lim, n_x=10**9)))
    assert blk.estimate.eps_sec == pytest.approx(1e-15 * blk.key_length, rel=0.05)


# -- zero (and few) observed Z errors -----------------------------------------------------


def _lim_phi(v_z1: float, s_z1: float, s_x1: float, eps: float) -> float:
    """The paper's eq. 5 written out again (no floor): b + gamma(eps, b, s_Z1, s_X1)."""
    b, c, d = v_z1 / s_z1, s_z1, s_x1
    inner = (c + d) / (c * d * (1 - b) * b) * 21**2 / eps**2
    return b + math.sqrt((c + d) * (1 - b) * b / (c * d * math.log(2)) * math.log2(inner))


@pytest.mark.parametrize("n_x", [4 * 10**6, 10**7])
def test_zero_z_errors_give_a_valid_phase_error_bound(n_x: int) -> None:
    p = dataclasses.replace(get_preset("toshiba").with_loss_db(2.0), n_x=n_x)
    _, counts = fk.expected_counts(p)
    clean = dataclasses.replace(counts, m_z=(0, 0, 0))
    est = fk.estimate(clean, p)
    assert est.v_z1 == 0.0 and not est.aborted
    c, d = est.s_z1, est.s_x1
    # not below what the paper's formula gives for a single single-photon Z error
    assert est.phi_x > _lim_phi(1.0, c, d, p.eps_sec)
    # the zero-error tail in closed form: ln(21/eps) / ln(1 + c/d), over d; ~ ln(21/eps) / c
    closed = math.log(21 / p.eps_sec) / math.log1p(c / d) / d
    assert est.phi_x == pytest.approx(closed, rel=1e-9)
    assert 0.9 * math.log(21 / p.eps_sec) / c < est.phi_x < 1.1 * math.log(21 / p.eps_sec) / c
    # orders of magnitude above the old collapsed value (b floored at 1e-12 in gamma)
    assert est.phi_x > 1e3 * (fk.gamma(p.eps_sec, 1e-12, c, d))
    # one observed error never gives a smaller bound than none
    one = fk.estimate(dataclasses.replace(counts, m_z=(1, 0, 0)), p)
    assert one.phi_x >= est.phi_x
    # the key is not nearly all of s_X1 any more
    assert fk.secret_key_length(est, 0.0, p) < est.s_x0 + est.s_x1 * (
        1 - fk.binary_entropy(closed) / 2
    )


@pytest.mark.parametrize(("c", "d", "k"), [(2_000, 20_000, 0), (2_000, 20_000, 3), (500, 400, 0)])
def test_tail_bound_holds_against_the_exact_hypergeometric(c: int, d: int, k: int) -> None:
    from scipy.stats import hypergeom

    eps = 1e-6
    phi = fk.phase_error_tail_bound(k, c, d, eps)
    assert 0 < phi < 0.5
    # with phi d errors in X (+ k in Z) among the c + d single-photon events, seeing at
    # most k of them in the Z set has probability at most eps / 21
    total = math.ceil(phi * d) + k
    assert hypergeom.cdf(k, c + d, total, c) <= eps / 21
    # and it is not loose: 10 % fewer errors are seen that rarely no longer
    fewer = math.floor(0.9 * phi * d) + k
    assert hypergeom.cdf(k, c + d, fewer, c) > eps / 21


def test_paper_value_unchanged_with_many_errors_and_raised_with_few() -> None:
    eps, c, d = 1e-10, 1e5, 4e5
    for b in (1e-3, 1e-2, 0.05, 0.2):
        # the paper's gamma is the larger at hundreds of errors: estimate keeps it
        assert fk.phase_error_tail_bound(b * c, c, d, eps) < _lim_phi(b * c, c, d, eps)
    for k in (1.0, 5.0):
        assert fk.phase_error_tail_bound(k, c, d, eps) > _lim_phi(k, c, d, eps)
    # the hand-worked block of test_key_length_formula_by_hand keeps the paper's value
    est = fk.estimate(COUNTS, HAND)
    assert est.phi_x == pytest.approx(_lim_phi(est.v_z1, est.s_z1, est.s_x1, 1e-10), rel=1e-12)


def test_decoy_bound_clipped_to_zero_errors_uses_the_tail() -> None:
    # Z errors only at the vacuum decoy push v_Z1 below 0 (clipped): the tail still applies
    counts = dataclasses.replace(COUNTS, n_z=(200_000, 40_000, 1_000), m_z=(0, 0, 200))
    est = fk.estimate(counts, HAND)
    assert est.v_z1 == 0.0
    assert est.phi_x == pytest.approx(fk.phase_error_tail_bound(0.0, est.s_z1, est.s_x1, 1e-10))
    assert est.phi_x > 10 / est.s_z1


# -- rates net of authentication ----------------------------------------------------------


def test_net_key_rate_subtracts_authentication_per_block() -> None:
    assert fk.AUTH_BITS_PER_BLOCK == 2048.0
    base = get_preset("toshiba").with_loss_db(2.0)
    shares = []
    for n_x in (10**7, 10**8):
        p = dataclasses.replace(base, n_x=n_x)
        r = fk.net_key_rate(p)
        assert r.gross_bps == fk.model_secure_key_rate_bps(p)
        blocks = optics.sifted_x_rate_hz(p) / n_x
        assert r.blocks_per_s == pytest.approx(blocks, rel=1e-12)
        assert r.net_bps == pytest.approx(r.gross_bps - 2048.0 * blocks, rel=1e-12)
        assert fk.model_net_key_rate_bps(p) == r.net_bps
        assert 0 < r.auth_share < 0.01 and r.auth_share == pytest.approx(r.auth_bps / r.gross_bps)
        assert r.net_per_pulse == pytest.approx(r.net_bps / p.clock_hz)
        d = r.as_dict()
        assert d["net_key_rate_bps"] == r.net_bps and d["gross_key_rate_bps"] == r.gross_bps
        shares.append(r.auth_share)
    assert shares[0] > shares[1]  # longer blocks amortise authentication
    # a per-message protocol (~700 masks a block) at 1e6-bit blocks: net below zero possible
    small = fk.optimise_intensities(dataclasses.replace(base, n_x=10**6))
    heavy = fk.net_key_rate(small, 700 * 256.0)
    assert heavy.gross_bps > 0 and 0.3 < heavy.auth_share <= 1.0
    assert fk.net_key_rate(small, 0.0).net_bps == heavy.gross_bps
    with pytest.raises(ValueError, match="auth_bits_per_block"):
        fk.net_key_rate(base, -1.0)
    nothing = fk.net_key_rate(dataclasses.replace(base, n_x=10**6))  # preset q_x: no key
    assert nothing.gross_bps == 0.0 and nothing.net_bps < 0 and nothing.auth_share == 1.0


def test_net_optimisation_never_loses_net_rate() -> None:
    p = dataclasses.replace(get_preset("toshiba").with_loss_db(2.0), n_x=10**6)
    gross_opt = fk.optimise_intensities(p)
    net_opt = fk.optimise_intensities(p, auth_bits_per_block=fk.AUTH_BITS_PER_BLOCK)
    assert fk.model_net_key_rate_bps(net_opt) >= 0.999 * fk.model_net_key_rate_bps(gross_opt)
