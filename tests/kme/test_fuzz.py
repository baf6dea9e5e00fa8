"""Property-based fuzzing of the KME's ETSI 014 API (Hypothesis, and Schemathesis from
the KME's own OpenAPI document), against a real KME pair over mutual TLS.

Invariants after every case: no 5xx; the daemon answers a normal ``status``
request; no key ID is issued or delivered twice; the key accounting closes
(each KME's consumed stream equals the bits issued to the master SAE, and at the
slave's KME held + delivered == issued). Each run is bounded (``max_examples``,
``deadline``) so the whole file stays within a few seconds of CI time.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from qkdmeet.kme import openapi, validation
from qkdmeet.kme.pair import KmePair, write_pair
from qkdmeet.kme.tls import client_context
from tests.bgloop import BackgroundLoop

pytestmark = pytest.mark.timeout(180)

FUZZ = settings(
    max_examples=120,
    deadline=2000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@dataclass
class Harness:
    bg: BackgroundLoop
    pair: KmePair
    sessions: dict[str, aiohttp.ClientSession]
    issued: dict[uuid.UUID, int] = field(default_factory=dict)  # key ID -> bits
    delivered: set[uuid.UUID] = field(default_factory=set)

    def url(self, site: str, path: str) -> URL:
        return URL(f"https://127.0.0.1:{self.pair.files.ports[site]}{path}", encoded=True)

    async def _request(
        self, site: str, method: str, path: str, **kw: Any
    ) -> tuple[int, Any]:
        async with self.sessions[site].request(method, self.url(site, path), **kw) as r:
            raw = await r.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            return r.status, body

    def request(self, site: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        status, body = self.bg.run(self._request(site, method, path, **kw))
        assert status < 500, (method, path, kw, status, body)
        if status == 400 and isinstance(body, dict) and "details" in body:
            # stable reasons, never an exception's text
            for d in body["details"]:
                if "reason" in d:
                    assert d["reason"] in validation.REASONS
        if status == 200 and isinstance(body, dict) and "keys" in body:
            self.record(path, body)
        return status, body

    def record(self, path: str, body: dict[str, Any]) -> None:
        for k in body["keys"]:
            kid, bits = uuid.UUID(k["key_ID"]), len(__import__("base64").b64decode(k["key"])) * 8
            if path.endswith("/enc_keys"):
                assert kid not in self.issued, "a key ID issued twice"
                self.issued[kid] = bits
            else:
                assert kid not in self.delivered, "a key delivered twice"
                assert kid in self.issued, "a key delivered that was never issued"
                self.delivered.add(kid)

    def check(self) -> None:
        """The invariants that must hold after every case."""
        status, body = self.request("a", "GET", "/api/v1/keys/SAE-B/status")
        assert status == 200 and body["slave_SAE_ID"] == "SAE-B"
        a, b = self.pair.servers["a"], self.pair.servers["b"]
        issued_bits = sum(self.issued.values())
        for server in (a, b):
            consumed = (server.store.stream_end - server.store.stock_bytes()) * 8
            assert consumed == issued_bits, (server.config.kme_id, consumed, issued_bits)
        assert b.store.held_count("SAE-A", "SAE-B") + len(self.delivered) == len(self.issued)


@pytest.fixture(scope="module")
def kme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    bg = BackgroundLoop()
    pair = KmePair(write_pair(tmp_path_factory.mktemp("kme-fuzz"), max_key_per_request=64))
    d = pair.files.directory

    async def start() -> dict[str, aiohttp.ClientSession]:
        await pair.start()
        await pair.fill(16, 16384)
        return {
            site: aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=client_context(d / f"sae-{site}.pem", d / f"sae-{site}.key", d / "ca.pem")
                )
            )
            for site in ("a", "b")
        }

    h = Harness(bg, pair, bg.run(start()))
    yield h

    async def stop() -> None:
        for s in h.sessions.values():
            await s.close()
        await pair.stop()

    bg.run(stop())
    bg.close()


# -- strategies ----------------------------------------------------------------------

#: Integer-looking texts: ASCII and other scripts' digits, signs, blanks, huge numbers.
odd_ints = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["²", "١", "٣٢", "256 ", " 256", "+256", "2_56", "0x100", "1e3", "", "\x00",
                     "256\n", "९", "Ⅻ", "9" * 5000, "-0"]),
    st.text(alphabet=st.characters(categories=["Nd", "No", "Zs"]), max_size=12),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False), st.text(max_size=40), odd_ints,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12,
)
deep = st.integers(min_value=1, max_value=3000).flatmap(
    lambda n: st.sampled_from(["[" * n + "]" * n, '{"a":' * n + "1" + "}" * n,
                               '{"number": ' + "[" * n + "]" * n + "}"])
)
enc_fields = st.fixed_dictionaries(
    {},
    optional={
        "number": st.one_of(st.integers(min_value=-5, max_value=70), json_values),
        "size": st.one_of(st.sampled_from([64, 128, 256, 512, 1024, 100, 8, 0]), json_values),
        "additional_slave_SAE_IDs": json_values,
        "extension_mandatory": json_values,
        "extension_optional": json_values,
    },
)


def dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


#: JSON numbers of up to 6,000 digits (beyond Python's int-conversion limit).
long_numbers = st.integers(1, 6000).flatmap(
    lambda n: st.sampled_from([f'{{"number": {"9" * n}}}', f'{{"size": -{"1" * n}}}',
                               f'{{"number": "{"7" * n}"}}'])
).map(str.encode)
enc_bodies = st.one_of(
    enc_fields.map(dump), json_values.map(dump), deep.map(str.encode), st.binary(max_size=64),
    long_numbers,
)
query_values = st.one_of(odd_ints, st.text(max_size=20), st.integers(1, 64).map(str))
paths = st.one_of(
    st.sampled_from(["SAE-B", "SAE-A", "SAE-C", ""]),
    st.text(max_size=80),
    st.integers(1, 6000).map(lambda n: "a" * n),
).map(lambda s: quote(s, safe=""))


# -- the properties ------------------------------------------------------------------


@FUZZ
@given(body=enc_bodies, content_type=st.sampled_from(
    [None, "application/json", "text/plain", "application/x-www-form-urlencoded"]))
def test_enc_keys_bodies(kme: Harness, body: bytes, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    status, reply = kme.request("a", "POST", "/api/v1/keys/SAE-B/enc_keys", data=body,
                                headers=headers)
    assert status in (200, 400, 413, 415, 503), (status, reply)
    if content_type in ("text/plain", "application/x-www-form-urlencoded"):
        assert status == 415
    kme.check()


@FUZZ
@given(number=st.none() | query_values, size=st.none() | query_values)
def test_enc_keys_queries(kme: Harness, number: str | None, size: str | None) -> None:
    params = {k: v for k, v in (("number", number), ("size", size)) if v is not None}
    status, _ = kme.request("a", "GET", "/api/v1/keys/SAE-B/enc_keys", params=params)
    for v in params.values():
        if not (v.isascii() and v.isdigit() and len(v) <= 10):
            assert status == 400  # "²", "١", "256 ", 5,000 digits: never read as a number
    kme.check()


@FUZZ
@given(data=st.data())
def test_dec_keys_bodies_and_queries(kme: Harness, data: st.DataObject) -> None:
    if len(kme.issued) - len(kme.delivered) < 4:
        kme.request("a", "POST", "/api/v1/keys/SAE-B/enc_keys", json={"number": 8, "size": 64})
    known = [str(k) for k in kme.issued]
    key_id = st.one_of(st.sampled_from(known), st.uuids().map(str), json_values,
                       st.sampled_from(known).map(str.upper),
                       st.sampled_from(known).map(lambda k: "{" + k + "}"))
    item = st.one_of(st.fixed_dictionaries({"key_ID": key_id}), json_values)
    body = st.one_of(
        st.fixed_dictionaries({"key_IDs": st.lists(item, max_size=5)}).map(dump),
        st.fixed_dictionaries({"key_IDs": json_values}).map(dump),
        deep.map(str.encode),
        st.binary(max_size=64),
    )
    if data.draw(st.booleans()):
        status, reply = kme.request("b", "POST", "/api/v1/keys/SAE-A/dec_keys",
                                    data=data.draw(body))
    else:
        ids = data.draw(st.lists(st.one_of(key_id.map(str), st.text(max_size=40)), max_size=3))
        status, reply = kme.request("b", "GET", "/api/v1/keys/SAE-A/dec_keys",
                                    params=[("key_ID", i) for i in ids])
    assert status in (200, 400, 413), (status, reply)
    kme.check()


@FUZZ
@given(sae=paths, endpoint=st.sampled_from(["status", "enc_keys", "dec_keys"]),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
def test_paths(kme: Harness, sae: str, endpoint: str, method: str) -> None:
    kme.request("a", method, f"/api/v1/keys/{sae}/{endpoint}", data=b"{}")
    kme.check()


def test_schemathesis_against_the_openapi_document(kme: Harness) -> None:
    """Schemathesis generates requests from the KME's own OpenAPI document."""
    schemathesis = pytest.importorskip("schemathesis")
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_dict(openapi.document())
    d = kme.pair.files.directory
    base = f"https://127.0.0.1:{kme.pair.files.ports['a']}"
    cert = (str(d / "sae-a.pem"), str(d / "sae-a.key"))
    ran = 0
    for op in schema.get_all_operations():
        operation = op.ok()

        @settings(max_examples=25, deadline=3000, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            nonlocal ran
            ran += 1
            response = case.call(base_url=base, cert=cert, verify=str(d / "ca.pem"), timeout=10)
            case.validate_response(response, checks=[not_a_server_error])
            assert response.status_code < 500
            if response.status_code == 200 and case.path.endswith("_keys"):
                kme.record(case.path, response.json())

        run()
        kme.check()
    assert ran > 0


@pytest.mark.parametrize("text", ["²", "١", "256 ", " 256", "+256", "2_56", "9" * 5000, "-1",
                                  "0x10", "256\n", "\x00"])
def test_integers_are_ascii_digits_only(kme: Harness, text: str) -> None:
    for name in ("number", "size"):
        status, body = kme.request("a", "GET", "/api/v1/keys/SAE-B/enc_keys", params={name: text})
        assert status == 400 and body["details"] == [{"reason": "not_an_integer", "field": name}]
        status, body = kme.request(
            "a", "POST", "/api/v1/keys/SAE-B/enc_keys", data=dump({name: text})
        )
        assert status == 400 and body["message"] == f"{name} shall be an integer"
    status, body = kme.request("a", "POST", "/api/v1/keys/SAE-B/enc_keys",
                               data=b'{"number": ' + b"9" * 5000 + b"}")
    assert status == 400 and body["details"][0]["reason"] == "not_an_integer"
    kme.check()


def test_limits_have_their_status(kme: Harness) -> None:
    deep_body = b"[" * 5000 + b"]" * 5000
    assert kme.request("a", "POST", "/api/v1/keys/SAE-B/enc_keys", data=deep_body)[0] == 400
    big = b'{"extension_optional": [{"a": "' + b"x" * 70000 + b'"}]}'
    assert kme.request("a", "POST", "/api/v1/keys/SAE-B/enc_keys", data=big)[0] == 413
    assert kme.request("a", "POST", "/api/v1/keys/SAE-B/enc_keys", data=b"{}",
                       headers={"Content-Type": "text/plain"})[0] == 415
    kme.check()


def test_schemas_follow_the_openapi_document() -> None:
    for struct, name in ((validation.KeyRequest, "KeyRequest"), (validation.KeyIDs, "KeyIDs"),
                         (validation.KeyIDItem, None)):
        fields = set(struct.__struct_fields__)
        if name is None:
            props = openapi.SCHEMAS["KeyIDs"]["properties"]["key_IDs"]["items"]["properties"]
        else:
            props = openapi.SCHEMAS[name]["properties"]
        assert fields == set(props), (struct, fields, set(props))
    assert validation.depth(b'{"a": "[[[[[[", "b": [[1]]}') == 3
