from __future__ import annotations

import qkdmeet.qkd.kernels as kernels


def test_public_names_resolve() -> None:
    assert len(set(kernels.__all__)) == len(kernels.__all__)
    for name in kernels.__all__:
        assert getattr(kernels, name) is not None


def test_api_contract_names_exist() -> None:
    for name in (
        "bob_announcement",
        "alice_sift",
        "bob_sift",
        "ReconcilerAlice",
        "ReconcilerBob",
        "reconcile_local",
        "verification_tag",
        "toeplitz_hash",
        "toeplitz_hash_naive",
        "binary_entropy",
    ):
        assert name in kernels.__all__
