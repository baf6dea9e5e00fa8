from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from qkdmeet.qkd import finite_key as fk
from qkdmeet.qkd import optics
from qkdmeet.qkd.eve import InterceptResend, PhotonNumberSplitting, parse_eve
from qkdmeet.qkd.events import detection_probability, sample_detections
from qkdmeet.qkd.params import LinkParams, get_preset

# A small-block variant of the GHz device: balanced bases so that 10^6 X bits
# carry enough Z statistics for a positive finite key on the clean link.
SMALL = dataclasses.replace(get_preset("toshiba"), q_x=0.5, n_x=10**6)


def _key_length(params: LinkParams, counts: fk.DecoyCounts) -> tuple[int, fk.DecoyEstimate]:
    assert counts.m_x is not None
    qber_x = sum(counts.m_x) / counts.total_x
    est = fk.estimate(counts, params)
    lam = params.f_ec * counts.total_x * fk.binary_entropy(qber_x)
    return fk.secret_key_length(est, lam, params), est


def _run(params: LinkParams, eve: object, seed: int) -> fk.DecoyCounts:
    n_pulses = int(fk.expected_counts(params)[0])
    rec = sample_detections(params, n_pulses, np.random.default_rng(seed), eve)  # type: ignore[arg-type]
    return fk.decoy_counts(rec)


def test_parse_eve() -> None:
    assert parse_eve("none") is None and parse_eve(None) is None
    assert parse_eve("intercept-resend:0.5") == InterceptResend(0.5)
    assert parse_eve("PNS") == PhotonNumberSplitting()
    for bad in ("intercept-resend:x", "intercept-resend:1.5", "trojan"):
        with pytest.raises(ValueError):
            parse_eve(bad)


def test_clean_link_gives_key() -> None:
    p = SMALL.with_loss_db(2.0)
    length, est = _key_length(p, _run(p, None, 1))
    assert length > 0.05 * p.n_x
    assert est.phi_x < 0.12


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_intercept_resend_raises_errors_by_a_quarter_of_the_fraction(fraction: float) -> None:
    p = SMALL.with_loss_db(2.0)
    counts = _run(p, InterceptResend(fraction), 2)
    assert counts.m_x is not None
    base = float(optics.qber(p, p.mu[0]))
    # the signal intensity dominates X; Z errors per intensity mu1 likewise
    qx = counts.m_x[0] / counts.n_x[0]
    qz = counts.m_z[0] / counts.n_z[0]
    for q, n in ((qx, counts.n_x[0]), (qz, counts.n_z[0])):
        expected = base + fraction / 4 * (1 - 2 * base)
        assert abs(q - expected) < 5 * math.sqrt(expected / n) + 0.01


def test_full_intercept_resend_gives_no_key() -> None:
    p = SMALL.with_loss_db(2.0)
    counts = _run(p, InterceptResend(1.0), 3)
    assert counts.qber_z > 0.2
    length, est = _key_length(p, counts)
    assert length == 0
    assert est.aborted or est.phi_x > 0.25


def test_intercept_resend_keeps_bob_gain() -> None:
    p = SMALL.with_loss_db(2.0)
    eve = InterceptResend(1.0)
    assert p.mu[0] < eve.resend_intensity(p) < 10
    assert detection_probability(p, eve) == pytest.approx(detection_probability(p), rel=1e-6)


def test_pns_keeps_gain_and_is_revealed_by_decoys() -> None:
    p = SMALL.with_loss_db(10.0)
    eve = PhotonNumberSplitting()
    assert 0 < eve.forward_fraction(p) < 1
    clean = _run(p, None, 4)
    attacked = _run(p, eve, 5)
    # Bob sees the signal gain he expects (within 5 %) and no extra errors ...
    assert attacked.n_x[0] == pytest.approx(clean.n_x[0], rel=0.05)
    assert attacked.m_x is not None and clean.m_x is not None
    assert sum(attacked.m_x) / attacked.total_x < 0.05
    # ... but the decoy bounds see no single photons, and no key comes out
    len_clean, est_clean = _key_length(p, clean)
    len_pns, est_pns = _key_length(p, attacked)
    assert len_clean > 0
    assert est_pns.s_x1 < 0.1 * est_clean.s_x1
    assert len_pns == 0


def test_intercept_resend_fraction_validated() -> None:
    with pytest.raises(ValueError, match="fraction"):
        InterceptResend(-0.1)
