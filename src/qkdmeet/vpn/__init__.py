"""qkdmeet.vpn: the QKD-VPN gateway (layer 3 of ``docs/ARCHITECTURE.md``).

Each whole inner IP packet is XORed with fresh QKD key (one-time pad) and
authenticated with a Wegman-Carter tag (two Poly1305 hashes, fresh 32-byte
mask per packet); key comes from ETSI GS QKD 014 KMEs, key IDs travel in the
authenticated outer header. Module map, from the wire inwards:

* :mod:`.wire` -- the outer packet's format (layout, field offsets, codec)
* :mod:`.constants` -- the numbers of the wire format, and implementation limits
* :mod:`.fastpath`, :mod:`.pump` -- pad and tag kernels, per packet and batched
* :mod:`.otp` -- the reference XOR the kernels are tested against; :mod:`.replay` -- window
* :mod:`.keystream` -- ETSI 014 keys as addressed pad/mask bytes (master and slave)
* :mod:`.memkeys`, :mod:`.filekeys` -- key supplies for tests, benchmark, testbed
* :mod:`.tun` -- TUN device and fake; :mod:`.transport` -- UDP bind and fake
* :mod:`.gateway` -- the data path; :mod:`.metrics`, :mod:`.budget` -- accounting
* :mod:`.config`, :mod:`.daemon`, :mod:`.cli` -- ``qkdmeet gateway run``
* the benchmark is :mod:`qkdmeet.bench.vpn` (``qkdmeet bench vpn``)
"""

from qkdmeet.vpn.config import ConfigError, GatewayConfig, load_config
from qkdmeet.vpn.gateway import Gateway, GatewayKeys, payload_per_key_byte
from qkdmeet.vpn.memkeys import KeySupplyError, MemoryKeyPair
from qkdmeet.vpn.metrics import GatewayMetrics

__all__ = [
    "ConfigError",
    "Gateway",
    "GatewayConfig",
    "GatewayKeys",
    "GatewayMetrics",
    "KeySupplyError",
    "MemoryKeyPair",
    "load_config",
    "payload_per_key_byte",
]
