from __future__ import annotations

import numpy as np
import pytest

from qkdmeet.qkd.kernels import ldpc


def _dense(code: ldpc.LdpcCode) -> np.ndarray:
    h = np.zeros((code.m, code.n), dtype=np.int64)
    for c in range(code.m):
        h[c, code.edge_var[code.check_ptr[c] : code.check_ptr[c + 1]]] = 1
    return h


def test_code_structure_is_consistent() -> None:
    code = ldpc.LdpcCode.random(2000, 0.7, seed=3)
    assert code.m == 600
    assert code.check_ptr[-1] == code.edge_var.size == code.var_ptr[-1]
    # every edge appears once in the variable view
    assert np.array_equal(np.sort(code.var_edges), np.arange(code.edge_var.size))
    for v in (0, 17, 1999):
        edges = code.var_edges[code.var_ptr[v] : code.var_ptr[v + 1]]
        assert np.all(code.edge_var[edges] == v)


@pytest.mark.parametrize("seed", range(5))
def test_syndrome_equals_dense_product(seed: int) -> None:
    code = ldpc.LdpcCode.random(500, 0.6, seed=seed)
    bits = np.random.default_rng(seed).integers(0, 2, 500, dtype=np.uint8)
    assert np.array_equal(ldpc.syndrome(code, bits), (_dense(code) @ bits) % 2)


def test_decoder_recovers_alice_key_well_below_capacity() -> None:
    code = ldpc.LdpcCode.random(4096, 0.5, seed=1)
    rng = np.random.default_rng(2)
    for _ in range(3):
        alice = rng.integers(0, 2, 4096, dtype=np.uint8)
        bob = alice ^ (rng.random(4096) < 0.02).astype(np.uint8)
        x, ok = ldpc.decode(code, bob, ldpc.syndrome(code, alice), 0.02)
        assert ok
        assert np.array_equal(x, alice)


def test_decoder_reports_failure_above_capacity() -> None:
    code = ldpc.LdpcCode.random(2048, 0.9, seed=1)
    rng = np.random.default_rng(3)
    alice = rng.integers(0, 2, 2048, dtype=np.uint8)
    bob = alice ^ (rng.random(2048) < 0.1).astype(np.uint8)
    _, ok = ldpc.decode(code, bob, ldpc.syndrome(code, alice), 0.1, max_iter=10)
    assert not ok


def test_wrong_sizes_are_refused() -> None:
    code = ldpc.LdpcCode.random(100, 0.5)
    with pytest.raises(ValueError):
        ldpc.syndrome(code, np.zeros(99, np.uint8))
    with pytest.raises(ValueError):
        ldpc.decode(code, np.zeros(100, np.uint8), np.zeros(3, np.uint8), 0.01)
    with pytest.raises(ValueError):
        ldpc.LdpcCode.random(100, 1.5)
