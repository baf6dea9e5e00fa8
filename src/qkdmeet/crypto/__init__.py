"""Information-theoretically secure primitives shared by the layers."""

from qkdmeet.crypto.wegman_carter import (
    HASH_KEY_BYTES,
    MASK_BYTES,
    TAG_BYTES,
    MacStream,
    WegmanCarterMac,
    forgery_bound_log2,
)

__all__ = [
    "HASH_KEY_BYTES",
    "MASK_BYTES",
    "TAG_BYTES",
    "MacStream",
    "WegmanCarterMac",
    "forgery_bound_log2",
]
