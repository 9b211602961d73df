"""SpiffeIssuer: SPIFFE ID rules, JWT-SVID layout and the trust bundle as SPIRE serves it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from control_plane.sandbox import SpiffeIssuer, parse_spiffe_id
from tests.sandbox.helpers import get_json, segment

T0 = 1_767_225_600

VALID_IDS = [
    ("spiffe://example.org", "example.org", ""),
    ("spiffe://example.org/workload", "example.org", "/workload"),
    ("spiffe://example.org/ns/prod/sa/agent", "example.org", "/ns/prod/sa/agent"),
    ("spiffe://a-b.c_d.0/X.y-z_1/A", "a-b.c_d.0", "/X.y-z_1/A"),
    ("spiffe://example.org/.../x", "example.org", "/.../x"),  # only "." and ".." are dot segments
    ("spiffe://10.0.0.1/x", "10.0.0.1", "/x"),
]
INVALID_IDS = {
    "wrong scheme": "https://example.org/x",
    "uppercase scheme": "SPIFFE://example.org/x",
    "missing slashes": "spiffe:example.org/x",
    "uppercase trust domain": "spiffe://Example.org/x",
    "empty trust domain": "spiffe:///x",
    "userinfo": "spiffe://user@example.org/x",
    "port": "spiffe://example.org:8443/x",
    "trailing slash": "spiffe://example.org/",
    "empty segment": "spiffe://example.org/a//b",
    "dot segment": "spiffe://example.org/a/./b",
    "dot-dot segment": "spiffe://example.org/a/../b",
    "query": "spiffe://example.org/x?q=1",
    "fragment": "spiffe://example.org/x#f",
    "percent-encoding": "spiffe://example.org/x%20y",
    "space": "spiffe://example.org/x y",
    "non-ascii": "spiffe://example.org/\u00e9",
    "too long": "spiffe://example.org/" + "a" * 2048,
    "scheme only": "spiffe://",
    "empty": "",
}


@pytest.fixture
async def iss() -> AsyncIterator[SpiffeIssuer]:
    async with SpiffeIssuer("example.org") as issuer:
        yield issuer


def _jwt_svid_key(bundle: dict[str, Any], kid: str) -> jwt.PyJWK:
    """SPIFFE bundle §4: only ``use: jwt-svid`` entries count, selected by kid."""
    [entry] = [k for k in bundle["keys"] if k.get("use") == "jwt-svid" and k.get("kid") == kid]
    return jwt.PyJWK(entry)


@pytest.mark.parametrize(("value", "trust_domain", "path"), VALID_IDS)
def test_valid_spiffe_id(value: str, trust_domain: str, path: str) -> None:
    parsed = parse_spiffe_id(value)
    assert (parsed.trust_domain, parsed.path, str(parsed)) == (trust_domain, path, value)


@pytest.mark.parametrize("value", INVALID_IDS.values(), ids=INVALID_IDS.keys())
def test_invalid_spiffe_id(value: str) -> None:
    with pytest.raises(ValueError):
        parse_spiffe_id(value)


@pytest.mark.parametrize("trust_domain", ["Example.org", "", "ex ample.org", "a:1", "a/b"])
def test_invalid_trust_domain_is_refused(trust_domain: str) -> None:
    with pytest.raises(ValueError, match="trust domain"):
        SpiffeIssuer(trust_domain)


@pytest.mark.parametrize("path", ["", "/", "a//b", "/a/../b", "/a/./b", "x/", "/a?b", "/a b"])
def test_issue_refuses_invalid_paths(path: str) -> None:
    with pytest.raises(ValueError):
        SpiffeIssuer().issue(path, ["agentauth"])


@pytest.mark.parametrize("audiences", [[], "agentauth", [""]])
def test_issue_needs_at_least_one_audience(audiences: Any) -> None:
    with pytest.raises(ValueError):
        SpiffeIssuer().issue("/w", audiences)


def test_jwt_svid_claim_layout() -> None:
    iss = SpiffeIssuer("prod.example.org", clock=lambda: T0)
    token = iss.issue("ns/prod/sa/agent", ["agentauth"])  # leading "/" is added
    assert segment(token, 0) == {"alg": "ES256", "kid": iss.key_id, "typ": "JWT"}
    assert segment(token, 1) == {
        "aud": ["agentauth"],
        "exp": T0 + 300,
        "iat": T0,
        "sub": "spiffe://prod.example.org/ns/prod/sa/agent",
    }
    with_iss = SpiffeIssuer(clock=lambda: T0, issuer="https://oidc.example.org")
    claims = segment(with_iss.issue("/w", ["a", "b"], ttl=60), 1)
    assert claims["iss"] == "https://oidc.example.org" and claims["aud"] == ["a", "b"]
    assert claims["exp"] == T0 + 60


def test_extra_claims_and_headers_craft_attack_tokens() -> None:
    iss = SpiffeIssuer()
    token = iss.issue(
        "/w",
        ["agentauth"],
        extra_claims={"sub": "spiffe://other.org/w", "exp": None},
        headers={"typ": None, "x5u": "https://evil.example"},
    )
    assert segment(token, 0) == {"alg": "ES256", "kid": iss.key_id, "x5u": "https://evil.example"}
    assert segment(token, 1)["sub"] == "spiffe://other.org/w" and "exp" not in segment(token, 1)


async def test_bundle_format_served_at_bundle_endpoint(
    iss: SpiffeIssuer, http: aiohttp.ClientSession
) -> None:
    status, content_type, bundle = await get_json(http, iss.bundle_url)
    assert (status, content_type) == (200, "application/json")
    assert bundle == iss.bundle()
    assert set(bundle) == {"keys", "spiffe_sequence", "spiffe_refresh_hint"}
    assert (bundle["spiffe_sequence"], bundle["spiffe_refresh_hint"]) == (1, 300)
    [jwt_key] = [k for k in bundle["keys"] if k["use"] == "jwt-svid"]
    assert set(jwt_key) == {"use", "kty", "kid", "crv", "x", "y"}
    assert (jwt_key["kty"], jwt_key["crv"], jwt_key["kid"]) == ("EC", "P-256", iss.key_id)
    [ca] = [k for k in bundle["keys"] if k["use"] == "x509-svid"]
    assert "kid" not in ca and len(ca["x5c"]) == 1
    cert = x509.load_der_x509_certificate(base64.b64decode(ca["x5c"][0]))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.org"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert jwt.PyJWK(ca).key.public_bytes(*spki) == cert.public_key().public_bytes(*spki)


async def test_jwt_svid_verifies_with_bundle_fetched_over_http(
    iss: SpiffeIssuer, http: aiohttp.ClientSession
) -> None:
    token = iss.issue("/ns/prod/sa/agent", ["agentauth"])
    _, _, bundle = await get_json(http, iss.bundle_url)
    key = _jwt_svid_key(bundle, jwt.get_unverified_header(token)["kid"])
    claims = jwt.decode(token, key.key, algorithms=["ES256"], audience="agentauth")
    assert parse_spiffe_id(claims["sub"]).trust_domain == iss.trust_domain


async def test_keys_endpoint_is_a_plain_jwks(
    iss: SpiffeIssuer, http: aiohttp.ClientSession
) -> None:
    status, content_type, jwks = await get_json(http, iss.url + "/keys")
    assert (status, content_type) == (200, "application/jwk-set+json")
    [key] = jwks["keys"]
    assert (key["use"], key["alg"], key["kid"]) == ("sig", "ES256", iss.key_id)
    token = iss.issue("/w", ["agentauth"])
    pyjwk = jwt.PyJWKSet.from_dict(jwks)[iss.key_id]
    assert jwt.decode(token, pyjwk.key, algorithms=["ES256"], audience="agentauth")["sub"]


@pytest.mark.parametrize("algorithm", ["ES384", "ES512", "RS256", "PS256"])
async def test_other_spiffe_algorithms(algorithm: str, http: aiohttp.ClientSession) -> None:
    async with SpiffeIssuer(algorithm=algorithm) as iss:
        token = iss.issue("/w", ["agentauth"])
        assert segment(token, 0)["alg"] == algorithm
        _, _, bundle = await get_json(http, iss.bundle_url)
        key = _jwt_svid_key(bundle, iss.key_id)
        assert jwt.decode(token, key.key, algorithms=[algorithm], audience="agentauth")


async def test_rotation_keeps_old_key_and_bumps_sequence(
    iss: SpiffeIssuer, http: aiohttp.ClientSession
) -> None:
    old_kid, old = iss.key_id, iss.issue("/w", ["agentauth"])
    new_kid = iss.rotate_key()
    _, _, bundle = await get_json(http, iss.bundle_url)
    assert bundle["spiffe_sequence"] == 2
    assert [k["kid"] for k in bundle["keys"] if k["use"] == "jwt-svid"] == [old_kid, new_kid]
    assert jwt.decode(old, _jwt_svid_key(bundle, old_kid).key, ["ES256"], audience="agentauth")
    assert segment(iss.issue("/w", ["agentauth"]), 0)["kid"] == new_kid
    iss.drop_old_keys()
    _, _, bundle = await get_json(http, iss.bundle_url)
    assert bundle["spiffe_sequence"] == 3
    assert [k["kid"] for k in bundle["keys"] if k["use"] == "jwt-svid"] == [new_kid]


async def test_fault_injection_and_request_counters(
    iss: SpiffeIssuer, http: aiohttp.ClientSession
) -> None:
    iss.fail_next_requests(1, status=502)
    assert (await get_json(http, iss.bundle_url))[0] == 502
    assert (await get_json(http, iss.bundle_url))[0] == 200
    iss.fail_next_requests(1)
    assert (await get_json(http, iss.url + "/keys"))[0] == 503
    assert (iss.requests["/bundle"], iss.requests["/keys"]) == (2, 1)
    with pytest.raises(ValueError):
        iss.fail_next_requests(1, status=200)
