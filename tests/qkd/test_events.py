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


def test_generator_matches_xoshiro256starstar_reference() -> None:
    from qkdmeet.qkd.events import _next_u64

    state = np.array([1, 2, 3, 4], dtype=np.uint64)
    # first outputs of the reference C implementation for this state
    assert [int(_next_u64(state)) for _ in range(4)] == [11520, 0, 1509978240, 1215971899390074240]


def test_detections_spread_uniformly_over_the_pulse_train() -> None:
    p = get_preset("toshiba").with_loss_db(20.0)
    n_pulses = 50_000_000
    r = sample_detections(p, n_pulses, np.random.default_rng(9))
    n = len(r)
    expected = detection_probability(p) * n_pulses
    assert abs(n - expected) < 5 * math.sqrt(expected)
    # ten equal slices of the train hold equal shares (chi-square, 9 degrees of freedom)
    counts = np.bincount(r.bob.pulse_index * 10 // n_pulses, minlength=10)
    chi2 = float(((counts - n / 10) ** 2 / (n / 10)).sum())
    assert chi2 < 33.7  # p = 1e-4
    # gaps are geometric: P(gap == 1) = R
    gaps = np.diff(r.bob.pulse_index)
    assert _within(float(np.mean(gaps == 1)), detection_probability(p), gaps.size)


def _naive_every_pulse(p, n: int, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    """Reference: simulate every pulse with Poisson photon numbers at the two detectors."""
    k = rng.choice(3, size=n, p=p.p_mu)
    mu = np.asarray(p.mu)[k]
    a_basis = (rng.random(n) >= p.q_x).astype(np.uint8)
    b_basis = (rng.random(n) >= p.q_x).astype(np.uint8)
    a_bit = rng.integers(0, 2, n).astype(np.uint8)
    match = a_basis == b_basis
    wrong_share = np.where(match, p.e_mis, 0.5)
    light = p.eta_sys * mu
    correct = (rng.poisson(light * (1 - wrong_share)) > 0) | (rng.random(n) < p.p_dc)
    wrong = (rng.poisson(light * wrong_share) > 0) | (rng.random(n) < p.p_dc)
    click = correct | wrong
    d = 1 - (1 - p.p_dc) ** 2 * np.exp(-light)
    after = ~click & (rng.random(n) < p.p_ap * d / (1 - d))
    double = correct & wrong
    coin = rng.integers(0, 2, n).astype(np.uint8)
    bit = np.where(correct & ~wrong, a_bit, 1 - a_bit).astype(np.uint8)
    bit = np.where(double | after, coin, bit)
    det = click | after
    return k[det], a_basis[det], b_basis[det], a_bit[det], bit[det], double[det]


def test_sampler_agrees_with_a_naive_per_pulse_simulation() -> None:
    p = get_preset("toshiba").with_loss_db(0.0)
    n = 4_000_000
    k, ab, bb, abit, bbit, dbl = _naive_every_pulse(p, n, np.random.default_rng(21))
    r = sample_detections(p, n, np.random.default_rng(22))
    a, b = r.alice, r.bob

    def close(x: float, y: float, m: float) -> bool:  # two samples, each of size about m
        sd = math.sqrt(max(x * (1 - x), y * (1 - y), 1e-12) * 2 / m)
        return abs(x - y) < 5 * sd

    for kk in range(3):
        assert close(
            float(np.mean(k == kk)) * len(k) / n, float(np.mean(a.intensity == kk)) * len(r) / n, n
        )
        sel_ref = (k == kk) & (ab == bb)
        sel = (a.intensity == kk) & (a.basis == b.basis)
        if sel_ref.sum() > 1000:
            qref = float(np.mean(abit[sel_ref] != bbit[sel_ref]))
            assert close(qref, float(np.mean(a.bit[sel] != b.bit[sel])), int(sel_ref.sum()))
    assert close(float(dbl.mean()), float(b.double_click.mean()), len(k))
    assert close(float(np.mean(ab != bb)), float(np.mean(a.basis != b.basis)), len(k))


def test_pulse_train_continues_across_chunks() -> None:
    from qkdmeet.qkd.eve import InterceptResend
    from qkdmeet.qkd.events import PulseTrain

    p = get_preset("toshiba")
    train = PulseTrain(p, np.random.default_rng(5), chunk_pulses=1_000_000)
    first = train.next_chunk()
    second = train.next_chunk(500_000)
    assert first.first_pulse == 0 and second.first_pulse == 1_000_000
    assert train.pulses_sent == 1_500_000
    assert train.seconds_sent == pytest.approx(1.5e-3)
    assert first.bob.pulse_index[-1] < 1_000_000 <= second.bob.pulse_index[0]
    assert second.bob.pulse_index[-1] < 1_500_000
    train.eve = InterceptResend(1.0)
    attacked = train.next_chunk(2_000_000)
    match = attacked.alice.basis == attacked.bob.basis
    assert float(np.mean(attacked.alice.bit[match] != attacked.bob.bit[match])) > 0.2
    with pytest.raises(ValueError, match="chunk_pulses"):
        PulseTrain(p, np.random.default_rng(1), chunk_pulses=0)


@pytest.mark.parametrize("r", [1.0, 0.5, 0.0616, 6.3e-4, 1e-6])
def test_gap_table_inverts_like_the_log_formula(r: float) -> None:
    from qkdmeet.qkd.events import _gap_tables

    table, guide = _gap_tables(r)
    length = table.size - 1
    assert table[-1] == 2**53 and np.all(np.diff(table) >= 0)
    rng = np.random.default_rng(int(r * 1e6) + 1)
    n_random = 200_000
    edges = table[:length]
    u = np.concatenate(
        [rng.integers(0, 2**53, n_random, dtype=np.int64), edges, edges - 1, [0, 2**53 - 1]]
    )
    random_part = np.arange(u.size) < n_random
    ok = (u >= 0) & (u < 2**53)
    u, random_part = u[ok], random_part[ok]
    g_table = np.searchsorted(table, u, side="right")  # smallest g with u < table[g]
    # the guide entry of u's bucket never lies past the answer
    assert np.all(guide[u >> (53 - 12)] <= g_table)
    inside = g_table < length
    if r < 1.0:
        v = (2**53 - u[inside]).astype(np.float64) / 2.0**53
        ratio = np.log(v) / math.log1p(-r)
        g_log = np.floor(ratio).astype(np.int64)
        # equal except where the log formula itself sits on a rounding boundary
        differ = g_log != g_table[inside]
        assert np.all(np.abs(ratio[differ] - np.rint(ratio[differ])) < 1e-9)
        # (on random draws: the boundaries themselves were added on purpose)
        assert differ[random_part[inside]].mean() < 1e-4
        assert (~inside).mean() < 0.05 or length == 4096
    else:
        assert np.all(g_table == 0)


def _geometric_chi2(gaps: np.ndarray, r: float, max_bins: int = 400) -> tuple[float, int]:
    """Chi-square of gap counts (G = 0, 1, ...) against P(G = g) = (1 - r)^g r; and dof."""
    n = gaps.size
    g = np.arange(max_bins)
    p = (1 - r) ** g * r
    keep = int(np.searchsorted(-(p * n), -50.0))  # bins with at least 50 expected
    p = p[:keep]
    counts = np.bincount(np.minimum(gaps, keep), minlength=keep + 1)
    expected = np.append(p, 1.0 - p.sum()) * n
    return float(((counts - expected) ** 2 / expected).sum()), keep


@pytest.mark.parametrize("loss_db", [2.0, 20.0])
def test_gaps_are_geometric_and_the_rate_matches(loss_db: float) -> None:
    from scipy.stats import chi2 as chi2_dist

    p = get_preset("toshiba").with_loss_db(loss_db)
    r = detection_probability(p)
    n_pulses = 20_000_000 if loss_db < 10 else 200_000_000
    rec = sample_detections(p, n_pulses, np.random.default_rng(31), first_pulse=1000)
    n = len(rec)
    expected = r * n_pulses
    assert abs(n - expected) < 5 * math.sqrt(expected * (1 - r))
    idx = rec.bob.pulse_index
    gaps = np.diff(idx, prepend=np.int64(999)) - 1  # pulses without a detection before each
    assert gaps.min() >= 0
    stat, dof = _geometric_chi2(gaps, r)
    assert dof >= 20
    assert chi2_dist.sf(stat, dof) > 1e-5, (stat, dof)
    # mean and variance of a geometric: (1 - r) / r and (1 - r) / r^2
    mean, sd = (1 - r) / r, math.sqrt(1 - r) / r
    assert abs(gaps.mean() - mean) < 5 * sd / math.sqrt(n)
    # the far tail, past the inversion table at 20 dB: P(G >= k) = (1 - r)^k
    k = 4096 if loss_db > 10 else 200
    tail = (1 - r) ** k
    assert _within(float(np.mean(gaps >= k)), tail, n)


def test_both_halves_share_one_read_only_index() -> None:
    r = sample_detections(get_preset("toshiba"), 10**6, np.random.default_rng(2))
    assert r.alice.pulse_index is r.bob.pulse_index
    assert not r.bob.pulse_index.flags.writeable
    with pytest.raises(ValueError):
        r.bob.pulse_index[0] = 5


def test_thirty_two_bit_thresholds_are_exact_ceilings() -> None:
    from qkdmeet.qkd.events import _thresholds32

    cum = np.array([0.0, 2.0**-33, 2.0**-32, 0.25, 0.5 + 2.0**-40, 1.0 - 2.0**-34, 1.0])
    t = _thresholds32(cum)
    assert t.tolist() == [0, 1, 1, 2**30, 2**31 + 1, 2**32, 2**32]
