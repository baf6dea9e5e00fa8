"""Roles kept apart: one CA signs SAE and KME certificates, the role decides.

The attack of issue 14: an SAE certificate from the site CA named like the
peer KME (common name and ID ``KME-B``) made KME A reserve a key range for it
on the peer API. It is refused now; the real peer KME still works.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp

from qkdmeet.kme import pki
from qkdmeet.kme.pair import KmePair
from qkdmeet.kme.tls import client_context

from .conftest import sae_client

RESERVE = {"master": "SAE-B", "slave": "SAE-A", "number": 2, "size": 32}


def session(pair: KmePair, cert: Path, key: Path) -> aiohttp.ClientSession:
    ctx = client_context(cert, key, pair.files.directory / "ca.pem")
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))


def peer_url(pair: KmePair, site: str, path: str) -> str:
    return f"https://127.0.0.1:{pair.files.ports[site]}{path}"


def forge(pair: KmePair, stem: str, uri: str) -> pki.Identity:
    """A certificate the site CA really signed, named ``KME-B`` (as an SAE could get)."""
    assert pair.files.ca_dir is not None
    ca = pki.CertificateAuthority.load(pair.files.ca_dir)
    return ca.issue(pair.files.directory, stem, "KME-B", uri, server=False)


async def test_sae_certificate_named_like_the_peer_is_refused(pair: KmePair) -> None:
    store = pair.servers["a"].store
    cursor, held = store.cursor, store.held_count("SAE-B", "SAE-A")
    for ident in (
        forge(pair, "sae-named-kme", "urn:qkdmeet:sae:KME-B"),  # SAE role, peer's name
        forge(pair, "cn-only", "https://kme-b.example/"),  # no role URI: CN only
    ):
        async with session(pair, ident.cert, ident.key) as s:
            for path in ("/peer/v1/reserve", "/peer/v1/hold"):
                async with s.post(peer_url(pair, "a", path), json=RESERVE) as r:
                    assert r.status == 401, (ident.cert.name, path)
    # nothing was reserved or held for it
    assert store.cursor == cursor
    assert store.held_count("SAE-B", "SAE-A") == held
    assert pair.servers["a"].metrics["wrong_role_sae"] == 2


async def test_real_peer_still_reserves(pair: KmePair) -> None:
    d = pair.files.directory
    store = pair.servers["a"].store
    cursor = store.cursor
    async with (
        session(pair, d / "kme-b.pem", d / "kme-b.key") as s,
        s.post(peer_url(pair, "a", "/peer/v1/reserve"), json=RESERVE) as r,
    ):
        assert r.status == 200
        res = await r.json()
    assert len(res["key_IDs"]) == 2 and store.cursor == cursor + 64
    # and the pair still serves keys across sites
    async with sae_client(pair, "b") as mb, sae_client(pair, "a") as sa:
        keys = await mb.enc_keys("SAE-A", 3, 256)
        assert await sa.dec_keys("SAE-B", [k.key_id for k in keys]) == keys


async def test_kme_certificate_is_refused_on_the_sae_api(pair: KmePair) -> None:
    d = pair.files.directory
    async with session(pair, d / "kme-a.pem", d / "kme-a.key") as s:
        async with s.post(
            peer_url(pair, "a", "/api/v1/keys/SAE-B/enc_keys"), json={"number": 1}
        ) as r:
            assert r.status == 401
        async with s.get(peer_url(pair, "a", "/api/v1/keys/SAE-B/status")) as r:
            assert r.status == 401
    assert pair.servers["a"].metrics["wrong_role_kme"] == 2


async def test_a_malformed_reserve_gets_a_stable_reason_not_exception_text(pair: KmePair) -> None:
    """Issue 18: the peer API answered `bad reserve: invalid literal for int() ...` (the
    exception's text, echoing the input); now one fixed reason, 400, nothing reserved."""
    from qkdmeet.kme.peer_routes import RESERVE_FIELDS

    d = pair.files.directory
    store = pair.servers["a"].store
    cursor = store.cursor
    bad = [
        {**RESERVE, "number": "2x"},
        {**RESERVE, "size": "9" * 5000},
        {**RESERVE, "number": 2.5},
        {**RESERVE, "number": True},
        {**RESERVE, "size": -32},
        {**RESERVE, "master": ["SAE-B"]},
        {"master": "SAE-B"},
    ]
    async with session(pair, d / "kme-b.pem", d / "kme-b.key") as s:
        for body in bad:
            async with s.post(peer_url(pair, "a", "/peer/v1/reserve"), json=body) as r:
                assert r.status == 400, body
                text = await r.text()
                assert RESERVE_FIELDS in text, text
                assert "invalid literal" not in text and "9999" not in text
        async with s.post(peer_url(pair, "a", "/peer/v1/reserve"), json=RESERVE) as r:
            assert r.status == 200  # and the genuine one still works
    assert store.cursor == cursor + 64


async def test_a_malformed_hold_gets_a_stable_reason_not_exception_text(pair: KmePair) -> None:
    """Issue 18: a malformed hold answered with the exception's text (`bad reservation:
    invalid literal for int() with base 10: '2x'`); floats were truncated to integers and
    a 5,000-digit start reached SQLite. Now one fixed reason, 400, nothing held."""
    from qkdmeet.kme.peer import BAD_RESERVATION

    d = pair.files.directory
    store = pair.servers["b"].store
    held = store.held_count("SAE-A", "SAE-B")
    good = {"start": 0, "size": 32, "key_IDs": ["00000000-0000-4000-8000-000000000001"],
            "master": "SAE-A", "slave": "SAE-B"}
    bad = [
        {**good, "start": "2x"},
        {**good, "start": 2.5},
        {**good, "start": True},
        {**good, "start": 10**80},
        {**good, "size": 0},
        {**good, "key_IDs": ["not-a-uuid-" + "9" * 40]},
        {**good, "key_IDs": "00000000-0000-4000-8000-000000000001"},
        {**good, "key_IDs": []},
        {**good, "master": 7},
        {"start": 0},
    ]
    async with session(pair, d / "kme-a.pem", d / "kme-a.key") as s:
        for body in bad:
            async with s.post(peer_url(pair, "b", "/peer/v1/hold"), json=body) as r:
                assert r.status == 400, body
                text = await r.text()
                assert BAD_RESERVATION in text, text
                assert "invalid literal" not in text and "9999" not in text
    assert store.held_count("SAE-A", "SAE-B") == held
    # and the pair still serves keys across sites
    async with sae_client(pair, "a") as ma, sae_client(pair, "b") as sb:
        keys = await ma.enc_keys("SAE-B", 2, 256)
        assert await sb.dec_keys("SAE-A", [k.key_id for k in keys]) == keys
