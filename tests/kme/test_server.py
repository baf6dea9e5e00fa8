"""ETSI 014 endpoints, methods and error paths against the real server over mutual TLS."""

from __future__ import annotations

import base64
import ssl
import uuid
from pathlib import Path

import aiohttp
import pytest

from qkdmeet.kme import pki
from qkdmeet.kme.client import KeysNotFound, KmeBadRequest, KmeUnauthorized, KmeUnavailable
from qkdmeet.kme.pair import KmePair
from qkdmeet.kme.tls import client_context

from .conftest import sae_client


def raw_session(pair: KmePair, site: str, cert_dir: Path | None = None) -> aiohttp.ClientSession:
    d = cert_dir or pair.files.directory
    ctx = client_context(
        d / f"sae-{site}.pem", d / f"sae-{site}.key", pair.files.directory / "ca.pem"
    )
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx))


def url(pair: KmePair, site: str, path: str) -> str:
    return f"https://127.0.0.1:{pair.files.ports[site]}/api/v1/keys/{path}"


async def test_status(pair: KmePair) -> None:
    async with sae_client(pair, "a") as c:
        st = await c.status("SAE-B")
    assert (st.source_kme_id, st.target_kme_id) == ("KME-A", "KME-B")
    assert (st.master_sae_id, st.slave_sae_id) == ("SAE-A", "SAE-B")
    assert st.stored_key_count == 8 * 16384 * 8 // 256
    assert st.max_key_per_request == 64


@pytest.mark.parametrize(("master", "slave"), [("a", "b"), ("b", "a")])
async def test_enc_then_dec_post(pair: KmePair, master: str, slave: str) -> None:
    async with sae_client(pair, master) as m, sae_client(pair, slave) as s:
        keys = await m.enc_keys(f"SAE-{slave.upper()}", 10, 512)
        assert len(keys) == 10 and all(k.size_bits == 512 for k in keys)
        got = await s.dec_keys(f"SAE-{master.upper()}", [k.key_id for k in keys])
        assert got == keys
        with pytest.raises(KeysNotFound):  # delivered keys are erased
            await s.dec_keys(f"SAE-{master.upper()}", [keys[0].key_id])


async def test_get_forms(pair: KmePair) -> None:
    async with raw_session(pair, "a") as sa, raw_session(pair, "b") as sb:
        async with sa.get(
            url(pair, "a", "SAE-B/enc_keys"), params={"number": "2", "size": "128"}
        ) as r:
            assert r.status == 200
            keys = (await r.json())["keys"]
        assert len(keys) == 2 and len(base64.b64decode(keys[0]["key"])) == 16
        async with sa.get(url(pair, "a", "SAE-B/enc_keys")) as r:
            assert len(base64.b64decode((await r.json())["keys"][0]["key"])) == 32
        async with sb.get(
            url(pair, "b", "SAE-A/dec_keys"), params={"key_ID": keys[1]["key_ID"]}
        ) as r:
            assert r.status == 200
            assert (await r.json())["keys"] == [keys[1]]
        async with sb.delete(url(pair, "b", "SAE-A/dec_keys")) as r:
            assert r.status == 405
        async with sa.get(f"https://127.0.0.1:{pair.files.ports['a']}/api/v1/openapi.json") as r:
            assert "/api/v1/keys/{slave_SAE_ID}/enc_keys" in (await r.json())["paths"]
        async with sa.get(f"https://127.0.0.1:{pair.files.ports['a']}/metrics") as r:
            text = await r.text()
            assert "qkdmeet_kme_enc_keys_total 3" in text
            # counters end in _total (Prometheus naming), every family has HELP and TYPE
            assert 'qkdmeet_kme_delivered_bits_total{sae="SAE-A"} 512' in text
            assert "# TYPE qkdmeet_kme_enc_keys_total counter" in text
            assert "# HELP qkdmeet_kme_enc_keys_total " in text
        async with sb.get(f"https://127.0.0.1:{pair.files.ports['b']}/api/v1/metrics") as r:
            snap = await r.json()
            assert snap["link_received_bits"] == 8 * 16384 * 8
            assert snap["delivered_bits_per_sae"] == {"SAE-B": 128}
            assert snap["held_for_slaves"] == {"SAE-A->SAE-B": 2}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b'{"number": "many"}', "number shall be an integer"),
        (b'{"number": 1e9}', "number shall be an integer"),
        (b'{"number": 1000000000}', "number shall be between 1 and 64"),
        (b'{"number": 0}', "number shall be between 1 and 64"),
        (b'{"size": 100}', "size shall be a multiple of 8"),
        (b'{"size": 8}', "size shall be between 64 and 1024"),
        (
            b'{"extension_mandatory": [{"x_y": 1}]}',
            "not all extension_mandatory parameters are supported",
        ),
    ],
)
async def test_enc_keys_bad_requests(pair: KmePair, body: bytes, message: str) -> None:
    stock = pair.servers["a"].store.stock_bytes()
    async with (
        raw_session(pair, "a") as sa,
        sa.post(url(pair, "a", "SAE-B/enc_keys"), data=body) as r,
    ):
        assert r.status == 400
        assert (await r.json())["message"] == message
    assert pair.servers["a"].store.stock_bytes() == stock


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"key_IDs": "x"}', "key_IDs shall be a non-empty array"),
        (b'{"key_IDs": []}', "key_IDs shall be a non-empty array"),
        (b'{"key_IDs": [{"key_ID": "not-a-uuid"}]}', "key_ID is not a UUID"),
        (b'{"key_IDs": [7]}', "key_ID is not a UUID"),
    ],
)
async def test_dec_keys_bad_requests(pair: KmePair, body: bytes, message: str) -> None:
    async with sae_client(pair, "a") as m:
        keys = await m.enc_keys("SAE-B", 2, 256)
    async with (
        raw_session(pair, "b") as sb,
        sb.post(url(pair, "b", "SAE-A/dec_keys"), data=body) as r,
    ):
        assert r.status == 400
        assert (await r.json())["message"] == message
    async with sae_client(pair, "b") as s:  # nothing lost
        assert await s.dec_keys("SAE-A", [k.key_id for k in keys]) == keys


async def test_unknown_key_keeps_the_known_ones(pair: KmePair) -> None:
    async with sae_client(pair, "a") as m, sae_client(pair, "b") as s:
        keys = await m.enc_keys("SAE-B", 2, 256)
        with pytest.raises(KeysNotFound) as info:
            await s.dec_keys("SAE-A", [keys[0].key_id, uuid.uuid4()])
        assert info.value.message == "one or more keys specified are not found on KME"
        assert await s.dec_keys("SAE-A", [k.key_id for k in keys]) == keys


async def test_unknown_sae_and_wrong_pair_refused(pair: KmePair) -> None:
    async with sae_client(pair, "a") as m:
        keys = await m.enc_keys("SAE-B", 1, 256)
        with pytest.raises(KmeBadRequest, match="unknown SAE ID"):
            await m.enc_keys("SAE-Z", 1, 256)
        with pytest.raises(KmeBadRequest, match="unknown SAE ID"):
            await m.status("SAE-Z")
        with pytest.raises(KmeUnauthorized):
            await m.status("SAE-A")
    # SAE-A connecting to KME-B (not its KME) asking for SAE-B's keys
    async with sae_client(pair, "a", kme_site="b") as wrong:
        with pytest.raises(KmeUnauthorized):
            await wrong.dec_keys("SAE-A", [keys[0].key_id])
    async with sae_client(pair, "b") as s:
        assert await s.dec_keys("SAE-A", [keys[0].key_id]) == keys


async def test_third_sae_refused(pair: KmePair) -> None:
    # A third SAE with a valid certificate from the same CA, not part of the pair.
    assert pair.files.ca_dir is not None
    ca = pki.CertificateAuthority.load(pair.files.ca_dir)
    d = pair.files.directory
    ca.issue(d, "sae-c", "SAE-C", "urn:qkdmeet:sae:SAE-C", server=False)
    async with sae_client(pair, "a") as m:
        keys = await m.enc_keys("SAE-B", 1, 256)
    async with raw_session(pair, "c") as sc:
        body = {"key_IDs": [{"key_ID": str(keys[0].key_id)}]}
        async with sc.post(url(pair, "b", "SAE-A/dec_keys"), json=body) as r:
            assert r.status == 401
    async with sae_client(pair, "b") as s:
        assert await s.dec_keys("SAE-A", [keys[0].key_id]) == keys


async def test_no_cert_and_foreign_ca_never_reach_api(pair: KmePair, tmp_path: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(pair.files.directory / "ca.pem"))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        with pytest.raises(aiohttp.ClientError):
            async with s.get(url(pair, "a", "SAE-B/status")) as r:
                await r.read()
    other = pki.init(tmp_path / "other")
    ctx = client_context(other / "sae-a.pem", other / "sae-a.key", pair.files.directory / "ca.pem")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        with pytest.raises(aiohttp.ClientError):
            async with s.get(url(pair, "a", "SAE-B/status")) as r:
                await r.read()
    assert pair.servers["a"].metrics["enc_keys"] == 0


async def test_exhaustion_is_503(pair: KmePair) -> None:
    async with sae_client(pair, "a") as m:
        total = 0
        with pytest.raises(KmeUnavailable):
            while True:
                total += len(await m.enc_keys("SAE-B", 64, 1024))
    assert total == 8 * 16384 // 128


async def test_peer_down_is_503_and_bad_request_type(pair: KmePair) -> None:
    await pair.servers["b"].stop()
    async with sae_client(pair, "a") as m:
        with pytest.raises(KmeUnavailable):
            await m.enc_keys("SAE-B", 1, 256)
        with pytest.raises(KmeBadRequest):
            await m.enc_keys("SAE-B", 1, 257)


async def test_openapi_matches_the_served_objects(pair: KmePair) -> None:
    base = f"https://127.0.0.1:{pair.files.ports['a']}"
    async with raw_session(pair, "a") as sa:
        async with sa.get(f"{base}/api/v1/openapi.json") as r:
            doc = await r.json()
        async with sa.get(url(pair, "a", "SAE-B/status")) as r:
            status = await r.json()
        async with sa.post(url(pair, "a", "SAE-B/enc_keys"), json={"number": 1}) as r:
            keys = await r.json()
    schemas = doc["components"]["schemas"]
    assert set(schemas["Status"]["required"]) == set(status)
    item = schemas["KeyContainer"]["properties"]["keys"]["items"]
    assert set(item["required"]) == set(keys["keys"][0])
    for path in ("status", "enc_keys", "dec_keys"):
        methods = next(v for k, v in doc["paths"].items() if k.endswith(path))
        for op in methods.values():
            assert {"200", "400", "401", "503"} <= set(op["responses"])
