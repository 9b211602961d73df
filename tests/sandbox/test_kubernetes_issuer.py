"""KubernetesIssuer: the API server's discovery, JWKS and projected-token wire formats."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from control_plane.sandbox import KubernetesIssuer
from tests.sandbox.helpers import get_json, segment

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@pytest.fixture
async def iss() -> AsyncIterator[KubernetesIssuer]:
    async with KubernetesIssuer() as issuer:
        yield issuer


async def _verify(
    http: aiohttp.ClientSession, issuer: KubernetesIssuer, token: str
) -> dict[str, Any]:
    """What a relying party does: discovery -> jwks_uri -> key by kid -> verify."""
    status, _, doc = await get_json(http, issuer.url + "/.well-known/openid-configuration")
    assert status == 200
    _, _, jwks = await get_json(http, doc["jwks_uri"])
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
    return jwt.decode(
        token,
        key=key.key,
        algorithms=doc["id_token_signing_alg_values_supported"],
        audience="agentauth",
        issuer=doc["issuer"],
    )


async def test_discovery_document_is_what_the_api_server_publishes(
    iss: KubernetesIssuer, http: aiohttp.ClientSession
) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", iss.issuer) and iss.issuer == iss.url
    async with http.get(iss.url + "/.well-known/openid-configuration") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert resp.headers["Cache-Control"] == "public, max-age=3600"
        doc = await resp.json()
    assert doc == {
        "issuer": iss.issuer,
        "jwks_uri": iss.issuer + "/openid/v1/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


async def test_jwks_key_fields_and_kubernetes_kid(
    iss: KubernetesIssuer, http: aiohttp.ClientSession
) -> None:
    status, content_type, jwks = await get_json(http, iss.url + "/openid/v1/jwks")
    assert (status, content_type) == (200, "application/jwk-set+json")
    [key] = jwks["keys"]
    assert set(key) == {"use", "kty", "kid", "alg", "n", "e"}
    assert (key["use"], key["kty"], key["alg"], key["e"]) == ("sig", "RSA", "RS256", "AQAB")
    public = jwt.PyJWK(key).key
    assert public.key_size == 2048
    # kid = base64url(SHA-256(SubjectPublicKeyInfo DER)), as kube-apiserver derives it.
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert (
        key["kid"] == base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    )


async def test_token_verifies_against_jwks_fetched_over_http(
    iss: KubernetesIssuer, http: aiohttp.ClientSession
) -> None:
    token = iss.issue(namespace="prod", service_account="agent", audiences=["agentauth"])
    claims = await _verify(http, iss, token)
    assert claims["sub"] == "system:serviceaccount:prod:agent"
    with pytest.raises(jwt.InvalidAudienceError):
        _, _, jwks = await get_json(http, iss.jwks_uri)
        jwt.decode(token, jwt.PyJWKSet.from_dict(jwks)[iss.key_id].key, ["RS256"], audience="x")


def test_projected_token_claim_layout() -> None:
    iss = KubernetesIssuer(issuer="https://kubernetes.default.svc.cluster.local", clock=lambda: T0)
    token = iss.issue(
        namespace="prod", service_account="agent", audiences=["a1", "a2"], ttl=600, pod="agent-0"
    )
    assert segment(token, 0) == {"alg": "RS256", "kid": iss.key_id, "typ": "JWT"}
    claims = segment(token, 1)
    assert set(claims) == {"aud", "exp", "iat", "iss", "jti", "kubernetes.io", "nbf", "sub"}
    assert claims["aud"] == ["a1", "a2"]
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (T0, T0, T0 + 600)
    assert claims["iss"] == "https://kubernetes.default.svc.cluster.local"
    assert claims["sub"] == "system:serviceaccount:prod:agent"
    assert UUID.fullmatch(claims["jti"])
    private = claims["kubernetes.io"]
    assert set(private) == {"namespace", "serviceaccount", "pod"}
    assert private["namespace"] == "prod"
    assert private["serviceaccount"]["name"] == "agent"
    assert private["pod"]["name"] == "agent-0"
    assert UUID.fullmatch(private["serviceaccount"]["uid"]) and UUID.fullmatch(
        private["pod"]["uid"]
    )


def test_single_audience_is_still_a_list_and_unbound_token_has_no_pod() -> None:
    iss = KubernetesIssuer(issuer="https://k8s.example")
    claims = segment(iss.issue(namespace="ns", service_account="sa", audiences=["only"]), 1)
    assert claims["aud"] == ["only"]
    assert set(claims["kubernetes.io"]) == {"namespace", "serviceaccount"}
    # An empty audience list defaults to the API server's own audience (the issuer).
    assert segment(iss.issue(namespace="ns", service_account="sa", audiences=[]), 1)["aud"] == [
        "https://k8s.example"
    ]


def test_uids_are_stable_per_object_and_jti_unique() -> None:
    iss = KubernetesIssuer(issuer="https://k8s.example")
    a, b, c = (
        segment(iss.issue(namespace="ns", service_account=sa, audiences=["x"]), 1)
        for sa in ("one", "one", "two")
    )

    def uid(claims: dict[str, Any]) -> str:
        return str(claims["kubernetes.io"]["serviceaccount"]["uid"])

    assert uid(a) == uid(b) != uid(c)
    assert a["jti"] != b["jti"]


@pytest.mark.parametrize(
    ("namespace", "service_account"),
    [("Prod", "agent"), ("pr_od", "agent"), ("", "agent"), ("a" * 64, "agent"), ("ns", "Agent")],
)
def test_invalid_kubernetes_names_are_refused(namespace: str, service_account: str) -> None:
    iss = KubernetesIssuer(issuer="https://k8s.example")
    with pytest.raises(ValueError, match="not a valid Kubernetes name"):
        iss.issue(namespace=namespace, service_account=service_account, audiences=["x"])


def test_headers_and_extra_claims_override_or_remove() -> None:
    iss = KubernetesIssuer(issuer="https://k8s.example", clock=lambda: T0)
    token = iss.issue(
        namespace="ns",
        service_account="sa",
        audiences=["x"],
        headers={"alg": "HS256", "kid": None, "jku": "https://evil.example/jwks"},
        extra_claims={"exp": None, "sub": "system:serviceaccount:kube-system:admin", "x": 1},
    )
    assert segment(token, 0) == {"alg": "HS256", "typ": "JWT", "jku": "https://evil.example/jwks"}
    claims = segment(token, 1)
    assert "exp" not in claims and claims["x"] == 1
    assert claims["sub"] == "system:serviceaccount:kube-system:admin"


async def test_sign_arbitrary_claims(iss: KubernetesIssuer, http: aiohttp.ClientSession) -> None:
    token = iss.sign({"iss": iss.issuer, "aud": "agentauth", "sub": "anything"})
    assert (await _verify(http, iss, token))["sub"] == "anything"


async def test_es256_issuer(http: aiohttp.ClientSession) -> None:
    async with KubernetesIssuer(algorithm="ES256") as iss:
        _, _, doc = await get_json(http, iss.url + "/.well-known/openid-configuration")
        assert doc["id_token_signing_alg_values_supported"] == ["ES256"]
        _, _, jwks = await get_json(http, iss.jwks_uri)
        assert {k["kty"] for k in jwks["keys"]} == {"EC"} and jwks["keys"][0]["crv"] == "P-256"
        token = iss.issue(namespace="ns", service_account="sa", audiences=["agentauth"])
        assert (await _verify(http, iss, token))["iss"] == iss.issuer


async def test_rotation_publishes_old_and_new_key_until_dropped(
    iss: KubernetesIssuer, http: aiohttp.ClientSession
) -> None:
    old_kid = iss.key_id
    old = iss.issue(namespace="ns", service_account="sa", audiences=["agentauth"])
    new_kid = iss.rotate_key()
    assert new_kid != old_kid
    new = iss.issue(namespace="ns", service_account="sa", audiences=["agentauth"])
    assert segment(new, 0)["kid"] == new_kid
    _, _, jwks = await get_json(http, iss.jwks_uri)
    assert [k["kid"] for k in jwks["keys"]] == [old_kid, new_kid]
    await _verify(http, iss, old)
    await _verify(http, iss, new)
    iss.drop_old_keys()
    _, _, jwks = await get_json(http, iss.jwks_uri)
    assert [k["kid"] for k in jwks["keys"]] == [new_kid]
    with pytest.raises(KeyError):
        await _verify(http, iss, old)


@pytest.mark.parametrize("status", [503, 500, 429])
async def test_fault_injection_and_request_counters(
    iss: KubernetesIssuer, http: aiohttp.ClientSession, status: int
) -> None:
    iss.fail_next_requests(2, status=status)
    assert (await get_json(http, iss.url + "/.well-known/openid-configuration"))[0] == status
    assert (await get_json(http, iss.url + "/openid/v1/jwks"))[0] == status
    assert (await get_json(http, iss.url + "/openid/v1/jwks"))[0] == 200
    assert iss.requests["/.well-known/openid-configuration"] == 1
    assert iss.requests["/openid/v1/jwks"] == 2
    async with http.get(iss.url + "/nope") as resp:
        assert resp.status == 404
    assert iss.requests["/nope"] == 1


async def test_refuses_non_loopback_bind() -> None:
    iss = KubernetesIssuer()
    for host in ("0.0.0.0", "192.0.2.1", "example.com", "::"):
        with pytest.raises(ValueError, match="refusing to bind"):
            await iss.start(host=host)
    assert not iss.running


def test_issuer_unknown_until_started() -> None:
    iss = KubernetesIssuer()
    with pytest.raises(RuntimeError):
        iss.issue(namespace="ns", service_account="sa", audiences=["x"])
    with pytest.raises(ValueError):
        KubernetesIssuer(algorithm="HS256")


async def test_default_issuer_follows_the_server_url_across_restarts() -> None:
    iss = KubernetesIssuer()
    first = await iss.start()
    await iss.stop()
    second = await iss.start()
    try:
        assert iss.issuer == second == iss.url and first.startswith("http://127.0.0.1:")
        assert not iss.issue(namespace="ns", service_account="sa", audiences=["x"]).count(" ")
        assert iss.jwks_uri == second + "/openid/v1/jwks"
    finally:
        await iss.stop()
