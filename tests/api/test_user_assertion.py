"""RFC 8693 token exchange with a user assertion from the org's identity provider.

subject_token = an ID token (or access token) of the org's Okta / Entra ID,
actor_token = the agent's credential → a delegated token (sub = the user,
act = the agent, a new txn), exactly like DelegateToken's. Every refusal is
RFC 8693 §2.2.2 ``invalid_request`` (gRPC UNAUTHENTICATED) and writes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from agentauth import InvalidArgumentError, UnauthenticatedError
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import identity_provider_pb2 as idp_pb
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import trust_policy_pb2 as trust
from cryptography.hazmat.primitives import serialization

from control_plane.sandbox import EntraIdentityProvider, KubernetesIssuer, OktaIdentityProvider
from control_plane.sandbox._jose import b64url
from control_plane.sandbox.oidc_idp import OKTA_API_AUDIENCE
from tests.api.exchange_helpers import post_form

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
REFRESH_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
API = "https://api.internal.example"
ALICE = "alice@example.com"
# RFC 8693 §2.2.2: one answer for every unacceptable subject or actor token.
UNACCEPTABLE = (UnauthenticatedError, "INVALID_REQUEST")


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


class World:
    """One org: user alice (Okta user id as external_id), agents O and S with
    Kubernetes workload policies, a delegation rule O → S, and the Okta IdP."""

    def __init__(self, harness: Any, k8s: KubernetesIssuer, okta: OktaIdentityProvider) -> None:
        self.h, self.k8s, self.okta = harness, k8s, okta

    async def setup(self) -> World:
        self.org, self.admin, _ = await self.h.new_org()
        self.org_id = self.org.removeprefix("orgs/")
        self.user = await self.new_user(self.org, self.admin, self.okta.user_id(ALICE))
        self.sa = (
            (
                await self.admin.admin.ListServiceAccounts(
                    pb.ListServiceAccountsRequest(parent=self.org)
                )
            )
            .service_accounts[0]
            .name
        )
        self.agents = {
            "O": await self.new_agent(self.org, self.admin, "o", ["a", "b", "c"], [API]),
            "S": await self.new_agent(self.org, self.admin, "s", ["a", "b"], [API]),
            # Allowed to get SA tokens for agentauth itself (its own credential).
            "B": await self.new_agent(self.org, self.admin, "b", ["a"], [self.issuer, API]),
        }
        await self.admin.admin.CreateDelegationRule(
            pb.CreateDelegationRuleRequest(
                parent=self.org,
                delegation_rule=pb.DelegationRule(
                    delegator=self.agents["O"], delegate=self.agents["S"]
                ),
            )
        )
        self.idp = await self.configure(self.org, self.admin, self.okta_idp())
        return self

    @property
    def issuer(self) -> str:
        return str(self.h.servers.tokens.issuer)

    @property
    def tokens(self) -> Any:
        return self.h.client(None).tokens

    def okta_idp(self, **kw: Any) -> idp_pb.IdentityProvider:
        fields = {
            "issuer": self.okta.issuer,
            "discovery_url": self.okta.discovery_url,
            "audience": self.okta.client_id,
            **kw,
        }
        return idp_pb.IdentityProvider(**fields)

    async def configure(self, org: str, admin: Any, idp: idp_pb.IdentityProvider) -> str:
        return str(
            (
                await admin.admin.CreateIdentityProvider(
                    pb.CreateIdentityProviderRequest(parent=org, identity_provider=idp)
                )
            ).identity_provider.name
        )

    async def new_user(self, org: str, admin: Any, external_id: str) -> str:
        return str(
            (
                await admin.admin.CreateUser(
                    pb.CreateUserRequest(parent=org, user=pb.User(external_id=external_id))
                )
            ).user.name
        )

    async def new_agent(
        self, org: str, admin: Any, sa_name: str, scopes: list[str], audiences: list[str]
    ) -> str:
        agent = (
            await admin.admin.RegisterAgent(
                pb.RegisterAgentRequest(parent=org, agent=pb.Agent(display_name=sa_name))
            )
        ).agent.name
        sa = (
            (await admin.admin.ListServiceAccounts(pb.ListServiceAccountsRequest(parent=org)))
            .service_accounts[0]
            .name
        )
        await admin.admin.CreateTrustPolicy(
            pb.CreateTrustPolicyRequest(
                parent=agent,
                trust_policy=trust.TrustPolicy(
                    kind=trust.TRUST_POLICY_KIND_WORKLOAD_TOKEN,
                    issuer=self.k8s.issuer,
                    discovery_url=self.k8s.issuer + "/.well-known/openid-configuration",
                    audience="agentauth",
                    subject=f"system:serviceaccount:agents:{sa_name}",
                    service_accounts=[sa],
                    scopes=scopes,
                    audiences=audiences,
                ),
            )
        )
        return str(agent)

    def workload(self, sa_name: str, ttl: int = 600) -> str:
        return self.k8s.issue(
            namespace="agents", service_account=sa_name, audiences=["agentauth"], ttl=ttl
        )

    def request(self, subject: str, actor: str, **kw: Any) -> tpb.ExchangeTokenRequest:
        fields: dict[str, Any] = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": subject,
            "subject_token_type": ID_TOKEN_TYPE,
            "actor_token": actor,
            "actor_token_type": JWT_TYPE,
            "organization": self.org,
            **kw,
        }
        return tpb.ExchangeTokenRequest(**{k: v for k, v in fields.items() if v is not None})

    async def exchange(self, subject: str, actor: str, **kw: Any) -> tpb.ExchangeTokenResponse:
        return await self.tokens.ExchangeToken(self.request(subject, actor, **kw))

    async def refused(
        self, subject: str, actor: str, want: tuple[type[Exception], str] = UNACCEPTABLE, **kw: Any
    ) -> Any:
        """ExchangeToken fails with exactly ``want`` and writes nothing (no issued token)."""
        before = await self.h.snapshot()
        with pytest.raises(want[0]) as err:
            await self.exchange(subject, actor, **kw)
        assert type(err.value) is want[0]
        assert err.value.reason == want[1], err.value  # type: ignore[attr-defined]
        assert await self.h.snapshot() == before
        return err.value

    async def service_account_token(self, agent_sa: str, audience: str) -> str:
        """Agent's own SA token, by workload exchange (no actor)."""
        return str(
            (
                await self.tokens.ExchangeToken(
                    tpb.ExchangeTokenRequest(
                        grant_type=TOKEN_EXCHANGE,
                        subject_token=self.workload(agent_sa),
                        subject_token_type=JWT_TYPE,
                        organization=self.org,
                        audience=[audience],
                    )
                )
            ).access_token
        )


@pytest.fixture
async def world(harness: Any) -> AsyncIterator[World]:
    async with KubernetesIssuer() as k8s, OktaIdentityProvider() as okta:
        yield await World(harness, k8s, okta).setup()


# --------------------------------------------------------------------------- happy paths


async def test_okta_id_token_and_workload_actor_make_a_delegated_token(world: World) -> None:
    id_token = world.okta.id_token(ALICE)
    actor = world.workload("o")
    resp = await world.exchange(id_token, actor)
    c = claims(resp.access_token)
    assert c["sub"] == world.user and c["org_id"] == world.org_id
    assert c["act"] == {"sub": world.agents["O"]} and c["client_id"] == world.agents["O"]
    assert re.fullmatch(r"[0-9a-f]{32}", c["txn"])
    assert c["aud"] == API and c["scope"] == "a b c" and c["iss"] == world.issuer
    assert c["exp"] <= min(claims(id_token)["exp"], claims(actor)["exp"])
    assert jwt.get_unverified_header(resp.access_token)["typ"] == "at+jwt"
    assert resp.issued_token_type == ACCESS_TYPE and resp.scope == "a b c"

    # The same chain continues by RFC 8693 sub-delegation (rule O → S).
    hop = await world.exchange(
        resp.access_token, world.workload("s"), subject_token_type=ACCESS_TYPE, scope="a"
    )
    h = claims(hop.access_token)
    assert h["sub"] == world.user and h["txn"] == c["txn"] and h["scope"] == "a"
    assert h["act"] == {"sub": world.agents["S"], "act": {"sub": world.agents["O"]}}
    assert h["exp"] <= c["exp"]

    # Each user assertion starts a new chain.
    again = claims(
        (await world.exchange(world.okta.id_token(ALICE), world.workload("o"))).access_token
    )
    assert again["txn"] != c["txn"]


async def test_same_claims_as_the_trusted_backend_delegation(world: World) -> None:
    backend = world.h.client(await world.service_account_token("b", world.issuer))
    delegated = await backend.tokens.DelegateToken(
        tpb.DelegateTokenRequest(user=world.user, agent=world.agents["O"], audience=[API])
    )
    asserted = await world.exchange(world.okta.id_token(ALICE), world.workload("o"))
    a, b = claims(delegated.access_token), claims(asserted.access_token)
    assert set(a) == set(b)
    for name in ("sub", "act", "client_id", "aud", "scope", "org_id", "iss"):
        assert a[name] == b[name], name


async def test_org_from_client_id_and_narrowed_scope(world: World) -> None:
    resp = await world.exchange(
        world.okta.id_token(ALICE),
        world.workload("o"),
        organization=None,
        client_id=world.agents["O"],
        scope="b",
        audience=[API],
    )
    assert claims(resp.access_token)["scope"] == "b"


async def test_over_http_caller_supplied_act_and_may_act_are_ignored(world: World) -> None:
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": world.okta.id_token(ALICE),
        "subject_token_type": ID_TOKEN_TYPE,
        "actor_token": world.workload("o"),
        "actor_token_type": JWT_TYPE,
        "organization": world.org,
        "act": json.dumps({"sub": "orgs/x/agents/root"}),
        "may_act": json.dumps({"sub": "attacker"}),
        "sub": "orgs/x/users/admin",
    }
    status, headers, body = await post_form(world.h.http + "/oauth2/token", form)
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    assert body["issued_token_type"] == ACCESS_TYPE
    c = claims(body["access_token"])
    assert c["act"] == {"sub": world.agents["O"]} and c["sub"] == world.user


async def test_entra_id_token_matched_on_oid_with_tenant_pinned(world: World) -> None:
    upn = "alice@contoso.example"
    async with EntraIdentityProvider() as entra:
        org, admin, _ = await world.h.new_org("Contoso")
        user = await world.new_user(org, admin, entra.object_id(upn))
        agent = await world.new_agent(org, admin, "o", ["a"], [API])
        await world.configure(
            org,
            admin,
            idp_pb.IdentityProvider(
                issuer=entra.issuer,
                discovery_url=entra.discovery_url,
                audience=entra.client_id,
                subject_claim="oid",
                claim_equals={"tid": entra.tenant_id},
            ),
        )
        id_token = entra.id_token(upn)
        assert claims(id_token)["sub"] != entra.object_id(upn)  # sub is pairwise
        resp = await world.exchange(id_token, world.workload("o"), organization=org)
        c = claims(resp.access_token)
        assert c["sub"] == user and c["act"] == {"sub": agent}

        world.org = org  # refusals below are about this org
        # Another tenant's token (same keys, another tid) is not this org's user.
        await world.refused(
            entra.id_token(upn, extra_claims={"tid": "00000000-0000-0000-0000-000000000000"}),
            world.workload("o"),
        )
        # A user created with the pairwise sub does not match: only oid identifies.
        other = "bob@contoso.example"
        await world.new_user(org, admin, entra.pairwise_sub(other, entra.client_id))
        await world.refused(entra.id_token(other), world.workload("o"))


async def test_agents_own_service_account_token_as_actor(world: World) -> None:
    actor = await world.service_account_token("b", world.issuer)
    resp = await world.exchange(world.okta.id_token(ALICE), actor, audience=[API])
    c = claims(resp.access_token)
    assert c["sub"] == world.user and c["act"] == {"sub": world.agents["B"]}
    assert c["scope"] == "a" and c["exp"] <= claims(actor)["exp"]


async def test_okta_access_token_matched_on_uid_and_typed_at_jwt(world: World) -> None:
    await world.admin.admin.DeleteIdentityProvider(pb.DeleteIdentityProviderRequest(name=world.idp))
    await world.configure(
        world.org, world.admin, world.okta_idp(audience=OKTA_API_AUDIENCE, subject_claim="uid")
    )
    access = world.okta.access_token(ALICE, headers={"typ": "at+jwt"})
    assert claims(access)["sub"] == ALICE  # Okta's access-token sub is the login
    resp = await world.exchange(access, world.workload("o"), subject_token_type=ACCESS_TYPE)
    assert claims(resp.access_token)["sub"] == world.user
    # RFC 8725 §3.11: the same at+jwt token declared as an ID token is refused.
    await world.refused(access, world.workload("o"), subject_token_type=ID_TOKEN_TYPE)
    await world.refused(access, world.workload("o"), subject_token_type=JWT_TYPE)


# --------------------------------------------------------------------------- refusals


def _hs256_with_public_key(okta: OktaIdentityProvider, token: str) -> str:
    """RFC 8725 §2.1 algorithm confusion: HMAC keyed with the RSA public key's PEM."""
    pem = (
        okta._keys[-1]  # test-only access to the emulator's key
        .private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = b64url(json.dumps({"alg": "HS256", "kid": okta.key_id}).encode())
    body = token.split(".")[1]
    signing_input = f"{header}.{body}".encode()
    return f"{header}.{body}.{b64url(hmac.new(pem, signing_input, hashlib.sha256).digest())}"


SUBJECT_ATTACKS = {
    "wrong-aud": lambda w: w.okta.id_token(ALICE, extra_claims={"aud": "0oaSomeOtherClient"}),
    "extra-aud": lambda w: w.okta.id_token(
        ALICE, extra_claims={"aud": [w.okta.client_id, "0oaSomeOtherClient"]}
    ),
    "expired": lambda w: w.okta.id_token(
        ALICE, extra_claims={"exp": int(time.time()) - 120, "iat": int(time.time()) - 3720}
    ),
    "not-yet-valid": lambda w: w.okta.id_token(ALICE, extra_claims={"nbf": int(time.time()) + 600}),
    "no-exp": lambda w: w.okta.id_token(ALICE, extra_claims={"exp": None}),
    "no-sub": lambda w: w.okta.id_token(ALICE, extra_claims={"sub": None}),
    "hs256-public-key": lambda w: _hs256_with_public_key(w.okta, w.okta.id_token(ALICE)),
    "alg-none": lambda w: (
        b64url(b'{"alg":"none"}') + "." + w.okta.id_token(ALICE).split(".")[1] + "."
    ),
    "at+jwt-id-token": lambda w: w.okta.id_token(ALICE, headers={"typ": "at+jwt"}),
    "jku-header": lambda w: w.okta.id_token(
        ALICE, headers={"kid": "elsewhere", "jku": "https://evil.example/jwks"}
    ),
    "unknown-user": lambda w: w.okta.id_token("mallory@example.com"),
}


@pytest.mark.parametrize("case", sorted(SUBJECT_ATTACKS))
async def test_rfc8693_2_2_2_unacceptable_subject_token(world: World, case: str) -> None:
    await world.refused(SUBJECT_ATTACKS[case](world), world.workload("o"))


async def test_token_from_another_issuer(world: World) -> None:
    async with OktaIdentityProvider(client_id=world.okta.client_id) as impostor:
        impostor._users = dict(world.okta._users)  # the same user id, another issuer
        await world.refused(impostor.id_token(ALICE), world.workload("o"))
        # Its token naming our issuer's iss is signed with keys we never trusted.
        forged = impostor.id_token(ALICE, extra_claims={"iss": world.okta.issuer})
        await world.refused(forged, world.workload("o"))


async def test_suspended_user(world: World) -> None:
    await world.admin.admin.UpdateUserStatus(
        pb.UpdateUserStatusRequest(name=world.user, state=pb.USER_STATE_SUSPENDED)
    )
    error = await world.refused(world.okta.id_token(ALICE), world.workload("o"))
    unknown = await world.refused(world.okta.id_token("nobody@example.com"), world.workload("o"))
    assert (error.code, error.reason, error.message) == (
        unknown.code,
        unknown.reason,
        unknown.message,
    )


async def test_user_of_another_org(world: World) -> None:
    """The same external id in org B, whose IdP it is; org C (named) has none."""
    org_b, admin_b, _ = await world.h.new_org("B")
    await world.new_user(org_b, admin_b, world.okta.user_id(ALICE))
    await world.configure(org_b, admin_b, world.okta_idp())
    org_c, admin_c, _ = await world.h.new_org("C")
    await world.new_agent(org_c, admin_c, "c-agent", ["a"], [API])
    await world.refused(world.okta.id_token(ALICE), world.workload("c-agent"), organization=org_c)
    # Naming B with C's agent as actor: the actor is not B's.
    await world.refused(world.okta.id_token(ALICE), world.workload("c-agent"), organization=org_b)


async def test_no_identity_provider_configured(world: World) -> None:
    await world.admin.admin.DeleteIdentityProvider(pb.DeleteIdentityProviderRequest(name=world.idp))
    # The snapshot is dropped at once: the deleted IdP's tokens stop working now.
    await world.refused(world.okta.id_token(ALICE), world.workload("o"))


@pytest.mark.parametrize("declared", [ID_TOKEN_TYPE, JWT_TYPE])
async def test_rfc8693_3_our_own_token_with_a_lying_subject_token_type(
    world: World, declared: str
) -> None:
    ours = (await world.exchange(world.okta.id_token(ALICE), world.workload("o"))).access_token
    await world.refused(ours, world.workload("s"), subject_token_type=declared)


@pytest.mark.parametrize("declared", [REFRESH_TYPE, "urn:ietf:params:oauth:token-type:saml2", ""])
async def test_rfc8693_2_2_2_refresh_token_type_is_unacceptable(
    world: World, declared: str
) -> None:
    await world.refused(
        world.okta.id_token(ALICE), world.workload("o"), subject_token_type=declared
    )


async def test_actor_from_another_org(world: World) -> None:
    org_b, admin_b, _ = await world.h.new_org("B")
    await world.new_agent(org_b, admin_b, "b-only", ["a"], [API])
    await world.refused(world.okta.id_token(ALICE), world.workload("b-only"))
    # Nor one of our SA tokens issued in org B.
    b_agent = await world.new_agent(org_b, admin_b, "b-self", ["a"], [world.issuer])
    b_token = (
        await world.tokens.ExchangeToken(
            tpb.ExchangeTokenRequest(
                grant_type=TOKEN_EXCHANGE,
                subject_token=world.workload("b-self"),
                subject_token_type=JWT_TYPE,
                organization=org_b,
            )
        )
    ).access_token
    assert claims(b_token)["client_id"] == b_agent
    await world.refused(world.okta.id_token(ALICE), b_token)


async def test_actor_that_is_a_delegated_token(world: World) -> None:
    delegated = (await world.exchange(world.okta.id_token(ALICE), world.workload("o"))).access_token
    await world.refused(world.okta.id_token(ALICE), delegated)


async def test_actor_sa_token_not_issued_for_agentauth(world: World) -> None:
    api_token = await world.service_account_token("b", API)  # aud = the API, not us
    await world.refused(world.okta.id_token(ALICE), api_token, audience=[API])


async def test_actor_must_be_the_named_client(world: World) -> None:
    await world.refused(
        world.okta.id_token(ALICE), world.workload("o"), client_id=world.agents["S"]
    )


async def test_organization_and_client_id_must_agree(world: World) -> None:
    org_b, _, _ = await world.h.new_org("B")
    await world.refused(
        world.okta.id_token(ALICE),
        world.workload("o"),
        want=(InvalidArgumentError, "INVALID_REQUEST"),
        organization=org_b,
        client_id=world.agents["O"],
    )


async def test_scope_beyond_the_agents_policies_is_invalid_scope(world: World) -> None:
    await world.refused(
        world.okta.id_token(ALICE),
        world.workload("s"),
        want=(InvalidArgumentError, "INVALID_SCOPE"),
        scope="c",
    )


async def test_http_refusal_is_invalid_request(world: World) -> None:
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": world.okta.id_token("mallory@example.com"),
        "subject_token_type": ID_TOKEN_TYPE,
        "actor_token": world.workload("o"),
        "actor_token_type": JWT_TYPE,
        "organization": world.org,
    }
    before = await world.h.snapshot()
    status, headers, body = await post_form(world.h.http + "/oauth2/token", form)
    assert (status, body["error"]) == (400, "invalid_request")
    assert headers["Cache-Control"] == "no-store"
    assert await world.h.snapshot() == before
