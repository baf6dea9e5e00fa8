"""Benchmarks beside the product: ``qkdmeet bench LAYER`` and the scripts in ``benchmarks/``.

Each module here measures one layer from the outside: it imports the layer's
public API (and the testbed, for the runs across namespaces), and no product
module imports this package, so the layers carry no measuring code and
``import qkdmeet.<layer>`` loads none of it (``tests/bench/test_layering.py``
checks the direction).

:data:`SUITES` names, per layer, the module whose ``main(argv)`` runs its
suite. The QKD link's suite is :mod:`qkdmeet.bench.qkd` (end to end, merging
:mod:`qkdmeet.bench.qkd_kernels` and :mod:`qkdmeet.bench.qkd_model`); the
conference's still lives in ``qkdmeet.conference.bench``.

This module is imported by the command line at every start: it holds names
only.
"""

from __future__ import annotations

#: Layer -> the module whose ``main(argv: list[str]) -> int`` runs its benchmarks.
SUITES: dict[str, str] = {
    "qkd": "qkdmeet.bench.qkd",
    "kme": "qkdmeet.bench.kme",
    "vpn": "qkdmeet.bench.vpn",
    "conference": "qkdmeet.conference.bench",
}

__all__ = ["SUITES"]
