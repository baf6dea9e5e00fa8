from __future__ import annotations

import math

import numpy as np
import pytest

from qkdmeet.qkd import optics
from qkdmeet.qkd.events import (
    BASIS_X,
    detection_probability,
    honest_classes,
    sample_detections,
)
from qkdmeet.qkd.params import get_preset

N_PULSES = 20_000_000


def _within(observed: float, expected_p: float, n: float, sigmas: float = 5.0) -> bool:
    sd = math.sqrt(max(expected_p * (1 - expected_p), 1e-300) / n)
    return abs(observed - expected_p) <= sigmas * sd


@pytest.fixture(scope="module")
def record_2db():  # type: ignore[no-untyped-def]
    p = get_preset("toshiba").with_loss_db(2.0)
    return p, sample_detections(p, N_PULSES, np.random.default_rng(7))


def test_record_structure(record_2db) -> None:  # type: ignore[no-untyped-def]
    _, r = record_2db
    a, b = r.alice, r.bob
    n = len(r)
    assert n > 0 and len(a) == len(b) == n
    assert np.array_equal(a.pulse_index, b.pulse_index)
    assert a.pulse_index.dtype == np.int64 and np.all(np.diff(a.pulse_index) > 0)
    assert a.pulse_index[0] >= 0 and a.pulse_index[-1] < N_PULSES
    for arr in (a.bit, a.basis, a.intensity, b.basis, b.bit):
        assert arr.dtype == np.uint8
    assert set(np.unique(a.intensity)) <= {0, 1, 2}
    assert set(np.unique(b.bit)) == {0, 1} and set(np.unique(a.basis)) == {0, 1}
    # Bob's half carries nothing of Alice's
    assert not hasattr(b, "intensity")


def test_detections_per_intensity_match_gain(record_2db) -> None:  # type: ignore[no-untyped-def]
    p, r = record_2db
    mu = optics.intensity_array(p)
    gains = optics.gain(p, mu)
    for k in range(3):
        n_k = int(np.count_nonzero(r.alice.intensity == k))
        assert _within(n_k / N_PULSES, p.p_mu[k] * gains[k], N_PULSES), k
    total = detection_probability(p)
    assert total == pytest.approx(optics.average_gain(p), rel=1e-4)


def test_sampled_qber_matches_optics_in_both_bases(record_2db) -> None:  # type: ignore[no-untyped-def]
    p, r = record_2db
    a, b = r.alice, r.bob
    match = a.basis == b.basis
    err = a.bit != b.bit
    for k in (0, 1):
        for basis in (0, 1):
            sel = match & (a.intensity == k) & (a.basis == basis)
            n = int(sel.sum())
            assert _within(float(err[sel].mean()), float(optics.qber(p, p.mu[k])), n), (k, basis)
    # mismatched bases: Bob's bit is a coin flip
    sel = ~match
    assert _within(float(err[sel].mean()), 0.5, int(sel.sum()))


def test_basis_choice_and_double_clicks(record_2db) -> None:  # type: ignore[no-untyped-def]
    p, r = record_2db
    n = len(r)
    assert _within(float(np.mean(r.alice.basis == BASIS_X)), p.q_x, n)
    assert _within(float(np.mean(r.bob.basis == BASIS_X)), p.q_x, n)
    # double clicks: both detectors fire; for matched bases about p(correct) * p(wrong)
    dbl = r.bob.double_click
    assert dbl.dtype == np.bool_ and 0 < dbl.sum() < 0.05 * n
    sig = (r.alice.intensity == 0) & (r.alice.basis == r.bob.basis)
    x = p.eta_sys * p.mu[0]
    expected = (1 - math.exp(-x * (1 - p.e_mis)) + p.p_dc) * (1 - math.exp(-x * p.e_mis) + p.p_dc)
    expected /= float(optics.gain(p, p.mu[0]))
    assert _within(float(dbl[sig].mean()), expected, int(sig.sum()))


def test_reproducible_and_offset() -> None:
    p = get_preset("toshiba")
    r1 = sample_detections(p, 10**6, np.random.default_rng(3))
    r2 = sample_detections(p, 10**6, np.random.default_rng(3))
    r3 = sample_detections(p, 10**6, np.random.default_rng(3), first_pulse=5_000_000)
    assert np.array_equal(r1.bob.bit, r2.bob.bit) and np.array_equal(r1.alice.bit, r2.alice.bit)
    assert np.array_equal(r3.bob.pulse_index, r1.bob.pulse_index + 5_000_000)
    assert r3.first_pulse == 5_000_000 and r3.n_pulses == 10**6
    r4 = sample_detections(p, 10**6, np.random.default_rng(4))
    assert not np.array_equal(r1.bob.pulse_index[:100], r4.bob.pulse_index[:100])


def test_empty_and_bad_input() -> None:
    p = get_preset("toshiba")
    assert len(sample_detections(p, 0, np.random.default_rng(1))) == 0
    with pytest.raises(ValueError, match="n_pulses"):
        sample_detections(p, -5, np.random.default_rng(1))
    with pytest.raises(ValueError, match="first_pulse"):
        sample_detections(p, 10, np.random.default_rng(1), first_pulse=-1)


def test_honest_classes_cover_the_intensities() -> None:
    p = get_preset("lim2014")
    classes = honest_classes(p)
    assert [c.intensity for c in classes] == [0, 1, 2]
    assert sum(c.prob for c in classes) == pytest.approx(1.0)
