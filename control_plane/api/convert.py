"""Domain views → protobuf messages. The only place that knows both."""

from __future__ import annotations

import datetime as dt

import agentauth.v1.admin_pb2 as pb
import agentauth.v1.identity_provider_pb2 as idp_pb
import agentauth.v1.tool_policy_pb2 as tool_policy_pb
import agentauth.v1.trust_policy_pb2 as trust_pb
from google.protobuf import duration_pb2, timestamp_pb2

from control_plane.domain import names
from control_plane.domain.entities import (
    AgentView,
    ApiKeyView,
    IdentityProviderView,
    OrganizationView,
    ServiceAccountView,
    ToolPolicyRuleView,
    TrustPolicyView,
    UserView,
)
from control_plane.domain.identity_provider import IdentityProviderSpec
from control_plane.domain.tool_policy import ToolRuleSpec
from control_plane.domain.trust import TrustPolicySpec


def ts(value: dt.datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def organization(o: OrganizationView) -> pb.Organization:
    return pb.Organization(
        name=names.org_name(o.id),
        display_name=o.display_name,
        state=f"ORGANIZATION_STATE_{o.state}",
        create_time=ts(o.create_time),
        update_time=ts(o.update_time),
        access_token_ttl=duration_pb2.Duration(seconds=o.access_token_ttl_seconds),
        max_delegation_depth=o.max_delegation_depth,
        rate_limits=pb.RateLimits(
            requests_per_second=o.rate_limits.requests_per_second or 0,
            burst=o.rate_limits.burst or 0,
            principal_requests_per_second=o.rate_limits.principal_requests_per_second or 0,
            principal_burst=o.rate_limits.principal_burst or 0,
        ),
    )


def user(u: UserView) -> pb.User:
    return pb.User(
        name=names.child_name(u.org_id, "users", u.id),
        external_id=u.external_id,
        display_name=u.display_name,
        email=u.email,
        state=f"USER_STATE_{u.state}",
        create_time=ts(u.create_time),
        update_time=ts(u.update_time),
        groups=u.groups,
    )


def agent(a: AgentView) -> pb.Agent:
    return pb.Agent(
        name=names.child_name(a.org_id, "agents", a.id),
        display_name=a.display_name,
        description=a.description,
        state=f"AGENT_STATE_{a.state}",
        create_time=ts(a.create_time),
        update_time=ts(a.update_time),
    )


def service_account(s: ServiceAccountView) -> pb.ServiceAccount:
    return pb.ServiceAccount(
        name=names.child_name(s.org_id, "serviceAccounts", s.id),
        display_name=s.display_name,
        purpose=s.purpose,
        state=f"SERVICE_ACCOUNT_STATE_{s.state}",
        create_time=ts(s.create_time),
        update_time=ts(s.update_time),
    )


def api_key(k: ApiKeyView) -> pb.ApiKey:
    name = (
        names.child_name(k.org_id, "apiKeys", k.id) if k.org_id else names.platform_key_name(k.id)
    )
    return pb.ApiKey(
        name=name,
        display_name=k.display_name,
        key_hint=k.key_hint,
        state=f"API_KEY_STATE_{k.state}",
        create_time=ts(k.create_time),
        revoke_time=ts(k.revoke_time),
    )


USER_STATE_FROM_PB = {pb.USER_STATE_ACTIVE: "ACTIVE", pb.USER_STATE_SUSPENDED: "SUSPENDED"}


def trust_policy(p: TrustPolicyView) -> trust_pb.TrustPolicy:
    return trust_pb.TrustPolicy(
        name=names.policy_name(p.org_id, p.agent_id, p.id),
        kind=f"TRUST_POLICY_KIND_{p.kind}",
        issuer=p.issuer,
        discovery_url=p.discovery_url,
        jwks_json=p.jwks_json,
        audience=p.audience,
        subject=p.subject,
        subject_pattern=p.subject_pattern,
        claim_equals=p.claim_equals,
        algorithms=p.algorithms,
        service_accounts=[
            names.child_name(p.org_id, "serviceAccounts", s) for s in p.service_account_ids
        ],
        scopes=p.scopes,
        audiences=p.audiences,
        create_time=ts(p.create_time),
    )


def trust_policy_spec(p: trust_pb.TrustPolicy) -> TrustPolicySpec:
    """The wire message as plain values for the use case (which validates them)."""
    return TrustPolicySpec(
        kind=trust_pb.TrustPolicyKind.Name(p.kind).removeprefix("TRUST_POLICY_KIND_"),
        issuer=p.issuer,
        discovery_url=p.discovery_url,
        jwks_json=p.jwks_json,
        audience=p.audience,
        subject=p.subject,
        subject_pattern=p.subject_pattern,
        claim_equals=dict(p.claim_equals),
        algorithms=list(p.algorithms),
        service_accounts=list(p.service_accounts),
        scopes=list(p.scopes),
        audiences=list(p.audiences),
    )


def delegation_rule(r: dict[str, object]) -> pb.DelegationRule:
    ct = r["create_time"]
    assert isinstance(ct, dt.datetime)
    return pb.DelegationRule(
        name=str(r["name"]),
        delegator=str(r["delegator"]),
        delegate=str(r["delegate"]),
        create_time=ts(ct),
    )


def identity_provider(p: IdentityProviderView) -> idp_pb.IdentityProvider:
    return idp_pb.IdentityProvider(
        name=names.child_name(p.org_id, "identityProviders", p.id),
        issuer=p.issuer,
        discovery_url=p.discovery_url,
        jwks_json=p.jwks_json,
        audience=p.audience,
        subject_claim=p.subject_claim,
        claim_equals=p.claim_equals,
        algorithms=p.algorithms,
        create_time=ts(p.create_time),
    )


def identity_provider_spec(p: idp_pb.IdentityProvider) -> IdentityProviderSpec:
    """The wire message as plain values for the use case (which validates them)."""
    return IdentityProviderSpec(
        issuer=p.issuer,
        discovery_url=p.discovery_url,
        jwks_json=p.jwks_json,
        audience=p.audience,
        subject_claim=p.subject_claim,
        claim_equals=dict(p.claim_equals),
        algorithms=list(p.algorithms),
    )


def tool_policy_rule(r: ToolPolicyRuleView) -> tool_policy_pb.ToolPolicyRule:
    return tool_policy_pb.ToolPolicyRule(
        name=names.child_name(r.org_id, "toolPolicyRules", r.id),
        tool=r.tool,
        agents=[names.child_name(r.org_id, "agents", a) for a in r.agent_ids],
        groups=r.groups,
        constraints=[
            tool_policy_pb.ArgumentConstraint(value=value, allow=allow)
            for value, allow in r.constraints
        ],
        confirm=r.confirm,
        description=r.description,
        create_time=ts(r.create_time),
        approvers=[names.child_name(r.org_id, "users", u) for u in r.approver_ids],
        approver_groups=r.approver_groups,
    )


def tool_rule_spec(r: tool_policy_pb.ToolPolicyRule) -> ToolRuleSpec:
    """The wire message as plain values for the use case (which validates them)."""
    return ToolRuleSpec(
        tool=r.tool,
        agents=tuple(r.agents),
        groups=tuple(r.groups),
        constraints=tuple((c.value, tuple(c.allow)) for c in r.constraints),
        confirm=r.confirm,
        description=r.description,
        approvers=tuple(r.approvers),
        approver_groups=tuple(r.approver_groups),
    )
