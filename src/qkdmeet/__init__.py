"""qkdmeet: a video conference secured end to end by quantum key distribution.

Layers, from photon to pixel (``docs/ARCHITECTURE.md`` draws them, with the
data flow and where each invariant is enforced and tested): ``qkd``
(simulated link and key distillation), ``kme`` (ETSI GS QKD 014 key
management), ``vpn`` (one-time-pad gateways), ``conference`` (WebRTC
conference); beside them ``crypto`` (Wegman-Carter, Poly1305), ``testbed``
(the two sites in namespaces), ``report`` (key accounting) and ``demo``
(everything on one machine).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
