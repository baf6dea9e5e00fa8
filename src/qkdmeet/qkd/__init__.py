"""Layer 1: the simulated QKD link and its key distillation.

Modules (imported on demand; only the key-sink interface is loaded here so
that the ``qkdmeet`` command starts fast):

- :mod:`.params`, :mod:`.optics`, :mod:`.events`, :mod:`.eve`: the device,
  its channel and eavesdroppers, and the per-pulse event sampler;
- :mod:`.finite_key`, :mod:`.rate_curve`: Lim et al. 2014 bounds, the model's
  rates, the key-rate-versus-distance plot;
- :mod:`.kernels`: sifting, Cascade, verification, privacy amplification;
- :mod:`.channel` (quantum channel: Alice's records / Bob's view, eve and cut
  controls), :mod:`.classical` (Wegman-Carter-authenticated messages, key
  pools, in-memory and TCP transports), :mod:`.messages`, :mod:`.protocol`
  (the :class:`~.protocol.Transmitter` and :class:`~.protocol.Receiver`
  actors), :mod:`.source` (the device's pulses in wall-clock time), :mod:`.link`
  (:class:`~.link.QkdLink`: both ends in one process), :mod:`.nodes`
  (:class:`~.nodes.TransmitterNode` / :class:`~.nodes.ReceiverNode`: one end per
  process, over TCP), :mod:`.figures` (their live figures), :mod:`.memory`;
- :mod:`.cli` (``qkdmeet qkd ...``); the benchmarks are in :mod:`qkdmeet.bench.qkd`
  (``qkdmeet bench qkd``).
"""

from qkdmeet.qkd.sink import KeyBlock, KeySink, ListSink

__all__ = ["KeyBlock", "KeySink", "ListSink"]
