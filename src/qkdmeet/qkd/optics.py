"""Expected detection statistics of the link (Lim et al. 2014, section IV).

With eta_sys = eta_channel * eta_Bob and intensity k (mean photon number):

- click probability without afterpulses: D_k = 1 - (1 - 2 p_dc) exp(-eta_sys k)
- with afterpulses: R_k = D_k (1 + p_ap)
- error probability per pulse (matching bases):
  e_k = p_dc + e_mis (1 - exp(-eta_sys k)) + p_ap D_k / 2
- QBER of intensity k: e_k / R_k.

All functions take scalars or numpy arrays of intensities and broadcast.
The event sampler (:mod:`qkdmeet.qkd.events`) draws from the underlying
two-detector model (:func:`detector_no_click`, double clicks resolved by a
random bit). Its gains equal R_k to 1e-8 and its error probabilities equal
e_k to 4e-4 (relative) at the presets' intensities, at 0 dB where the
difference is largest.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from qkdmeet.qkd.params import LinkParams

FloatArray = npt.NDArray[np.float64]


def click_probability(params: LinkParams, k: npt.ArrayLike) -> FloatArray:
    """D_k: probability that Bob's detectors click for a pulse of intensity k (no afterpulses)."""
    mu = np.asarray(k, dtype=np.float64)
    return np.asarray(1.0 - (1.0 - 2.0 * params.p_dc) * np.exp(-params.eta_sys * mu))


def gain(params: LinkParams, k: npt.ArrayLike) -> FloatArray:
    """R_k = D_k (1 + p_ap): probability of a detection per pulse of intensity k."""
    return click_probability(params, k) * (1.0 + params.p_ap)


def error_probability(params: LinkParams, k: npt.ArrayLike) -> FloatArray:
    """e_k: probability per pulse of an erroneous detection (bases matching)."""
    mu = np.asarray(k, dtype=np.float64)
    d = click_probability(params, mu)
    return np.asarray(
        params.p_dc + params.e_mis * (1.0 - np.exp(-params.eta_sys * mu)) + params.p_ap * d / 2.0
    )


def qber(params: LinkParams, k: npt.ArrayLike) -> FloatArray:
    """e_k / R_k: error rate among matching-basis detections at intensity k."""
    return error_probability(params, k) / gain(params, k)


def intensity_array(params: LinkParams) -> FloatArray:
    return np.asarray(params.mu, dtype=np.float64)


def average_gain(params: LinkParams) -> float:
    """sum_k p_k R_k: detections per pulse over all intensities."""
    return float(np.dot(params.p_mu, gain(params, intensity_array(params))))


def average_qber(params: LinkParams) -> float:
    """The QBER of the sifted key (all intensities): sum p_k e_k / sum p_k R_k."""
    mu = intensity_array(params)
    return float(np.dot(params.p_mu, error_probability(params, mu)) / average_gain(params))


def detection_rate_hz(params: LinkParams) -> float:
    """Detections per second at the clock rate."""
    return params.clock_hz * average_gain(params)


def sifted_x_rate_hz(params: LinkParams) -> float:
    """Sifted X-basis (key) bits per second: clock * q_x^2 * average gain."""
    return detection_rate_hz(params) * params.q_x**2


def detector_no_click(
    eta: float, mean_photons: float, e_mis: float, *, fock: bool = False
) -> tuple[float, float]:
    """No-click probabilities from light alone for Bob's two detectors.

    Returns (P(no light at the 'correct' detector), P(no light at the 'wrong'
    detector)); the joint no-click probability is their product for a
    phase-randomised coherent pulse (Poisson splitting is independent) and
    ``(1 - eta)^n`` for an ``n``-photon Fock state (``fock=True``,
    ``mean_photons`` = n). The misalignment ``e_mis`` routes that fraction of
    the light to the wrong detector; for mismatched bases pass ``e_mis = 0.5``.
    """
    if fock:
        n = mean_photons
        return (1.0 - eta * (1.0 - e_mis)) ** n, (1.0 - eta * e_mis) ** n
    x = eta * mean_photons
    return float(np.exp(-x * (1.0 - e_mis))), float(np.exp(-x * e_mis))
