"""qkdmeet: a video conference secured end to end by quantum key distribution.

Layers (see DESIGN.md): ``qkd`` (simulated link and key distillation), ``kme``
(ETSI GS QKD 014 key management), ``vpn`` (one-time-pad gateways),
``conference`` (WebRTC conference), ``testbed`` and ``report``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
