from __future__ import annotations

import json
from pathlib import Path

import pytest

from qkdmeet.qkd import finite_key as fk
from qkdmeet.qkd.params import get_preset
from qkdmeet.qkd.rate_curve import (
    RateCurve,
    key_rate_curves,
    main,
    max_distance_km,
    plot_key_rate_vs_distance,
)


def test_plot_writes_png_and_returns_curves(tmp_path: Path) -> None:
    out = tmp_path / "rate.png"
    curves = plot_key_rate_vs_distance(out, max_km=40, step_km=20, lim_block_sizes=(10**6, 10**9))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    names = [(c.preset, c.n_x) for c in curves]
    assert names == [
        ("toshiba", 10**8),
        ("toshiba", None),
        ("lim2014", 10**6),
        ("lim2014", 10**9),
        ("lim2014", None),
    ]
    for c in curves:
        assert c.distance_km == [0.0, 20.0, 40.0]
        assert all(
            a > b > 0 for a, b in zip(c.rate, c.rate[1:], strict=False)
        )  # falls with distance
    toshiba = curves[0]
    assert toshiba.unit == "bit/s" and 1e7 < toshiba.rate[0] < 3e7
    by_n = {c.n_x: c for c in curves if c.preset == "lim2014"}
    # larger blocks give more key; the infinite-key curve is the ceiling
    assert by_n[10**6].rate[1] < by_n[10**9].rate[1] < by_n[None].rate[1]
    assert by_n[10**9].unit == "bit/pulse" and by_n[10**9].rate[0] < 0.02


def test_curve_matches_an_optimised_point() -> None:
    (curve, _) = key_rate_curves(("toshiba",), max_km=10, step_km=10)
    point = fk.optimise_intensities(
        get_preset("toshiba").with_distance_km(10), auth_bits_per_block=fk.AUTH_BITS_PER_BLOCK
    )
    r = fk.net_key_rate(point)
    assert curve.rate[1] == pytest.approx(r.net_bps, rel=0.02)
    assert curve.gross_rate[1] == pytest.approx(r.gross_bps, rel=0.02)
    assert curve.auth_share[1] == pytest.approx(r.auth_share, rel=0.05)
    assert curve.auth_bits_per_block == fk.AUTH_BITS_PER_BLOCK


def test_curves_are_net_of_authentication_with_gross_beside() -> None:
    curves = key_rate_curves(("lim2014",), max_km=20, step_km=20, lim_block_sizes=(10**4, 10**6))
    by_n = {c.n_x: c for c in curves}
    for n in (10**4, 10**6):
        c = by_n[n]
        for net, gross, share in zip(c.rate, c.gross_rate, c.auth_share, strict=True):
            assert net < gross and 0 < share <= 1
        d = c.as_dict()
        assert d["rate"] == c.rate and d["gross_rate"] == c.gross_rate
        assert d["auth_share"] == c.auth_share and d["auth_bits_per_block"] == 2048.0
    # small blocks pay far more of their key for authentication
    assert by_n[10**4].auth_share[0] > 10 * by_n[10**6].auth_share[0]
    asym = by_n[None]
    assert asym.rate == asym.gross_rate and asym.auth_share == [0.0, 0.0]
    # with no authentication cost the curve is the gross one of the paper
    (free, _) = key_rate_curves(
        ("lim2014",), max_km=20, step_km=20, lim_block_sizes=(10**4,), auth_bits_per_block=0.0
    )
    assert free.rate == free.gross_rate and free.auth_share == [0.0, 0.0]
    assert free.rate[0] > by_n[10**4].rate[0]


def test_max_distance_and_bad_arguments() -> None:
    lim = get_preset("lim2014")
    d6 = max_distance_km(lim, 10**6, tol_km=5.0)
    d9 = max_distance_km(lim, 10**9, tol_km=5.0)
    assert 120 < d6 < d9 < 220
    d5_net = max_distance_km(lim, 10**5, tol_km=5.0)
    d5_gross = max_distance_km(lim, 10**5, tol_km=5.0, auth_bits_per_block=0.0)
    assert 0 < d5_net <= d5_gross  # authentication never lengthens the reach
    assert max_distance_km(lim, 10**5, tol_km=5.0, auth_bits_per_block=1e9) == 0.0
    with pytest.raises(ValueError, match="max_km"):
        key_rate_curves(max_km=0)
    with pytest.raises(ValueError, match="step_km"):
        key_rate_curves(max_km=10, step_km=20)
    c = RateCurve("x", None, "bit/s", [0.0, 10.0], [1.0, 0.0])
    assert c.max_distance_km == 0.0 and c.label.startswith("asymptotic")


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.png"
    assert main([str(out), "--preset", "toshiba", "--max-km", "20", "--step-km", "20"]) == 0
    text = capsys.readouterr().out
    assert out.exists() and "toshiba" in text and "net" in text and "gross" in text
    assert main([str(out), "--preset", "toshiba", "--max-km", "20", "--step-km", "20",
                 "--json"]) == 0  # fmt: skip
    doc = json.loads(capsys.readouterr().out)
    first = doc["curves"][0]
    assert first["rate_is"] == "net of authentication"
    assert first["rate"][0] < first["gross_rate"][0] and 0 < first["auth_share"][0] < 0.01
    assert main([str(out), "--preset", "toshiba", "--max-km", "20", "--step-km", "20",
                 "--auth-bits-per-block", "-1"]) == 2  # fmt: skip
    assert main([str(out), "--preset", "nope", "--max-km", "20", "--step-km", "20"]) == 2
