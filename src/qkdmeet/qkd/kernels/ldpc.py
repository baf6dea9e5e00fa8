"""One-way LDPC syndrome reconciliation: the measured alternative to Cascade.

Kept so that the choice made in :mod:`.reconciliation` rests on a measurement
(``bench.py --ldpc``), not on the literature alone; the link does not use it.

Alice sends the syndrome ``H x`` of her key (``m = n (1 - R)`` bits: the
disclosure, f = m / (n h(QBER))); Bob decodes ``x`` from his noisy ``y`` and
the syndrome with belief propagation (sum-product, flooding schedule, channel
LLR ``log((1 - p) / p)``), stopping as soon as his estimate satisfies every
check. Codes are random irregular LDPC codes (edge-socket construction,
variable degrees 2, 3 and 20; the best of five distributions tried), not
optimised or PEG-grown, so the measured f is an honest upper estimate of
what a simple LDPC implementation reaches; rate adaptation is by picking, per
QBER, the highest rate whose frame error rate stays below a target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import numpy.typing as npt

from qkdmeet.qkd.kernels.bits import BitArray, as_bits

#: Variable-node degree distribution (node fractions) of the random codes.
VARIABLE_DEGREES: dict[int, float] = {2: 0.2, 3: 0.7, 20: 0.1}
MAX_ITERATIONS = 60
_LLR_CLAMP = 30.0

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class LdpcCode:
    """A parity-check matrix in compressed form (edges sorted by check)."""

    n: int
    m: int
    check_ptr: I64  # edges of check c: check_ptr[c] .. check_ptr[c + 1]
    edge_var: I64  # variable of each edge
    var_ptr: I64  # edges of variable v (indices into var_edges)
    var_edges: I64

    @property
    def rate(self) -> float:
        return 1.0 - self.m / self.n

    @classmethod
    def random(cls, n: int, rate: float, seed: int = 0) -> LdpcCode:
        """A random irregular code of length ``n`` and design rate ``rate``."""
        if not 0.0 < rate < 1.0 or n < 16:
            raise ValueError(f"need 0 < rate < 1 and n >= 16, got rate {rate}, n {n}")
        rng = np.random.default_rng(seed)
        m = max(1, round(n * (1.0 - rate)))
        degrees = np.array(list(VARIABLE_DEGREES), dtype=np.int64)
        fractions = np.array(list(VARIABLE_DEGREES.values()))
        counts = np.floor(fractions * n).astype(np.int64)
        counts[np.argmax(fractions)] += n - counts.sum()
        var_deg = rng.permutation(np.repeat(degrees, counts))
        sockets_v = np.repeat(np.arange(n, dtype=np.int64), var_deg)
        sockets_c = np.arange(sockets_v.size, dtype=np.int64) % m  # near-regular checks
        sockets_c = rng.permutation(sockets_c)
        # a variable met twice by one check would cancel: keep pairs of odd multiplicity
        key = sockets_c * n + sockets_v
        uniq, mult = np.unique(key, return_counts=True)
        key = uniq[mult % 2 == 1]
        edge_check, edge_var = key // n, key % n  # sorted by check (key order)
        check_ptr = np.zeros(m + 1, dtype=np.int64)
        np.add.at(check_ptr, edge_check + 1, 1)
        check_ptr = np.cumsum(check_ptr)
        var_edges = np.argsort(edge_var, kind="stable").astype(np.int64)
        var_ptr = np.zeros(n + 1, dtype=np.int64)
        np.add.at(var_ptr, edge_var + 1, 1)
        var_ptr = np.cumsum(var_ptr)
        return cls(n, m, check_ptr, edge_var.astype(np.int64), var_ptr, var_edges)


@numba.njit(cache=True, nogil=True)
def _syndrome(check_ptr: I64, edge_var: I64, bits: BitArray) -> BitArray:  # pragma: no cover
    m = check_ptr.size - 1
    out = np.zeros(m, dtype=np.uint8)
    for c in range(m):
        acc = 0
        for e in range(check_ptr[c], check_ptr[c + 1]):
            acc ^= bits[edge_var[e]]
        out[c] = acc
    return out


@numba.njit(cache=True, nogil=True)
def _decode(
    check_ptr: I64,
    edge_var: I64,
    var_ptr: I64,
    var_edges: I64,
    y: BitArray,
    syndrome: BitArray,
    llr0: float,
    max_iter: int,
) -> tuple[BitArray, int]:  # pragma: no cover
    """Sum-product syndrome decoding; returns the estimate and iterations (-1: failed)."""
    n = y.size
    m = syndrome.size
    n_edges = edge_var.size
    chan = np.empty(n)
    for v in range(n):
        chan[v] = llr0 if y[v] == 0 else -llr0
    v2c = np.empty(n_edges)
    for e in range(n_edges):
        v2c[e] = chan[edge_var[e]]
    c2v = np.zeros(n_edges)
    x = y.copy()
    t = np.empty(n_edges)
    for it in range(max_iter):
        # check update: extrinsic tanh product, sign set by the syndrome bit
        for c in range(m):
            lo = check_ptr[c]
            hi = check_ptr[c + 1]
            prod = 1.0
            zeros = 0
            zero_at = -1
            for e in range(lo, hi):
                t[e] = math.tanh(0.5 * v2c[e])
                if t[e] == 0.0:
                    zeros += 1
                    zero_at = e
                else:
                    prod *= t[e]
            sign = -1.0 if syndrome[c] else 1.0
            for e in range(lo, hi):
                if zeros == 0:
                    ext = prod / t[e]
                elif zeros == 1 and e == zero_at:
                    ext = prod
                else:
                    ext = 0.0
                ext = min(max(ext * sign, -0.999999999999), 0.999999999999)
                c2v[e] = 2.0 * math.atanh(ext)
        # variable update and hard decision
        for v in range(n):
            total = chan[v]
            for k in range(var_ptr[v], var_ptr[v + 1]):
                total += c2v[var_edges[k]]
            x[v] = 1 if total < 0.0 else 0
            for k in range(var_ptr[v], var_ptr[v + 1]):
                e = var_edges[k]
                msg = total - c2v[e]
                v2c[e] = min(max(msg, -_LLR_CLAMP), _LLR_CLAMP)
        ok = True
        for c in range(m):
            acc = 0
            for e in range(check_ptr[c], check_ptr[c + 1]):
                acc ^= x[edge_var[e]]
            if acc != syndrome[c]:
                ok = False
                break
        if ok:
            return x, it + 1
    return x, -1


def syndrome(code: LdpcCode, bits: npt.ArrayLike) -> BitArray:
    """Alice's message: the syndrome of her key (``code.m`` bits, all disclosed)."""
    x = as_bits(bits)
    if x.size != code.n:
        raise ValueError(f"key of {x.size} bits for a code of length {code.n}")
    return _syndrome(code.check_ptr, code.edge_var, x)


def decode(
    code: LdpcCode,
    noisy_bits: npt.ArrayLike,
    alice_syndrome: npt.ArrayLike,
    qber: float,
    max_iter: int = MAX_ITERATIONS,
) -> tuple[BitArray, bool]:
    """Bob's estimate of Alice's key and whether it satisfies every check."""
    y = as_bits(noisy_bits)
    s = as_bits(alice_syndrome)
    if y.size != code.n or s.size != code.m:
        raise ValueError("key or syndrome length does not match the code")
    p = min(max(qber, 1e-6), 0.5 - 1e-6)
    x, iters = _decode(
        code.check_ptr,
        code.edge_var,
        code.var_ptr,
        code.var_edges,
        y,
        s,
        math.log((1 - p) / p),
        max_iter,
    )
    return x, iters > 0
