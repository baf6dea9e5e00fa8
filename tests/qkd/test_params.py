from __future__ import annotations

import dataclasses

import pytest

from qkdmeet.qkd.params import PRESETS, LinkParams, get_preset


def test_presets_hold_the_reference_devices() -> None:
    t = get_preset("toshiba")
    assert t.clock_hz == 1e9 and t.eta_bob == pytest.approx(0.30) and t.n_x == 10**8
    assert t.q_x >= 0.9 and t.eps_sec == 1e-10 and t.eps_cor == 1e-15
    assert t.distance_km == pytest.approx(7.0)
    lim = get_preset("LIM2014")
    assert (lim.eta_bob, lim.p_dc, lim.p_ap, lim.e_mis, lim.f_ec) == (0.10, 6e-7, 0.04, 5e-3, 1.16)
    assert lim.mu[2] == 2e-4 and lim.eps_sec_per_bit == 1e-15
    assert set(PRESETS) == {"toshiba", "lim2014"}


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(ValueError, match="lim2014, toshiba"):
        get_preset("idquantique")


def test_loss_and_distance() -> None:
    p = get_preset("toshiba")
    assert p.with_loss_db(2.0).loss_db == 2.0
    q = p.with_distance_km(50)
    assert q.loss_db == pytest.approx(10.0)
    assert q.eta_channel == pytest.approx(0.1)
    assert q.eta_sys == pytest.approx(0.03)
    assert p.with_distance_km(10, alpha_db_per_km=0.16).loss_db == pytest.approx(1.6)
    with pytest.raises(ValueError, match="distance_km"):
        p.with_distance_km(-1)
    with pytest.raises(ValueError, match="loss_db"):
        p.with_loss_db(float("nan"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mu": (0.5, 0.45, 0.1)}, "mu1 > mu2 \\+ mu3"),
        ({"mu": (0.5, 0.1, 0.2)}, "mu2 > mu3"),
        ({"mu": (0.5, 0.1, -0.01)}, "mu3 must be >= 0"),
        ({"mu": (0.5, 0.1)}, "three values"),
        ({"p_mu": (0.5, 0.3, 0.1)}, "sum to 1"),
        ({"p_mu": (1.0, 0.0, 0.0)}, "p_mu\\[1\\]"),
        ({"q_x": 1.0}, "q_x"),
        ({"q_x": 0.0}, "q_x"),
        ({"eta_bob": 0.0}, "eta_bob"),
        ({"eta_bob": 1.2}, "eta_bob"),
        ({"p_dc": -1e-6}, "p_dc"),
        ({"p_ap": 0.9}, "p_ap"),
        ({"e_mis": 0.5}, "e_mis"),
        ({"loss_db": -3.0}, "loss_db"),
        ({"f_ec": 0.9}, "f_ec"),
        ({"eps_sec": 0.0}, "eps_sec"),
        ({"eps_cor": 2.0}, "eps_cor"),
        ({"n_x": 10}, "n_x"),
        ({"n_x": 1e8}, "n_x"),
        ({"clock_hz": 0.0}, "clock_hz"),
    ],
)
def test_bad_parameters_raise_value_error(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(get_preset("toshiba"), **change)  # type: ignore[arg-type]


def test_params_are_frozen() -> None:
    p = LinkParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.loss_db = 3.0  # type: ignore[misc]
