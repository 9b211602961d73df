"""The Okta and Microsoft Entra ID emulators: discovery, JWKS and claim layouts."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator

import aiohttp
import jwt
import pytest

from control_plane.sandbox import EntraIdentityProvider, OktaIdentityProvider
from control_plane.sandbox.oidc_idp import OKTA_API_AUDIENCE
from tests.sandbox.helpers import get_json, segment

T0 = 1_795_000_000
OKTA_ID = re.compile(r"^(00u|0oa)[A-Za-z0-9]{17}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture
async def okta() -> AsyncIterator[OktaIdentityProvider]:
    async with OktaIdentityProvider() as idp:
        yield idp


@pytest.fixture
async def entra() -> AsyncIterator[EntraIdentityProvider]:
    async with EntraIdentityProvider() as idp:
        yield idp


async def _verify(
    http: aiohttp.ClientSession, idp: OktaIdentityProvider | EntraIdentityProvider, token: str,
    audience: str,
) -> dict[str, object]:  # fmt: skip
    """What a relying party does: discovery → jwks_uri → verify iss/aud/signature."""
    status, _, doc = await get_json(http, idp.discovery_url)
    assert status == 200 and doc["issuer"] == idp.issuer
    _, _, jwks = await get_json(http, doc["jwks_uri"])
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]].key
    claims: dict[str, object] = jwt.decode(
        token, key, ["RS256"], audience=audience, issuer=idp.issuer
    )
    return claims


async def test_okta_id_token_verifies_through_discovery(
    okta: OktaIdentityProvider, http: aiohttp.ClientSession
) -> None:
    assert okta.issuer == okta.url + "/oauth2/default"
    assert okta.discovery_url == okta.issuer + "/.well-known/openid-configuration"
    token = okta.id_token("alice@example.com")
    claims = await _verify(http, okta, token, okta.client_id)
    assert claims["sub"] == okta.user_id("alice@example.com")
    assert OKTA_ID.fullmatch(str(claims["sub"])) and OKTA_ID.fullmatch(okta.client_id)
    assert claims["ver"] == 1 and claims["aud"] == okta.client_id
    assert segment(token, 0) == {"kid": okta.key_id, "alg": "RS256"}  # Okta sends no typ


async def test_okta_access_token_layout() -> None:
    async with OktaIdentityProvider(clock=lambda: T0) as okta:
        token = okta.access_token("alice@example.com", scopes=["openid", "email"])
    claims = segment(token, 1)
    assert claims["iss"] == okta.issuer
    assert claims["aud"] == OKTA_API_AUDIENCE and claims["cid"] == okta.client_id
    assert claims["uid"] == okta.user_id("alice@example.com")
    assert claims["sub"] == "alice@example.com"  # the login, not the user id
    assert claims["scp"] == ["openid", "email"] and claims["ver"] == 1
    assert (claims["iat"], claims["exp"]) == (T0, T0 + 3600)
    assert str(claims["jti"]).startswith("AT.")


async def test_entra_tokens_carry_tid_oid_and_a_pairwise_sub(
    entra: EntraIdentityProvider, http: aiohttp.ClientSession
) -> None:
    assert entra.issuer == f"{entra.url}/{entra.tenant_id}/v2.0"
    assert entra.jwks_uri == f"{entra.url}/{entra.tenant_id}/discovery/v2.0/keys"
    upn = "alice@contoso.example"
    token = entra.id_token(upn)
    claims = await _verify(http, entra, token, entra.client_id)
    assert claims["tid"] == entra.tenant_id and claims["ver"] == "2.0"
    assert claims["oid"] == entra.object_id(upn) and UUID.fullmatch(str(claims["oid"]))
    assert claims["preferred_username"] == upn
    assert segment(token, 0)["typ"] == "JWT"
    # sub is per application; oid is the same for every application of the tenant.
    assert claims["sub"] == entra.pairwise_sub(upn, entra.client_id)
    assert entra.pairwise_sub(upn, "another-app") != claims["sub"]
    assert len(str(claims["sub"])) == 43
    access = segment(entra.access_token(upn, scopes=["access_as_user", "read"]), 1)
    assert access["scp"] == "access_as_user read" and access["oid"] == claims["oid"]
    assert access["aud"] == entra.client_id and "azp" in access


async def test_keys_rotate_and_faults_are_injected(
    okta: OktaIdentityProvider, http: aiohttp.ClientSession
) -> None:
    old = okta.key_id
    assert okta.rotate_key() != old
    _, content_type, jwks = await get_json(http, okta.jwks_uri)
    assert content_type == "application/json"
    assert [k["kid"] for k in jwks["keys"]] == [old, okta.key_id]
    assert all(k["use"] == "sig" and k["alg"] == "RS256" and "d" not in k for k in jwks["keys"])
    okta.fail_next_requests(1)
    async with http.get(okta.discovery_url) as r:
        assert r.status == 503
    assert okta.requests["/oauth2/default/.well-known/openid-configuration"] == 1


async def test_overrides_and_stable_ids(okta: OktaIdentityProvider) -> None:
    assert okta.user_id("a@x") == okta.user_id("a@x") != okta.user_id("b@x")
    token = okta.id_token(
        "a@x", extra_claims={"aud": "other", "ver": None}, headers={"typ": "at+jwt"}
    )
    assert segment(token, 0)["typ"] == "at+jwt"
    claims = segment(token, 1)
    assert claims["aud"] == "other" and "ver" not in claims
    with pytest.raises(ValueError):
        okta.id_token("a@x", ttl=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
async def test_entry_point_serves_okta_and_entra(http: aiohttp.ClientSession) -> None:
    from tests.sandbox.test_main import _sandbox

    port = _free_port()
    async with _sandbox("okta", "--port", str(port), "--client-id", "0oaCLI", expect=5) as run:
        base = f"http://127.0.0.1:{port}"
        assert run.urls["issuer"] == base + "/oauth2/default"
        assert run.urls["client_id"] == "0oaCLI"
        async with http.post(run.urls["issue"], json={"user": "alice@example.com"}) as r:
            token = (await r.json())["token"]
        assert segment(token, 1)["aud"] == "0oaCLI"
        async with http.post(run.urls["issue"], json={"user": "a", "token": "refresh"}) as r:
            assert r.status == 400
    port = _free_port()
    async with _sandbox("entra", "--port", str(port), "--tenant-id", "t-1", expect=6) as run:
        assert run.urls["tenant_id"] == "t-1"
        body = {"user": "alice@contoso.example", "token": "access_token", "scopes": ["x"]}
        async with http.post(run.urls["issue"], json=body) as r:
            claims = segment((await r.json())["token"], 1)
        assert claims["tid"] == "t-1" and claims["scp"] == "x"
    assert run.returncode == 0
