"""What use cases return: plain, immutable values (no ORM rows, no protobufs)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    """An org's rate-limit overrides; None: the deployment's default."""

    requests_per_second: float | None = None
    burst: int | None = None
    principal_requests_per_second: float | None = None
    principal_burst: int | None = None


@dataclass(frozen=True, slots=True)
class OrganizationView:
    id: str
    display_name: str
    state: str
    create_time: dt.datetime
    update_time: dt.datetime
    access_token_ttl_seconds: int = 300
    max_delegation_depth: int = 4
    rate_limits: RateLimitSettings = RateLimitSettings()


@dataclass(frozen=True, slots=True)
class UserView:
    org_id: str
    id: str
    external_id: str
    display_name: str
    email: str
    state: str
    create_time: dt.datetime
    update_time: dt.datetime
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AgentView:
    org_id: str
    id: str
    display_name: str
    description: str
    state: str
    create_time: dt.datetime
    update_time: dt.datetime


@dataclass(frozen=True, slots=True)
class ServiceAccountView:
    org_id: str
    id: str
    display_name: str
    purpose: str
    state: str
    create_time: dt.datetime
    update_time: dt.datetime


@dataclass(frozen=True, slots=True)
class ApiKeyView:
    org_id: str | None  # None for a platform admin key
    id: str
    display_name: str
    key_hint: str
    state: str
    create_time: dt.datetime
    revoke_time: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class TrustPolicyView:
    org_id: str
    agent_id: str
    id: str
    kind: str  # "WORKLOAD_TOKEN" | "PRIVATE_KEY_JWT"
    issuer: str
    discovery_url: str
    jwks_json: str
    audience: str
    subject: str
    subject_pattern: str
    claim_equals: dict[str, str]
    algorithms: tuple[str, ...]
    service_account_ids: tuple[str, ...]
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    create_time: dt.datetime


@dataclass(frozen=True, slots=True)
class IdentityProviderView:
    org_id: str
    id: str
    issuer: str
    discovery_url: str
    jwks_json: str
    audience: str
    subject_claim: str
    claim_equals: dict[str, str]
    algorithms: tuple[str, ...]
    create_time: dt.datetime


@dataclass(frozen=True, slots=True)
class ToolPolicyRuleView:
    org_id: str
    id: str
    tool: str
    agent_ids: tuple[str, ...]  # empty: any actor
    groups: tuple[str, ...]  # empty: every principal
    constraints: tuple[tuple[str, tuple[str, ...]], ...]  # (value template, allow globs)
    confirm: bool
    description: str
    create_time: dt.datetime
    approver_ids: tuple[str, ...] = ()  # empty with approver_groups: the principal
    approver_groups: tuple[str, ...] = ()
