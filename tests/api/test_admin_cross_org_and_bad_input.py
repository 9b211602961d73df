"""Every AdminService RPC: cross-org probes and malformed input.

OWASP API1:2023 (BOLA): org A's admin naming org B's resources must get exactly
the answer a missing resource gets, and change nothing. Malformed input gets
INVALID_ARGUMENT with one ErrorInfo and leaves storage untouched.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from agentauth import AgentAuthError, InvalidArgumentError, NotFoundError
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import identity_provider_pb2 as idp_pb
from agentauth.v1 import tool_policy_pb2 as tool_policy_pb
from agentauth.v1 import trust_policy_pb2 as trust_pb
from google.protobuf import duration_pb2, field_mask_pb2

Names = dict[str, str]
# RPC name → request built from the names of one org's resources.
ADDRESSED: dict[str, Callable[[Names], Any]] = {
    "GetOrganization": lambda n: pb.GetOrganizationRequest(name=n["org"]),
    "CreateUser": lambda n: pb.CreateUserRequest(parent=n["org"], user=pb.User(external_id="p")),
    "GetUser": lambda n: pb.GetUserRequest(name=n["user"]),
    "ListUsers": lambda n: pb.ListUsersRequest(parent=n["org"]),
    "UpdateUserStatus": lambda n: pb.UpdateUserStatusRequest(
        name=n["user"], state=pb.USER_STATE_SUSPENDED
    ),
    "UpdateUserGroups": lambda n: pb.UpdateUserGroupsRequest(name=n["user"], groups=["probe"]),
    "DeleteUser": lambda n: pb.DeleteUserRequest(name=n["user"]),
    "RegisterAgent": lambda n: pb.RegisterAgentRequest(
        parent=n["org"], agent=pb.Agent(display_name="p")
    ),
    "GetAgent": lambda n: pb.GetAgentRequest(name=n["agent"]),
    "ListAgents": lambda n: pb.ListAgentsRequest(parent=n["org"]),
    "DisableAgent": lambda n: pb.DisableAgentRequest(name=n["agent"]),
    "CreateServiceAccount": lambda n: pb.CreateServiceAccountRequest(
        parent=n["org"], service_account=pb.ServiceAccount(display_name="p", purpose="probe")
    ),
    "GetServiceAccount": lambda n: pb.GetServiceAccountRequest(name=n["sa"]),
    "ListServiceAccounts": lambda n: pb.ListServiceAccountsRequest(parent=n["org"]),
    "DisableServiceAccount": lambda n: pb.DisableServiceAccountRequest(name=n["sa"]),
    "CreateApiKey": lambda n: pb.CreateApiKeyRequest(
        parent=n["org"], api_key=pb.ApiKey(display_name="p")
    ),
    "ListApiKeys": lambda n: pb.ListApiKeysRequest(parent=n["org"]),
    "RevokeApiKey": lambda n: pb.RevokeApiKeyRequest(name=n["key"]),
    "UpdateOrganization": lambda n: pb.UpdateOrganizationRequest(
        organization=pb.Organization(name=n["org"], display_name="probe"),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
    ),
    "CreateTrustPolicy": lambda n: pb.CreateTrustPolicyRequest(
        parent=n["agent"],
        trust_policy=trust_pb.TrustPolicy(
            kind=trust_pb.TRUST_POLICY_KIND_PRIVATE_KEY_JWT,
            jwks_json=json.dumps({"keys": [PUBLIC_JWK]}),
            service_accounts=[n["sa"]],
            audiences=["https://api.example"],
        ),
    ),
    "GetTrustPolicy": lambda n: pb.GetTrustPolicyRequest(name=n["policy"]),
    "ListTrustPolicies": lambda n: pb.ListTrustPoliciesRequest(parent=n["agent"]),
    "DeleteTrustPolicy": lambda n: pb.DeleteTrustPolicyRequest(name=n["policy"]),
    "CreateDelegationRule": lambda n: pb.CreateDelegationRuleRequest(
        parent=n["org"],
        delegation_rule=pb.DelegationRule(delegator=n["agent2"], delegate=n["agent"]),
    ),
    "ListDelegationRules": lambda n: pb.ListDelegationRulesRequest(parent=n["org"]),
    "DeleteDelegationRule": lambda n: pb.DeleteDelegationRuleRequest(name=n["rule"]),
    "CreateToolPolicyRule": lambda n: pb.CreateToolPolicyRuleRequest(
        parent=n["org"],
        tool_policy_rule=tool_policy_pb.ToolPolicyRule(tool="github.*", agents=[n["agent"]]),
    ),
    "GetToolPolicyRule": lambda n: pb.GetToolPolicyRuleRequest(name=n["tool_rule"]),
    "ListToolPolicyRules": lambda n: pb.ListToolPolicyRulesRequest(parent=n["org"]),
    "DeleteToolPolicyRule": lambda n: pb.DeleteToolPolicyRuleRequest(name=n["tool_rule"]),
    "CreateIdentityProvider": lambda n: pb.CreateIdentityProviderRequest(
        parent=n["org"],
        identity_provider=idp_pb.IdentityProvider(
            issuer="https://probe.example/oauth2/default",
            jwks_json=json.dumps({"keys": [PUBLIC_JWK]}),
            audience="probe",
        ),
    ),
    "GetIdentityProvider": lambda n: pb.GetIdentityProviderRequest(name=n["idp"]),
    "ListIdentityProviders": lambda n: pb.ListIdentityProvidersRequest(parent=n["org"]),
    "DeleteIdentityProvider": lambda n: pb.DeleteIdentityProviderRequest(name=n["idp"]),
}
PUBLIC_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    "kid": "fixture-key",
    "alg": "ES256",
}


def _missing(names: Names) -> Names:
    """The same shapes with ids that exist nowhere."""
    fresh = {k: v.rsplit("/", 1)[0] + "/" + uuid.uuid4().hex for k, v in names.items()}
    return fresh


def _error(exc: AgentAuthError) -> tuple[Any, ...]:
    return (exc.code, exc.reason, exc.domain, exc.message, dict(exc.metadata))


async def _call(client, rpc: str, request) -> Any:  # type: ignore[no-untyped-def]
    return await getattr(client.admin, rpc)(request)


def test_every_admin_rpc_is_covered_here() -> None:
    service = pb.DESCRIPTOR.services_by_name["AdminService"]
    platform_level = {"CreateOrganization", "ListOrganizations", "DeleteOrganization"}
    assert {m.name for m in service.methods} == set(ADDRESSED) | platform_level


@pytest.mark.parametrize("rpc", sorted(ADDRESSED))
async def test_cross_org_probe_is_indistinguishable_from_missing(harness, rpc: str) -> None:
    _, a, _ = await harness.new_org("A")
    org_b, b, _ = await harness.new_org("B")
    b_names = await harness.populate(org_b, b)
    before = await harness.snapshot()

    with pytest.raises(NotFoundError) as cross:
        await _call(a, rpc, ADDRESSED[rpc](b_names))
    with pytest.raises(NotFoundError) as missing:
        await _call(a, rpc, ADDRESSED[rpc](_missing(b_names)))
    assert _error(cross.value) == _error(missing.value)
    assert cross.value.reason == "RESOURCE_NOT_FOUND"
    assert org_b.split("/")[1] not in cross.value.message
    assert await harness.snapshot() == before


async def test_delete_organization_cross_org(harness) -> None:
    org_a, a, _ = await harness.new_org("A")
    org_b, _, _ = await harness.new_org("B")
    from agentauth import PermissionDeniedError

    before = await harness.snapshot()
    with pytest.raises(PermissionDeniedError):  # only platform admins delete orgs
        await a.admin.DeleteOrganization(pb.DeleteOrganizationRequest(name=org_b))
    with pytest.raises(NotFoundError):
        await harness.platform.admin.DeleteOrganization(
            pb.DeleteOrganizationRequest(name="orgs/" + uuid.uuid4().hex)
        )
    assert await harness.snapshot() == before


# ----------------------------------------------------------------- malformed input

BAD_NAMES = [
    "",
    "orgs/",
    "orgs/" + "a" * 31,
    "orgs/" + "A" * 32,
    "orgs/" + "a" * 10_000,
    "orgs/../../etc/passwd",
    "orgs/' OR 1=1--",
    "orgs/%00",
    "users/" + "a" * 32,
    "/orgs/" + "a" * 32,
]
HEX = "0123456789abcdef" * 2


def _bad_requests(org: str) -> list[tuple[str, Any]]:
    """(rpc, request) pairs that must all be INVALID_ARGUMENT."""
    out: list[tuple[str, Any]] = []
    long = "x" * 201
    for bad in BAD_NAMES:
        out += [
            ("GetOrganization", pb.GetOrganizationRequest(name=bad)),
            ("DeleteOrganization", pb.DeleteOrganizationRequest(name=bad)),
            ("CreateUser", pb.CreateUserRequest(parent=bad, user=pb.User(external_id="x"))),
            ("ListUsers", pb.ListUsersRequest(parent=bad)),
            (
                "RegisterAgent",
                pb.RegisterAgentRequest(parent=bad, agent=pb.Agent(display_name="a")),
            ),
            ("ListAgents", pb.ListAgentsRequest(parent=bad)),
            (
                "CreateServiceAccount",
                pb.CreateServiceAccountRequest(
                    parent=bad, service_account=pb.ServiceAccount(display_name="s", purpose="p")
                ),
            ),
            ("ListServiceAccounts", pb.ListServiceAccountsRequest(parent=bad)),
            ("ListApiKeys", pb.ListApiKeysRequest(parent=bad or "orgs/")),
            (
                "CreateApiKey",
                pb.CreateApiKeyRequest(parent=bad or "orgs/", api_key=pb.ApiKey(display_name="k")),
            ),
        ]
        child = bad.replace("orgs/", f"{org}/users/", 1) if bad.startswith("orgs/") else bad
        out += [
            ("GetUser", pb.GetUserRequest(name=child)),
            (
                "UpdateUserStatus",
                pb.UpdateUserStatusRequest(name=child, state=pb.USER_STATE_ACTIVE),
            ),
            ("DeleteUser", pb.DeleteUserRequest(name=child)),
            ("GetAgent", pb.GetAgentRequest(name=child.replace("/users/", "/agents/"))),
            ("DisableAgent", pb.DisableAgentRequest(name=child.replace("/users/", "/agents/"))),
            (
                "GetServiceAccount",
                pb.GetServiceAccountRequest(name=child.replace("/users/", "/serviceAccounts/")),
            ),
            (
                "DisableServiceAccount",
                pb.DisableServiceAccountRequest(name=child.replace("/users/", "/serviceAccounts/")),
            ),
            ("RevokeApiKey", pb.RevokeApiKeyRequest(name=child.replace("/users/", "/apiKeys/"))),
            (
                "GetIdentityProvider",
                pb.GetIdentityProviderRequest(
                    name=child.replace("/users/", "/identityProviders/")
                ),
            ),
            (
                "DeleteIdentityProvider",
                pb.DeleteIdentityProviderRequest(
                    name=child.replace("/users/", "/identityProviders/")
                ),
            ),
        ]
        out += [
            ("ListIdentityProviders", pb.ListIdentityProvidersRequest(parent=bad)),
            (
                "CreateIdentityProvider",
                pb.CreateIdentityProviderRequest(
                    parent=bad,
                    identity_provider=idp_pb.IdentityProvider(
                        issuer="https://idp.example", jwks_json="{}", audience="a"
                    ),
                ),
            ),
        ]
    # Trust policies: every rule of a policy is checked before anything is stored.
    agent = f"{org}/agents/{HEX}"

    def policy(**kw: Any) -> Any:
        base: dict[str, Any] = {
            "kind": trust_pb.TRUST_POLICY_KIND_WORKLOAD_TOKEN,
            "issuer": "https://issuer.example",
            "discovery_url": "https://issuer.example/.well-known/openid-configuration",
            "audience": "agentauth",
            "subject": "system:serviceaccount:ns:sa",
            "service_accounts": [f"{org}/serviceAccounts/{HEX}"],
            "audiences": ["https://api.example"],
        }
        base.update(kw)
        return pb.CreateTrustPolicyRequest(parent=agent, trust_policy=trust_pb.TrustPolicy(**base))

    out += [
        ("CreateTrustPolicy", policy(kind=trust_pb.TRUST_POLICY_KIND_UNSPECIFIED)),
        ("CreateTrustPolicy", policy(discovery_url="http://issuer.example/.well-known/openid-configuration")),
        ("CreateTrustPolicy", policy(discovery_url="https://user:pw@issuer.example/x")),
        ("CreateTrustPolicy", policy(discovery_url="", jwks_json="")),
        ("CreateTrustPolicy", policy(jwks_json=json.dumps({"keys": [PUBLIC_JWK]}))),  # both
        ("CreateTrustPolicy", policy(audience="")),
        ("CreateTrustPolicy", policy(subject="")),  # an unpinned workload
        ("CreateTrustPolicy", policy(audiences=["*"])),
        ("CreateTrustPolicy", policy(audiences=[])),
        ("CreateTrustPolicy", policy(algorithms=["none"])),
        ("CreateTrustPolicy", policy(algorithms=["HS256"])),
        ("CreateTrustPolicy", policy(scopes=["bad scope"])),
        ("CreateTrustPolicy", policy(service_accounts=[])),
        ("CreateTrustPolicy", policy(service_accounts=["orgs/" + HEX + "/serviceAccounts/" + HEX])),
        ("CreateTrustPolicy", policy(claim_equals={"a..b": "x"})),
        ("CreateTrustPolicy", policy(
            kind=trust_pb.TRUST_POLICY_KIND_PRIVATE_KEY_JWT, issuer="", discovery_url="",
            audience="", subject="", jwks_json=json.dumps({"keys": [dict(PUBLIC_JWK, d="secret")]}))),
        ("CreateTrustPolicy", policy(
            kind=trust_pb.TRUST_POLICY_KIND_PRIVATE_KEY_JWT, issuer="", discovery_url="",
            audience="", subject="", jwks_json='{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')),
        ("CreateTrustPolicy", policy(
            kind=trust_pb.TRUST_POLICY_KIND_PRIVATE_KEY_JWT, issuer="", discovery_url="",
            audience="", subject="", jwks_json='{"keys": [], "keys": [1]}')),
        ("CreateTrustPolicy", pb.CreateTrustPolicyRequest(parent=f"{org}/users/{HEX}")),
        ("GetTrustPolicy", pb.GetTrustPolicyRequest(name=f"{agent}/trustPolicies/nope")),
        ("DeleteTrustPolicy", pb.DeleteTrustPolicyRequest(name=f"{agent}/policies/{HEX}")),
        ("ListTrustPolicies", pb.ListTrustPoliciesRequest(parent=org)),
        ("UpdateOrganization", pb.UpdateOrganizationRequest(organization=pb.Organization(name=org))),
        ("UpdateOrganization", pb.UpdateOrganizationRequest(
            organization=pb.Organization(name=org), update_mask=field_mask_pb2.FieldMask(paths=["state"]))),
        ("UpdateOrganization", pb.UpdateOrganizationRequest(
            organization=pb.Organization(name=org, access_token_ttl=duration_pb2.Duration(seconds=3600)),
            update_mask=field_mask_pb2.FieldMask(paths=["access_token_ttl"]))),
        ("UpdateOrganization", pb.UpdateOrganizationRequest(
            organization=pb.Organization(name=org), update_mask=field_mask_pb2.FieldMask(paths=["access_token_ttl"]))),
    ]
    # Delegation rules.
    out += [
        ("CreateDelegationRule", pb.CreateDelegationRuleRequest(parent=org)),
        ("CreateDelegationRule", pb.CreateDelegationRuleRequest(
            parent=org, delegation_rule=pb.DelegationRule(delegator=agent, delegate=agent))),
        ("CreateDelegationRule", pb.CreateDelegationRuleRequest(
            parent=org, delegation_rule=pb.DelegationRule(
                delegator=agent, delegate="orgs/" + HEX + "/agents/" + "1" * 32))),
        ("CreateDelegationRule", pb.CreateDelegationRuleRequest(
            parent=org, delegation_rule=pb.DelegationRule(delegator=f"{org}/users/{HEX}", delegate=agent))),
        ("DeleteDelegationRule", pb.DeleteDelegationRuleRequest(name=f"{org}/rules/{HEX}")),
        ("ListDelegationRules", pb.ListDelegationRulesRequest(parent=agent)),
        ("UpdateOrganization", pb.UpdateOrganizationRequest(
            organization=pb.Organization(name=org, max_delegation_depth=99),
            update_mask=field_mask_pb2.FieldMask(paths=["max_delegation_depth"]))),
    ]
    # Identity providers: every rule is checked before the one-per-org check.
    def idp(**kw: Any) -> Any:
        base: dict[str, Any] = {
            "issuer": "https://login.example/tenant/v2.0",
            "discovery_url": "https://login.example/tenant/v2.0/.well-known/openid-configuration",
            "audience": "client-id",
        }
        base.update(kw)
        return pb.CreateIdentityProviderRequest(
            parent=org, identity_provider=idp_pb.IdentityProvider(**base)
        )

    out += [
        ("CreateIdentityProvider", pb.CreateIdentityProviderRequest(parent=org)),
        ("CreateIdentityProvider", idp(issuer="")),
        ("CreateIdentityProvider", idp(issuer="http://login.example/tenant/v2.0")),
        ("CreateIdentityProvider", idp(issuer="https://login.example/t?x=1")),
        ("CreateIdentityProvider", idp(issuer="https://user:pw@login.example/t")),
        ("CreateIdentityProvider", idp(issuer=" https://login.example/t")),
        ("CreateIdentityProvider", idp(discovery_url="")),  # neither keys source
        ("CreateIdentityProvider", idp(jwks_json=json.dumps({"keys": [PUBLIC_JWK]}))),  # both
        ("CreateIdentityProvider", idp(discovery_url="ftp://login.example/x")),
        ("CreateIdentityProvider", idp(discovery_url="", jwks_json='{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}')),
        ("CreateIdentityProvider", idp(discovery_url="", jwks_json=json.dumps({"keys": [dict(PUBLIC_JWK, d="x")]}))),
        ("CreateIdentityProvider", idp(audience="")),
        ("CreateIdentityProvider", idp(audience="*")),
        ("CreateIdentityProvider", idp(audience="has space")),
        ("CreateIdentityProvider", idp(subject_claim="email")),
        ("CreateIdentityProvider", idp(subject_claim="preferred_username")),
        ("CreateIdentityProvider", idp(algorithms=["HS256"])),
        ("CreateIdentityProvider", idp(algorithms=["none"])),
        ("CreateIdentityProvider", idp(claim_equals={"a..b": "x"})),
        ("CreateIdentityProvider", idp(claim_equals={"tid": ""})),
        ("CreateIdentityProvider", pb.CreateIdentityProviderRequest(
            parent=f"{org}/agents/{HEX}", identity_provider=idp().identity_provider)),
        ("GetIdentityProvider", pb.GetIdentityProviderRequest(name=f"{org}/identityProviders/nope")),
        ("GetIdentityProvider", pb.GetIdentityProviderRequest(name=f"{org}/trustPolicies/{HEX}")),
        ("DeleteIdentityProvider", pb.DeleteIdentityProviderRequest(name=f"{org}/idps/{HEX}")),
        ("DeleteIdentityProvider", pb.DeleteIdentityProviderRequest(name="")),
        ("ListIdentityProviders", pb.ListIdentityProvidersRequest(parent=f"{org}/users/{HEX}")),
        ("ListIdentityProviders", pb.ListIdentityProvidersRequest(parent=org, page_token="x")),
    ]
    # Tool policy rules (field-by-field checks: tests/api/test_tool_policy_rules.py).
    def tool_rule(**kw: Any) -> Any:
        return pb.CreateToolPolicyRuleRequest(
            parent=org, tool_policy_rule=tool_policy_pb.ToolPolicyRule(**kw)
        )

    out += [
        ("CreateToolPolicyRule", pb.CreateToolPolicyRuleRequest(parent=org)),
        ("CreateToolPolicyRule", tool_rule(tool="github.create_*")),
        ("CreateToolPolicyRule", tool_rule(tool="*", agents=[f"{org}/users/{HEX}"])),
        ("CreateToolPolicyRule", tool_rule(tool="*", agents=[agent])),  # no such agent
        ("CreateToolPolicyRule", tool_rule(tool="*", groups=["Admins"])),
        ("CreateToolPolicyRule", tool_rule(
            tool="*", constraints=[tool_policy_pb.ArgumentConstraint(value="{owner}", allow=["a"])])),
        ("CreateToolPolicyRule", tool_rule(
            tool="*", constraints=[tool_policy_pb.ArgumentConstraint(value="{/owner}")])),
        ("CreateToolPolicyRule", pb.CreateToolPolicyRuleRequest(
            parent=agent, tool_policy_rule=tool_policy_pb.ToolPolicyRule(tool="*"))),
        ("GetToolPolicyRule", pb.GetToolPolicyRuleRequest(name=f"{org}/toolPolicyRules/nope")),
        ("GetToolPolicyRule", pb.GetToolPolicyRuleRequest(name=f"{org}/delegationRules/{HEX}")),
        ("DeleteToolPolicyRule", pb.DeleteToolPolicyRuleRequest(name="")),
        ("ListToolPolicyRules", pb.ListToolPolicyRulesRequest(parent=agent)),
        ("ListToolPolicyRules", pb.ListToolPolicyRulesRequest(parent=org, page_token="x")),
        ("UpdateUserGroups", pb.UpdateUserGroupsRequest(name=f"{org}/users/{HEX}", groups=["a b"])),
        ("UpdateUserGroups", pb.UpdateUserGroupsRequest(name=f"{org}/agents/{HEX}")),
        ("CreateUser", pb.CreateUserRequest(parent=org, user=pb.User(external_id="g", groups=["-x"]))),
    ]
    # Wrong collection for the RPC.
    out.append(("GetUser", pb.GetUserRequest(name=f"{org}/agents/{HEX}")))
    out.append(("RevokeApiKey", pb.RevokeApiKeyRequest(name=f"{org}/users/{HEX}")))
    # Field rules.
    out += [
        ("CreateOrganization", pb.CreateOrganizationRequest()),
        (
            "CreateOrganization",
            pb.CreateOrganizationRequest(organization=pb.Organization(display_name=long)),
        ),
        (
            "CreateOrganization",
            pb.CreateOrganizationRequest(organization=pb.Organization(display_name="a\x00b")),
        ),
        (
            "CreateOrganization",
            pb.CreateOrganizationRequest(organization=pb.Organization(display_name=" pad ")),
        ),
        (
            "CreateOrganization",
            pb.CreateOrganizationRequest(
                organization=pb.Organization(display_name="ok"), request_id="' OR 1=1--"
            ),
        ),
        ("CreateUser", pb.CreateUserRequest(parent=org)),
        ("CreateUser", pb.CreateUserRequest(parent=org, user=pb.User(external_id="has space"))),
        ("CreateUser", pb.CreateUserRequest(parent=org, user=pb.User(external_id="e" * 256))),
        (
            "CreateUser",
            pb.CreateUserRequest(parent=org, user=pb.User(external_id="ok", email="not-an-email")),
        ),
        (
            "CreateUser",
            pb.CreateUserRequest(parent=org, user=pb.User(external_id="ok", display_name=long)),
        ),
        (
            "CreateUser",
            pb.CreateUserRequest(parent=org, user=pb.User(external_id="ok"), request_id="x" * 65),
        ),
        ("UpdateUserStatus", pb.UpdateUserStatusRequest(name=f"{org}/users/{HEX}")),
        ("RegisterAgent", pb.RegisterAgentRequest(parent=org, agent=pb.Agent())),
        (
            "RegisterAgent",
            pb.RegisterAgentRequest(
                parent=org, agent=pb.Agent(display_name="a", description="d" * 2001)
            ),
        ),
        (
            "CreateServiceAccount",
            pb.CreateServiceAccountRequest(
                parent=org, service_account=pb.ServiceAccount(display_name="s", purpose="Has Caps")
            ),
        ),
        (
            "CreateServiceAccount",
            pb.CreateServiceAccountRequest(
                parent=org, service_account=pb.ServiceAccount(display_name="s")
            ),
        ),
        ("CreateApiKey", pb.CreateApiKeyRequest(parent=org)),
        ("ListUsers", pb.ListUsersRequest(parent=org, page_size=-1)),
        ("ListUsers", pb.ListUsersRequest(parent=org, page_token="garbage")),
        ("ListUsers", pb.ListUsersRequest(parent=org, page_token="A" * 5000)),
        ("ListOrganizations", pb.ListOrganizationsRequest(page_size=-5)),
        ("ListOrganizations", pb.ListOrganizationsRequest(page_token="%%%")),
    ]
    return out


async def test_malformed_input_is_invalid_argument_and_changes_nothing(harness) -> None:
    org, _, _ = await harness.new_org()
    await harness.populate(org, harness.platform)
    before = await harness.snapshot()
    cases = _bad_requests(org)
    assert len(cases) > 150
    failures = []
    for rpc, request in cases:
        try:
            await _call(harness.platform, rpc, request)
        except InvalidArgumentError as exc:
            assert exc.domain == "agentauth"
            assert exc.reason.isupper() and exc.reason.replace("_", "").isalpha()
            continue
        except AgentAuthError as exc:
            failures.append((rpc, str(request)[:80], exc.code, exc.reason))
            continue
        failures.append((rpc, str(request)[:80], "succeeded"))
    assert failures == []
    assert await harness.snapshot() == before


async def test_oversized_message_is_refused_by_transport(harness) -> None:
    from agentauth import ResourceExhaustedError

    huge = pb.CreateOrganizationRequest(organization=pb.Organization(display_name="x" * (5 << 20)))
    before = await harness.snapshot()
    with pytest.raises((ResourceExhaustedError, AgentAuthError)) as err:
        await harness.platform.admin.CreateOrganization(huge)
    assert err.value.code.name == "RESOURCE_EXHAUSTED"
    assert await harness.snapshot() == before
