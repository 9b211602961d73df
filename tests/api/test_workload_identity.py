"""Workload identity → org-scoped service-account tokens (issue: workload identity)."""

from __future__ import annotations

import json
import time

import aiohttp
import jwt
import pytest
from agentauth import InvalidArgumentError, UnauthenticatedError
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import trust_policy_pb2 as trust
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import duration_pb2, field_mask_pb2

from control_plane.sandbox import KubernetesIssuer, SpiffeIssuer

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
API = "https://api.internal.example"


async def _setup_agent(harness, client, org: str, **policy_fields):
    agent = (await client.admin.RegisterAgent(
        pb.RegisterAgentRequest(parent=org, agent=pb.Agent(display_name="billing agent"))
    )).agent
    sa = (await client.admin.CreateServiceAccount(pb.CreateServiceAccountRequest(
        parent=org, service_account=pb.ServiceAccount(display_name="billing", purpose="billing"),
    ))).service_account
    fields = {
        "service_accounts": [sa.name],
        "scopes": ["invoices:read", "invoices:write"],
        "audiences": [API],
        **policy_fields,
    }
    policy = (await client.admin.CreateTrustPolicy(pb.CreateTrustPolicyRequest(
        parent=agent.name, trust_policy=trust.TrustPolicy(**fields),
    ))).trust_policy
    return agent, sa, policy


def _k8s_policy(issuer: KubernetesIssuer) -> dict:
    return {
        "kind": trust.TRUST_POLICY_KIND_WORKLOAD_TOKEN,
        "issuer": issuer.issuer,
        "discovery_url": issuer.issuer + "/.well-known/openid-configuration",
        "audience": "agentauth",
        "claim_equals": {
            "kubernetes.io.namespace": "billing",
            "kubernetes.io.serviceaccount.name": "billing-agent",
        },
    }


async def _jwks(harness) -> jwt.PyJWKSet:
    async with aiohttp.ClientSession() as http:
        async with http.get(harness.http + "/.well-known/jwks.json") as r:
            return jwt.PyJWKSet.from_dict(await r.json())


async def test_kubernetes_token_exchange_mints_rfc9068_token(harness) -> None:
    org, client, _ = await harness.new_org()
    async with KubernetesIssuer() as k8s:
        agent, sa, _ = await _setup_agent(harness, client, org, **_k8s_policy(k8s))
        workload = k8s.issue(namespace="billing", service_account="billing-agent", audiences=["agentauth"])
        resp = await harness.client(None).tokens.ExchangeToken(tpb.ExchangeTokenRequest(
            grant_type=TOKEN_EXCHANGE, subject_token=workload, subject_token_type=JWT_TYPE,
            organization=org, scope="invoices:read",
        ))
    assert resp.token_type == "Bearer" and resp.scope == "invoices:read"
    assert resp.issued_token_type == "urn:ietf:params:oauth:token-type:access_token"
    assert 290 <= resp.expires_in <= 300
    header = jwt.get_unverified_header(resp.access_token)
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"]
    keys = await _jwks(harness)
    claims = jwt.decode(
        resp.access_token, keys[header["kid"]].key, algorithms=["ES256"], audience=API,
        issuer=harness.servers.tokens.issuer,
    )
    assert claims["sub"] == sa.name and claims["client_id"] == agent.name
    assert claims["org_id"] == org.split("/")[1] and claims["scope"] == "invoices:read"
    assert claims["exp"] - claims["iat"] == 300 and claims["nbf"] == claims["iat"]
    assert set(claims) == {"iss", "sub", "aud", "org_id", "client_id", "scope", "jti", "iat", "nbf", "exp"}
    # Recorded for introspection and revocation.
    snap = await harness.snapshot()
    assert any(claims["jti"] in map(str, row) for row in snap["issued_tokens"])
    # Introspection (RFC 7662) by the org's admin; then revocation (RFC 7009).
    intro = await client.tokens.IntrospectToken(tpb.IntrospectTokenRequest(token=resp.access_token))
    assert intro.active and intro.sub == sa.name and intro.client_id == agent.name
    await client.tokens.RevokeToken(tpb.RevokeTokenRequest(token=resp.access_token))
    intro = await client.tokens.IntrospectToken(tpb.IntrospectTokenRequest(token=resp.access_token))
    assert intro == tpb.IntrospectTokenResponse(active=False)


async def test_scope_widening_is_invalid_scope_and_audience_is_allow_listed(harness) -> None:
    org, client, _ = await harness.new_org()
    async with KubernetesIssuer() as k8s:
        await _setup_agent(harness, client, org, **_k8s_policy(k8s))
        workload = k8s.issue(namespace="billing", service_account="billing-agent", audiences=["agentauth"])
        tokens = harness.client(None).tokens
        base = dict(grant_type=TOKEN_EXCHANGE, subject_token=workload, subject_token_type=JWT_TYPE,
                    organization=org)
        with pytest.raises(InvalidArgumentError) as err:
            await tokens.ExchangeToken(tpb.ExchangeTokenRequest(**base, scope="invoices:read admin"))
        assert err.value.reason == "INVALID_SCOPE"
        # RFC 6749 §5.2 error_description: the authenticated caller learns what to drop.
        assert err.value.message == "scope not allowed: admin"
        with pytest.raises(InvalidArgumentError) as err:
            await tokens.ExchangeToken(tpb.ExchangeTokenRequest(**base, audience=["*"]))
        assert err.value.reason == "INVALID_TARGET"
        full = await tokens.ExchangeToken(tpb.ExchangeTokenRequest(**base))
        assert full.scope == "invoices:read invoices:write"


async def test_workload_token_for_another_org_is_refused(harness) -> None:
    org_a, a, _ = await harness.new_org("A")
    org_b, b, _ = await harness.new_org("B")
    async with KubernetesIssuer() as k8s:
        await _setup_agent(harness, a, org_a, **_k8s_policy(k8s))
        workload = k8s.issue(namespace="billing", service_account="billing-agent", audiences=["agentauth"])
        before = await harness.snapshot()
        with pytest.raises(UnauthenticatedError) as err:
            await harness.client(None).tokens.ExchangeToken(tpb.ExchangeTokenRequest(
                grant_type=TOKEN_EXCHANGE, subject_token=workload, subject_token_type=JWT_TYPE,
                organization=org_b,
            ))
        assert err.value.reason == "INVALID_REQUEST"
        assert await harness.snapshot() == before


async def test_policy_cannot_name_another_orgs_service_account(harness) -> None:
    org_a, a, _ = await harness.new_org("A")
    org_b, b, _ = await harness.new_org("B")
    sa_b = (await b.admin.ListServiceAccounts(pb.ListServiceAccountsRequest(parent=org_b))).service_accounts[0]
    agent = (await a.admin.RegisterAgent(pb.RegisterAgentRequest(parent=org_a, agent=pb.Agent(display_name="x")))).agent
    with pytest.raises(InvalidArgumentError):
        await a.admin.CreateTrustPolicy(pb.CreateTrustPolicyRequest(
            parent=agent.name,
            trust_policy=trust.TrustPolicy(
                kind=trust.TRUST_POLICY_KIND_PRIVATE_KEY_JWT,
                jwks_json=json.dumps({"keys": [_ec_jwk()[1]]}),
                service_accounts=[sa_b.name], audiences=[API],
            ),
        ))


async def test_spiffe_svid_with_trust_bundle_and_id_pattern(harness) -> None:
    org, client, _ = await harness.new_org()
    async with SpiffeIssuer("example.org") as spire:
        await _setup_agent(
            harness, client, org,
            kind=trust.TRUST_POLICY_KIND_WORKLOAD_TOKEN,
            jwks_json=json.dumps(spire.bundle()),
            audience="agentauth",
            subject_pattern="spiffe://example.org/ns/billing/sa/*",
        )
        good = spire.issue("/ns/billing/sa/agent", ["agentauth"])
        bad = spire.issue("/ns/other/sa/agent", ["agentauth"])
        tokens = harness.client(None).tokens
        req = dict(grant_type=TOKEN_EXCHANGE, subject_token_type=JWT_TYPE, organization=org)
        ok = await tokens.ExchangeToken(tpb.ExchangeTokenRequest(subject_token=good, **req))
        assert ok.access_token
        with pytest.raises(UnauthenticatedError):
            await tokens.ExchangeToken(tpb.ExchangeTokenRequest(subject_token=bad, **req))


def _ec_jwk() -> tuple[ec.EllipticCurvePrivateKey, dict]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="agent-key-1", alg="ES256", use="sig")
    return key, jwk


async def test_private_key_jwt_over_http_and_replay(harness) -> None:
    org, client, _ = await harness.new_org()
    key, jwk = _ec_jwk()
    agent, sa, _ = await _setup_agent(
        harness, client, org, kind=trust.TRUST_POLICY_KIND_PRIVATE_KEY_JWT,
        jwks_json=json.dumps({"keys": [jwk]}),
    )
    issuer = harness.servers.tokens.issuer
    now = int(time.time())
    assertion = jwt.encode(
        {"iss": agent.name, "sub": agent.name, "aud": issuer + "/oauth2/token",
         "jti": "a-1", "iat": now, "exp": now + 60},
        key, algorithm="ES256", headers={"kid": "agent-key-1"},
    )
    form = {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion, "scope": "invoices:read"}
    async with aiohttp.ClientSession() as http:
        async with http.post(harness.http + "/oauth2/token", data=form) as r:
            body = await r.json()
            assert r.status == 200, body
            assert r.headers["Cache-Control"] == "no-store"
        assert body["token_type"] == "Bearer" and body["scope"] == "invoices:read"
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["sub"] == sa.name and claims["client_id"] == agent.name
        async with http.post(harness.http + "/oauth2/token", data=form) as r:
            assert r.status == 401
            assert (await r.json())["error"] == "invalid_client"
        async with http.get(harness.http + "/.well-known/oauth-authorization-server") as r:
            meta = await r.json()
        assert meta["issuer"] == issuer and meta["token_endpoint"] == issuer + "/oauth2/token"
        assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]


async def test_org_token_lifetime_is_configurable_up_to_15_minutes(harness) -> None:
    org, client, _ = await harness.new_org()
    mask = field_mask_pb2.FieldMask(paths=["access_token_ttl"])
    updated = await client.admin.UpdateOrganization(pb.UpdateOrganizationRequest(
        organization=pb.Organization(name=org, access_token_ttl=duration_pb2.Duration(seconds=900)),
        update_mask=mask,
    ))
    assert updated.organization.access_token_ttl.seconds == 900
    with pytest.raises(InvalidArgumentError):
        await client.admin.UpdateOrganization(pb.UpdateOrganizationRequest(
            organization=pb.Organization(name=org, access_token_ttl=duration_pb2.Duration(seconds=901)),
            update_mask=mask,
        ))
    async with KubernetesIssuer() as k8s:
        await _setup_agent(harness, client, org, **_k8s_policy(k8s))
        workload = k8s.issue(namespace="billing", service_account="billing-agent", audiences=["agentauth"])
        resp = await harness.client(None).tokens.ExchangeToken(tpb.ExchangeTokenRequest(
            grant_type=TOKEN_EXCHANGE, subject_token=workload, subject_token_type=JWT_TYPE,
            organization=org,
        ))
    assert 890 <= resp.expires_in <= 900


async def test_service_account_token_authenticates_introspection_of_own_org_only(harness) -> None:
    org_a, a, _ = await harness.new_org("A")
    org_b, b, _ = await harness.new_org("B")
    issuer = harness.servers.tokens.issuer
    async with KubernetesIssuer() as k8s:
        policy = _k8s_policy(k8s)
        await _setup_agent(harness, a, org_a, **policy)
        # A second policy on B with agentauth itself as an allowed audience.
        agent_b = (await b.admin.RegisterAgent(pb.RegisterAgentRequest(parent=org_b, agent=pb.Agent(display_name="x")))).agent
        sa_b = (await b.admin.ListServiceAccounts(pb.ListServiceAccountsRequest(parent=org_b))).service_accounts[0]
        await b.admin.CreateTrustPolicy(pb.CreateTrustPolicyRequest(parent=agent_b.name, trust_policy=trust.TrustPolicy(
            service_accounts=[sa_b.name], audiences=[issuer], scopes=["introspect"], **policy)))
        workload = k8s.issue(namespace="billing", service_account="billing-agent", audiences=["agentauth"])
        tokens = harness.client(None).tokens
        req = dict(grant_type=TOKEN_EXCHANGE, subject_token=workload, subject_token_type=JWT_TYPE)
        token_a = (await tokens.ExchangeToken(tpb.ExchangeTokenRequest(organization=org_a, **req))).access_token
        caller_b = (await tokens.ExchangeToken(tpb.ExchangeTokenRequest(organization=org_b, **req))).access_token
    as_b = harness.client(caller_b)
    # B's service account sees A's token as inactive and cannot revoke it.
    assert (await as_b.tokens.IntrospectToken(tpb.IntrospectTokenRequest(token=token_a))).active is False
    await as_b.tokens.RevokeToken(tpb.RevokeTokenRequest(token=token_a))
    assert (await a.tokens.IntrospectToken(tpb.IntrospectTokenRequest(token=token_a))).active is True
    # A token for another audience cannot authenticate to agentauth itself.
    with pytest.raises(UnauthenticatedError):
        await harness.client(token_a).tokens.IntrospectToken(tpb.IntrospectTokenRequest(token=token_a))


async def test_sdk_validator_accepts_minted_tokens_through_published_jwks(harness) -> None:
    """End to end: a service validates our token offline with the SDK, keys over HTTP."""
    from agentauth import AsyncTokenValidator, TokenForbiddenError, TokenInvalidError

    org, client, _ = await harness.new_org()
    async with KubernetesIssuer() as k8s:
        agent, sa, _ = await _setup_agent(harness, client, org, **_k8s_policy(k8s))
        workload = k8s.issue(namespace="billing", service_account="billing-agent", audiences=["agentauth"])
        resp = await harness.client(None).tokens.ExchangeToken(tpb.ExchangeTokenRequest(
            grant_type=TOKEN_EXCHANGE, subject_token=workload, subject_token_type=JWT_TYPE,
            organization=org, scope="invoices:read",
        ))
    issuer = harness.servers.tokens.issuer
    validator = AsyncTokenValidator(issuer, API, expected_org=org.split("/")[1])
    token = await validator.validate(resp.access_token, required_scopes=["invoices:read"])
    assert token.subject == sa.name and token.client_id == agent.name
    assert token.org_id == org.split("/")[1] and token.scopes == frozenset({"invoices:read"})
    with pytest.raises(TokenForbiddenError) as err:
        await validator.validate(resp.access_token, required_scopes=["invoices:write"])
    assert err.value.reason == "TOKEN_SCOPE_INSUFFICIENT"
    other = AsyncTokenValidator(issuer, "https://another.service")
    with pytest.raises(TokenInvalidError) as err:
        await other.validate(resp.access_token)
    assert err.value.reason == "TOKEN_AUDIENCE_MISMATCH"
