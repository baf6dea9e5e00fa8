"""Fixtures: a KME pair on loopback over real mutual TLS, fed with identical random blocks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qkdmeet.kme.client import EtsiClient
from qkdmeet.kme.pair import KmePair, write_pair


@pytest.fixture
async def pair(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> AsyncIterator[KmePair]:
    # the CA's private key apart from the services' files (tests issue forged certificates)
    ca_dir = tmp_path_factory.mktemp("ca-private")
    p = KmePair(write_pair(tmp_path, max_key_per_request=64, ca_dir=ca_dir))
    await p.start()
    await p.fill(8, 16384)
    yield p
    await p.stop()


def sae_client(
    pair: KmePair, site: str, *, kme_site: str | None = None, retries: int = 0
) -> EtsiClient:
    info = pair.describe()
    s = info["sites"][site]
    url = info["sites"][kme_site or site]["kme_url"]
    return EtsiClient(
        url, cert_file=s["sae_cert"], key_file=s["sae_key"], ca_file=info["ca"], retries=retries
    )
