"""Post-processing kernels of the QKD link: sifting, error correction, verification, PA.

Each kernel takes plain arrays (bits as 0/1 ``uint8``), and every interactive
step is a pair of state machines exchanging bytes, so the protocol layer can
run the two ends in different actors or processes.
"""

from qkdmeet.qkd.kernels.bits import (
    BitsError,
    as_bits,
    binary_entropy,
    pack_bits,
    pack_words,
    unpack_bits,
    unpack_words,
)
from qkdmeet.qkd.kernels.modular_hash import (
    multiply_add_shift_hash,
    multiply_add_shift_hash_naive,
    multiply_add_shift_seed_bits,
)
from qkdmeet.qkd.kernels.privacy import (
    FAMILIES,
    PrivacyAmplificationError,
    amplification_seed_bits,
    amplify,
    toeplitz_hash,
    toeplitz_hash_naive,
    toeplitz_seed_bits,
)
from qkdmeet.qkd.kernels.reconciliation import (
    ReconcilerAlice,
    ReconcilerBob,
    ReconciliationError,
    ReconciliationResult,
    cascade_block_sizes,
    reconcile_local,
)
from qkdmeet.qkd.kernels.sifting import (
    BASIS_X,
    BASIS_Z,
    SiftingError,
    SiftResult,
    alice_sift,
    bob_announcement,
    bob_sift,
    z_errors_per_intensity,
)
from qkdmeet.qkd.kernels.verification import (
    VerificationError,
    verification_seed_bits,
    verification_tag,
    verification_tag_bits,
)

__all__ = [
    "BASIS_X",
    "BASIS_Z",
    "FAMILIES",
    "BitsError",
    "PrivacyAmplificationError",
    "ReconcilerAlice",
    "ReconcilerBob",
    "ReconciliationError",
    "ReconciliationResult",
    "SiftResult",
    "SiftingError",
    "VerificationError",
    "alice_sift",
    "amplification_seed_bits",
    "amplify",
    "as_bits",
    "binary_entropy",
    "bob_announcement",
    "bob_sift",
    "cascade_block_sizes",
    "multiply_add_shift_hash",
    "multiply_add_shift_hash_naive",
    "multiply_add_shift_seed_bits",
    "pack_bits",
    "pack_words",
    "reconcile_local",
    "toeplitz_hash",
    "toeplitz_hash_naive",
    "toeplitz_seed_bits",
    "unpack_bits",
    "unpack_words",
    "verification_seed_bits",
    "verification_tag",
    "verification_tag_bits",
    "z_errors_per_intensity",
]
