"""Load every post-processing kernel before the first block needs it.

numba compiles each kernel once per argument types and keeps the machine
code in its cache, but a fresh process still loads it at the first call of
each kernel (some tens of ms each, several seconds for the link's ~40
kernels). :func:`warm_up` runs one small block's worth of the real path at
one end (sampling, the fibre's coding, the announcement's coding, sifting,
Cascade, verification, privacy amplification) with the argument types of
the live link, so that a node started with it in a worker thread
(:meth:`qkdmeet.qkd.nodes.TransmitterNode.start`) loads the kernels while its
first chunk of pulses is being sampled instead of on the first block's
critical path.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from qkdmeet.qkd import messages as m
from qkdmeet.qkd.channel import QuantumChannel, decode_bob_chunk, encode_bob_chunk
from qkdmeet.qkd.kernels import (
    ReconcilerAlice,
    ReconcilerBob,
    alice_sift,
    amplification_seed_bits,
    amplify,
    bob_sift,
    verification_seed_bits,
    verification_tag,
    verification_tag_bits,
    z_errors_per_intensity,
)
from qkdmeet.qkd.kernels.codes import pack_codes, unpack_codes
from qkdmeet.qkd.params import LinkParams

log = logging.getLogger(__name__)

#: Pulses of the warm-up chunk (~30,000 detections at 2 dB: a few ms of work once loaded).
WARM_UP_PULSES = 500_000


def warm_up(params: LinkParams, pa_family: str = "multiply-add-shift") -> dict[str, float]:
    """Run the kernels once on a small synthetic block: seconds, sifted bits, Cascade rounds."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(12345)
    ch = QuantumChannel(params, rng, chunk_pulses=WARM_UP_PULSES)
    alice, chunk = ch.emit(WARM_UP_PULSES)
    bob = decode_bob_chunk(b"".join(encode_bob_chunk(chunk))).events
    first = chunk.first_pulse
    announce = b"".join((m.encode_indices(bob.pulse_index, first), m.bits(bob.basis)))
    r = m.Reader(announce)
    index = m.decode_indices(r, first, first + chunk.n_pulses)
    bob_basis = r.bits()
    a = alice_sift(alice, index, bob_basis)
    basis, intensity = unpack_codes(pack_codes(a.reply_basis, a.reply_intensity), len(bob))
    b = bob_sift(bob, basis, intensity)
    z_errors_per_intensity(b.z_bits, a.z_bits, b.z_intensity)
    rounds = 0
    if a.x_bits.size >= 1024:
        ra = ReconcilerAlice(a.x_bits)
        rb = ReconcilerBob(b.x_bits, 0.03, seed=1)
        request = rb.next_request()
        rb.precompute()
        while request is not None:
            rb.handle_reply(ra.answer(request))
            request = rb.next_request()
            rounds += 1
        n = a.x_bits.size
        t = verification_tag_bits(params.eps_cor)
        seed = rng.integers(0, 2, verification_seed_bits(n, t), dtype=np.uint8)
        verification_tag(rb.corrected_bits, seed, t)
        out = n // 4 // 8 * 8
        pa_seed = rng.integers(0, 2, amplification_seed_bits(pa_family, n, out), dtype=np.uint8)
        amplify(a.x_bits, pa_seed, out, pa_family)
    took = time.perf_counter() - t0
    log.info("QKD kernels loaded in %.2f s", took)
    return {"seconds": took, "sifted_bits": float(a.x_bits.size), "cascade_rounds": rounds}
