from __future__ import annotations

import math

import numpy as np
import pytest

from qkdmeet.qkd import optics
from qkdmeet.qkd.params import LinkParams


def test_reference_formulas_by_hand() -> None:
    p = LinkParams(eta_bob=0.2, p_dc=1e-5, p_ap=0.05, e_mis=0.02, loss_db=10.0)
    eta = 0.02  # 10 dB channel times eta_bob 0.2
    mu = 0.5
    d = 1 - (1 - 2e-5) * math.exp(-eta * mu)
    assert optics.click_probability(p, mu) == pytest.approx(d, rel=1e-12)
    assert optics.gain(p, mu) == pytest.approx(d * 1.05, rel=1e-12)
    e = 1e-5 + 0.02 * (1 - math.exp(-eta * mu)) + 0.05 * d / 2
    assert optics.error_probability(p, mu) == pytest.approx(e, rel=1e-12)
    assert optics.qber(p, mu) == pytest.approx(e / (d * 1.05), rel=1e-12)


def test_vectorised_and_monotone() -> None:
    p = LinkParams()
    mus = np.array([0.0, 0.1, 0.3, 0.6])
    g = optics.gain(p, mus)
    assert g.shape == (4,)
    assert np.all(np.diff(g) > 0)
    # the vacuum gives dark counts and their afterpulses only
    assert g[0] == pytest.approx(2 * p.p_dc * (1 + p.p_ap))
    assert optics.qber(p, 0.0) == pytest.approx(0.5, rel=1e-9)


def test_rates_follow_the_clock() -> None:
    p = LinkParams(clock_hz=2e9)
    assert optics.detection_rate_hz(p) == pytest.approx(2e9 * optics.average_gain(p))
    assert optics.sifted_x_rate_hz(p) == pytest.approx(optics.detection_rate_hz(p) * p.q_x**2)
    assert 0 < optics.average_qber(p) < 0.05


def test_detector_no_click_coherent_and_fock() -> None:
    a, b = optics.detector_no_click(0.1, 2.0, 0.01)
    assert a * b == pytest.approx(math.exp(-0.2))
    a, b = optics.detector_no_click(0.1, 3, 0.5, fock=True)
    assert a == pytest.approx(0.95**3) and b == pytest.approx(0.95**3)
