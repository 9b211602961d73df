"""A stock OAuth client library against the HTTP surface (RFC 8414, 6749, 7523, 8693, 7662, 7009).

Authlib's requests integration is synchronous; the server runs on the test's event
loop, so every blocking call goes through ``asyncio.to_thread``.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
import requests
from agentauth.v1 import trust_policy_pb2 as trust
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from cryptography.hazmat.primitives import serialization

from control_plane.sandbox import KubernetesIssuer
from tests.api.exchange_helpers import (
    ACCESS_TOKEN_TYPE,
    API,
    JWT_TYPE,
    TOKEN_EXCHANGE,
    in_thread,
    open_world,
    rsa_key,
    setup_agent,
)

DISCOVERY = "/.well-known/oauth-authorization-server"


def _get_json(url: str) -> dict[str, Any]:
    r = requests.get(url, timeout=10)
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


async def _discover(harness: Any) -> dict[str, Any]:
    """RFC 8414 §3: the metadata document is where a client learns every endpoint."""
    meta = await in_thread(_get_json, harness.http + DISCOVERY)
    issuer = harness.servers.tokens.issuer
    assert meta["issuer"] == issuer  # §3.3: must equal the issuer the client expected
    for name in ("token", "introspection", "revocation"):
        assert meta[f"{name}_endpoint"].startswith(issuer + "/")
    assert {TOKEN_EXCHANGE, "client_credentials"} <= set(meta["grant_types_supported"])
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]
    return meta


async def test_rfc8414_2_metadata_passes_authlibs_validation(harness: Any) -> None:
    """Every member holds registered values; an empty ``response_types_supported``
    (REQUIRED) or ``"bearer"`` as a revocation auth method would not."""
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

    meta = await _discover(harness)
    AuthorizationServerMetadata(meta).validate()
    assert meta["response_types_supported"] == ["none"]
    # RFC 8414 §2: introspection may name an "OAuth Access Token Types" value (RFC 6750's).
    assert meta["introspection_endpoint_auth_methods_supported"] == ["Bearer"]
    # Revocation may not, and left out it would mean client_secret_basic: our own member.
    assert "revocation_endpoint_auth_methods_supported" not in meta
    assert meta["agentauth_revocation_endpoint_auth_schemes_supported"] == ["Bearer"]


async def _rsa_agent(harness: Any) -> tuple[Any, Any, Any, str]:
    """An agent whose PRIVATE_KEY_JWT policy holds one RSA key (Authlib's default RS256)."""
    org, admin, _ = await harness.new_org()
    key, jwk_ = rsa_key()
    agent, sa, _ = await setup_agent(
        admin,
        org,
        kind=trust.TRUST_POLICY_KIND_PRIVATE_KEY_JWT,
        jwks_json=json.dumps({"keys": [jwk_]}),
        algorithms=["RS256"],
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return agent, sa, org, pem


def _fetch_client_credentials(
    token_endpoint: str, client_id: str, pem: str, auth: PrivateKeyJWT, scope: str
) -> dict[str, Any]:
    with OAuth2Session(
        client_id=client_id,
        client_secret=pem,
        token_endpoint_auth_method="private_key_jwt",
        scope=scope,
    ) as session:
        session.register_client_auth_method(auth)
        token: dict[str, Any] = session.fetch_token(
            token_endpoint, grant_type="client_credentials", timeout=10
        )
        return dict(token)


async def test_rfc7523_authlib_client_credentials_with_private_key_jwt(harness: Any) -> None:
    meta = await _discover(harness)
    agent, sa, org, pem = await _rsa_agent(harness)
    token_endpoint = meta["token_endpoint"]
    # Authlib signs iss = sub = client_id and aud = the token endpoint URL by default; its
    # default lifetime is one hour, over our five-minute cap, so ask for two minutes.
    auth = PrivateKeyJWT(token_endpoint, claims={"exp": int(time.time()) + 120})
    token = await in_thread(
        _fetch_client_credentials, token_endpoint, agent.name, pem, auth, "invoices:read"
    )
    assert token["token_type"] == "Bearer" and token["scope"] == "invoices:read"
    assert 0 < token["expires_in"] <= 300
    assert "issued_token_type" not in token  # only RFC 8693 responses carry it
    jwks = jwt.PyJWKSet.from_dict(await in_thread(_get_json, meta["jwks_uri"]))
    header = jwt.get_unverified_header(token["access_token"])
    assert header["typ"] == "at+jwt"
    claims = jwt.decode(
        token["access_token"],
        jwks[header["kid"]].key,
        algorithms=meta["access_token_signing_alg_values_supported"],
        audience=API,
        issuer=meta["issuer"],
    )
    assert claims["client_id"] == agent.name and claims["sub"] == sa.name
    assert claims["org_id"] == org.removeprefix("orgs/")
    snap = await harness.snapshot()
    assert len(snap["used_assertions"]) == 1 and len(snap["issued_tokens"]) == 1


async def test_rfc7523_authlib_default_one_hour_assertion_is_refused(harness: Any) -> None:
    """Interop note: Authlib's stock PrivateKeyJWT asserts exp = iat + 3600 s; we cap
    assertion lifetime at 300 s (+30 s leeway), so an unconfigured client gets
    invalid_client, parsed by Authlib from our RFC 6749 §5.2 body."""
    meta = await _discover(harness)
    agent, _, _, pem = await _rsa_agent(harness)
    before = await harness.snapshot()
    with pytest.raises(OAuthError) as err:
        await in_thread(
            _fetch_client_credentials,
            meta["token_endpoint"],
            agent.name,
            pem,
            PrivateKeyJWT(meta["token_endpoint"]),
            "invoices:read",
        )
    assert err.value.error == "invalid_client"
    assert err.value.description == "client authentication failed"
    assert await harness.snapshot() == before


async def test_rfc8693_2_2_2_authlib_parses_unacceptable_token(harness: Any) -> None:
    """Authlib's generic fetch_token drives RFC 8693 too and surfaces our §5.2 errors:
    an expired subject token is ``invalid_request`` (RFC 8693 §2.2.2)."""
    async with KubernetesIssuer() as k8s:
        w = await open_world(harness, k8s)
        meta = await _discover(harness)
        expired = k8s.issue(
            namespace="billing",
            service_account="billing-agent",
            audiences=["agentauth"],
            extra_claims={"exp": int(time.time()) - 120},
        )

        def fetch() -> Any:
            # A public client (auth method "none") sends its client_id in the body.
            with OAuth2Session(
                client_id=w.agent.name, token_endpoint_auth_method="none"
            ) as session:
                return session.fetch_token(
                    meta["token_endpoint"],
                    grant_type=TOKEN_EXCHANGE,
                    subject_token=expired,
                    subject_token_type=JWT_TYPE,
                    organization=w.org,
                    timeout=10,
                )

        with pytest.raises(OAuthError) as err:
            await in_thread(fetch)
    assert err.value.error == "invalid_request"
    assert err.value.description == "the subject_token or actor_token is not acceptable"


def _post(url: str, data: dict[str, str], bearer: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return requests.post(url, data=data, headers=headers, timeout=10)


async def test_rfc8693_token_exchange_then_rfc7662_introspect_and_rfc7009_revoke(
    harness: Any,
) -> None:
    async with KubernetesIssuer() as k8s:
        w = await open_world(harness, k8s)
        meta = await _discover(harness)
        form = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": w.workload(),
            "subject_token_type": JWT_TYPE,
            "requested_token_type": ACCESS_TOKEN_TYPE,
            "organization": w.org,
            "audience": API,
            "scope": "invoices:read",
        }
        r = await in_thread(_post, meta["token_endpoint"], form)
    # RFC 8693 §2.2.1 / RFC 6749 §5.1: JSON, never cached.
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["Cache-Control"] == "no-store" and r.headers["Pragma"] == "no-cache"
    body = r.json()
    assert set(body) == {"access_token", "issued_token_type", "token_type", "expires_in", "scope"}
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE
    assert body["token_type"].lower() == "bearer"
    assert isinstance(body["expires_in"], int) and 0 < body["expires_in"] <= 300
    assert body["scope"] == "invoices:read"
    access_token = body["access_token"]

    # RFC 7662 §2.1: the org admin authenticates with its API key as a bearer token.
    intro = await in_thread(
        _post,
        meta["introspection_endpoint"],
        {"token": access_token, "token_type_hint": "access_token"},
        w.admin_key,
    )
    assert intro.status_code == 200 and intro.headers["Cache-Control"] == "no-store"
    info = intro.json()
    claims = jwt.decode(access_token, options={"verify_signature": False})
    assert info["active"] is True and info["token_type"] == "Bearer"
    assert info["scope"] == "invoices:read" and info["aud"] == API
    assert info["client_id"] == w.agent.name and info["sub"] == w.sa.name
    assert info["iss"] == meta["issuer"] and info["jti"] == claims["jti"]
    assert info["exp"] == claims["exp"] and info["iat"] == claims["iat"]

    # RFC 7009 §2.2: 200 on revocation, and again for an already revoked token.
    for _ in range(2):
        rev = await in_thread(
            _post,
            meta["revocation_endpoint"],
            {"token": access_token, "token_type_hint": "access_token"},
            w.admin_key,
        )
        assert rev.status_code == 200 and rev.headers["Cache-Control"] == "no-store"
    after = await in_thread(
        _post, meta["introspection_endpoint"], {"token": access_token}, w.admin_key
    )
    assert after.status_code == 200 and after.json() == {"active": False}
