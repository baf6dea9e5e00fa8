"""Post-processing kernels of the QKD link: sifting, error correction, verification, PA.

Each kernel takes plain arrays (bits as 0/1 ``uint8``), and every interactive
step is a pair of state machines exchanging bytes, so the protocol layer can
run the two ends in different actors or processes. One block, in order:

1. Sifting: Bob sends ``bob_announcement(bob_events)``; Alice answers with
   ``alice_sift(...).reply_basis/reply_intensity``; Bob runs ``bob_sift``.
   Both hold the X (key) and Z (estimation) sets and n_{X,k}, n_{Z,k}.
2. Error correction: ``ReconcilerBob(x_bits, qber)``; loop ``req =
   bob.next_request()`` -> ``alice.answer(req)`` -> ``bob.handle_reply``
   until ``None``; ``alice.leaked_bits`` (= ``bob.leaked_bits``) is
   lambda_EC for the key length.
3. Verification: Alice draws a public seed of ``verification_seed_bits(n, t)``
   bits, ``t = verification_tag_bits(eps_cor)``; both compare
   ``verification_tag(key, seed, t)``.
4. Privacy amplification: a public seed of ``amplification_seed_bits(family,
   n, l)`` bits; ``amplify(key, seed, l, family)`` at both ends.

All numba kernels release the GIL (``nogil=True``), so two ends in threads of
one process use two cores.
"""

from qkdmeet.qkd.kernels.bits import (
    BitsError,
    PackedBits,
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
    "PackedBits",
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
