"""Tables. The organization is the root: every tenant table carries ``org_id``.

Tenant tables (``TENANT_TABLES``) get PostgreSQL row-level security keyed on the
per-transaction ``app.org_id`` setting (see migrations). Platform tables hold
deployment-wide state (organizations themselves, platform admin keys, signing
keys, the platform DEK) and are never queried on behalf of a tenant.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from control_plane.storage.types import EpochMicros, UTCDateTime

ID = String(32)
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)

    def __repr__(self) -> str:
        # Never render column values: some rows hold sealed secrets or hashes.
        return f"<{type(self).__name__}>"


def _org_fk() -> Mapped[str]:
    return mapped_column(ID, ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)


# ---------------------------------------------------------------- platform tables


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    update_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    access_token_ttl_seconds: Mapped[int] = mapped_column(
        Integer, default=300, server_default="300"
    )
    max_delegation_depth: Mapped[int] = mapped_column(Integer, default=4, server_default="4")
    # Rate-limit overrides (requests per second, bucket size); NULL: the deployment's default.
    rate_limit_rps: Mapped[float | None] = mapped_column(Double)
    rate_limit_burst: Mapped[int | None] = mapped_column(Integer)
    principal_rate_limit_rps: Mapped[float | None] = mapped_column(Double)
    principal_rate_limit_burst: Mapped[int | None] = mapped_column(Integer)
    __table_args__ = (Index(None, "create_time", "id"),)


class PlatformApiKey(Base):
    __tablename__ = "platform_api_keys"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    key_hint: Mapped[str] = mapped_column(String(8))
    request_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoke_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    __table_args__ = (Index(None, "create_time", "id"),)


class SystemDek(Base):
    """The platform's own data key (seals signing keys and platform page tokens)."""

    __tablename__ = "system_deks"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    wrapped_dek: Mapped[bytes] = mapped_column(LargeBinary)
    kek_version: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class SigningKey(Base):
    __tablename__ = "signing_keys"
    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[str] = mapped_column(Text)
    sealed_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    publish_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    activate_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    taint_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


# ---------------------------------------------------------------- tenant tables


class OrgDek(Base):
    """One data key per organization and version, wrapped by the KEK."""

    __tablename__ = "org_deks"
    org_id: Mapped[str] = _org_fk()
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    wrapped_dek: Mapped[bytes] = mapped_column(LargeBinary)
    kek_version: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class User(Base):
    __tablename__ = "users"
    org_id: Mapped[str] = _org_fk()
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    state: Mapped[str] = mapped_column(String(16))
    # The groups the org puts the user in (tool policy rules can apply per group).
    groups: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    request_id: Mapped[str | None] = mapped_column(String(64))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    update_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    __table_args__ = (
        UniqueConstraint("org_id", "external_id"),
        UniqueConstraint("org_id", "request_id"),
        Index(None, "org_id", "create_time", "id"),
    )


class Agent(Base):
    __tablename__ = "agents"
    org_id: Mapped[str] = _org_fk()
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000))
    state: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    update_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    __table_args__ = (
        UniqueConstraint("org_id", "request_id"),
        Index(None, "org_id", "create_time", "id"),
    )


class ServiceAccount(Base):
    __tablename__ = "service_accounts"
    org_id: Mapped[str] = _org_fk()
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    update_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    __table_args__ = (
        UniqueConstraint("org_id", "purpose"),
        UniqueConstraint("org_id", "request_id"),
        Index(None, "org_id", "create_time", "id"),
    )


class OrgApiKey(Base):
    __tablename__ = "org_api_keys"
    org_id: Mapped[str] = _org_fk()
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    key_hint: Mapped[str] = mapped_column(String(8))
    request_id: Mapped[str | None] = mapped_column(String(64))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoke_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    __table_args__ = (
        UniqueConstraint("org_id", "request_id"),
        Index(None, "org_id", "create_time", "id"),
    )


class TrustPolicy(Base):
    """Who may become an agent (a workload token or a private_key_jwt key) and what it may get."""

    __tablename__ = "trust_policies"
    org_id: Mapped[str] = _org_fk()
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    agent_id: Mapped[str] = mapped_column(ID)
    kind: Mapped[str] = mapped_column(String(32))
    issuer: Mapped[str] = mapped_column(String(2048))
    discovery_url: Mapped[str] = mapped_column(String(2048))
    jwks_json: Mapped[str] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(String(2048))
    subject: Mapped[str] = mapped_column(String(2048))
    subject_pattern: Mapped[str] = mapped_column(String(2048))
    claim_equals: Mapped[dict[str, str]] = mapped_column(JSON)
    algorithms: Mapped[list[str]] = mapped_column(JSON)
    service_account_ids: Mapped[list[str]] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    audiences: Mapped[list[str]] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(64))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    __table_args__ = (
        ForeignKeyConstraint(
            ["org_id", "agent_id"], ["agents.org_id", "agents.id"], ondelete="CASCADE"
        ),
        UniqueConstraint("org_id", "request_id"),
        Index(None, "org_id", "agent_id", "create_time", "id"),
    )


class IssuedToken(Base):
    """Every minted token's lineage record: what introspection and revocation consult."""

    __tablename__ = "issued_tokens"
    org_id: Mapped[str] = _org_fk()
    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    subject: Mapped[str] = mapped_column(String(256))
    client_id: Mapped[str] = mapped_column(String(256))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    audiences: Mapped[list[str]] = mapped_column(JSON)
    issue_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expire_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoke_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    parent_jti: Mapped[str | None] = mapped_column(String(64))
    root_jti: Mapped[str | None] = mapped_column(String(64))
    txn: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (
        Index(None, "org_id", "expire_time"),
        Index(None, "org_id", "parent_jti"),
    )


class DelegationRule(Base):
    """RFC 8693 §4.4 ``may_act`` as org policy: which agent may delegate to which."""

    __tablename__ = "delegation_rules"
    org_id: Mapped[str] = _org_fk()
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    delegator_agent_id: Mapped[str] = mapped_column(ID)
    delegate_agent_id: Mapped[str] = mapped_column(ID)
    request_id: Mapped[str | None] = mapped_column(String(64))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    __table_args__ = (
        ForeignKeyConstraint(
            ["org_id", "delegator_agent_id"],
            ["agents.org_id", "agents.id"],
            ondelete="CASCADE",
            name="fk_delegation_rules_delegator",
        ),
        ForeignKeyConstraint(
            ["org_id", "delegate_agent_id"],
            ["agents.org_id", "agents.id"],
            ondelete="CASCADE",
            name="fk_delegation_rules_delegate",
        ),
        UniqueConstraint("org_id", "delegator_agent_id", "delegate_agent_id"),
        UniqueConstraint("org_id", "request_id"),
        Index(None, "org_id", "create_time", "id"),
    )


class ToolPolicyRule(Base):
    """One rule of the org's tool policy (control_plane.domain.tool_policy.ToolRule).

    ``agent_ids`` / ``groups`` NULL: the rule applies to any actor / principal.
    ``constraints`` is a list of ``{"value": template, "allow": [glob, ...]}``. The
    agents are not foreign keys (a JSON list); they are checked when the rule is made.
    """

    __tablename__ = "tool_policy_rules"
    org_id: Mapped[str] = _org_fk()
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    tool: Mapped[str] = mapped_column(String(160))
    agent_ids: Mapped[list[str] | None] = mapped_column(JSON)
    groups: Mapped[list[str] | None] = mapped_column(JSON)
    constraints: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    confirm: Mapped[bool] = mapped_column(Boolean)
    # Who may approve a call the rule holds for confirmation (users by id, groups);
    # NULL both: the call's principal.
    approver_ids: Mapped[list[str] | None] = mapped_column(JSON)
    approver_groups: Mapped[list[str] | None] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(String(2000))
    request_id: Mapped[str | None] = mapped_column(String(64))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    __table_args__ = (
        UniqueConstraint("org_id", "request_id"),
        Index(None, "org_id", "create_time", "id"),
    )


class IdentityProvider(Base):
    """The org's trusted OIDC identity provider (at most one per org)."""

    __tablename__ = "identity_providers"
    org_id: Mapped[str] = _org_fk()
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    issuer: Mapped[str] = mapped_column(String(2048))
    discovery_url: Mapped[str] = mapped_column(String(2048))
    jwks_json: Mapped[str] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(String(512))
    subject_claim: Mapped[str] = mapped_column(String(64))
    claim_equals: Mapped[dict[str, str]] = mapped_column(JSON)
    algorithms: Mapped[list[str]] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(64))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    __table_args__ = (
        UniqueConstraint("org_id"),  # one identity provider per org, even under a race
        UniqueConstraint("org_id", "request_id"),
        Index(None, "org_id", "create_time", "id"),
    )


class UsedAssertion(Base):
    """RFC 7523 §3: a client assertion's jti is single-use until the assertion expires."""

    __tablename__ = "used_assertions"
    org_id: Mapped[str] = _org_fk()
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    expire_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    __table_args__ = (Index(None, "org_id", "expire_time"),)


class RevocationEvent(Base):
    """One revocation, as the feed publishes it: the jtis it revoked, descendants included.

    ``seq`` orders an org's events (revocations of one org are serialized, so
    commit order is seq order); ``expire_time`` is the latest expiry among the
    jtis: after it the event carries no information and is pruned.
    """

    __tablename__ = "revocation_events"
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id", ondelete="CASCADE"))
    jtis: Mapped[list[str]] = mapped_column(JSON)
    revoke_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expire_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    __table_args__ = (
        Index(None, "org_id", "seq"),
        Index(None, "org_id", "expire_time"),
        # SQLite would otherwise reuse the highest seq after a prune, and a
        # watcher resuming from that cursor would skip the new event.
        {"sqlite_autoincrement": True},
    )


# ---------------------------------------------------------------- the vault
# Sealed columns hold barrier blobs (AES-256-GCM, AAD = scope, table, row, field).
# Connector ids come from the catalog (files), so they are not foreign keys.

CONNECTOR_ID = String(40)


class PlatformOAuthApp(Base):
    """The deployment's OAuth client for a connector, used by every org without its own."""

    __tablename__ = "platform_oauth_apps"
    connector_id: Mapped[str] = mapped_column(CONNECTOR_ID, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(512))
    client_secret: Mapped[bytes] = mapped_column(LargeBinary)  # sealed, platform scope
    update_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class OrgOAuthApp(Base):
    """An enterprise customer's own OAuth client for a connector; overrides the deployment's."""

    __tablename__ = "org_oauth_apps"
    org_id: Mapped[str] = _org_fk()
    connector_id: Mapped[str] = mapped_column(CONNECTOR_ID, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(512))
    client_secret: Mapped[bytes] = mapped_column(LargeBinary)  # sealed, org scope
    update_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class OrgConnector(Base):
    """Per org: is the connector enabled, and which of its tools (None: all)."""

    __tablename__ = "org_connectors"
    org_id: Mapped[str] = _org_fk()
    connector_id: Mapped[str] = mapped_column(CONNECTOR_ID, primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    enabled_tools: Mapped[list[str] | None] = mapped_column(JSON)
    update_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class PlatformDeveloperSecret(Base):
    """The developer's static secret for a developer_secret connector (Pattern 1)."""

    __tablename__ = "platform_developer_secrets"
    connector_id: Mapped[str] = mapped_column(CONNECTOR_ID, primary_key=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary)  # sealed, platform scope
    secret_hint: Mapped[str] = mapped_column(String(16))
    rate_requests: Mapped[int] = mapped_column(Integer)
    rate_period_seconds: Mapped[int] = mapped_column(Integer)
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    rotate_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class OrgDeveloperSecret(Base):
    __tablename__ = "org_developer_secrets"
    org_id: Mapped[str] = _org_fk()
    connector_id: Mapped[str] = mapped_column(CONNECTOR_ID, primary_key=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary)  # sealed, org scope
    secret_hint: Mapped[str] = mapped_column(String(16))
    rate_requests: Mapped[int] = mapped_column(Integer)
    rate_period_seconds: Mapped[int] = mapped_column(Integer)
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    rotate_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ConnectedAccount(Base):
    """A user's (or service account's) credential at a provider.

    ``secret`` is one sealed JSON document (access and refresh tokens, or the
    BYOK key). ``secret_version`` grows with every write of it, so the refresh
    coordinator can compare-and-set after re-reading; ``refresh_lease_until``
    is its cross-replica lease.
    """

    __tablename__ = "connected_accounts"
    org_id: Mapped[str] = _org_fk()
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    connector_id: Mapped[str] = mapped_column(CONNECTOR_ID)
    owner_kind: Mapped[str] = mapped_column(String(16))  # "users" | "serviceAccounts"
    owner_id: Mapped[str] = mapped_column(ID)
    label: Mapped[str] = mapped_column(String(100))
    is_default: Mapped[bool] = mapped_column(Boolean)
    state: Mapped[str] = mapped_column(String(16))
    state_reason: Mapped[str] = mapped_column(String(64))
    connection_params: Mapped[dict[str, str]] = mapped_column(JSON)
    granted_scopes: Mapped[list[str]] = mapped_column(JSON)
    provider_metadata: Mapped[dict[str, str]] = mapped_column(JSON)
    secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    secret_version: Mapped[int] = mapped_column(Integer, default=0)
    api_key_hint: Mapped[str] = mapped_column(String(16))
    access_expire_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    refresh_lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # After a transient failure or rate limit: no refresh before this (no retry storm).
    refresh_blocked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # The secret version whose refresh token a refresh has sent to the provider and
    # whose outcome is not recorded yet: set before the request leaves, cleared with
    # the outcome. Still set on a later read = the answer was lost (process killed).
    refresh_sent_version: Mapped[int | None] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(64))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    update_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    state_change_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    last_used_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_refreshed_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    secret_create_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    secret_rotate_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    __table_args__ = (
        UniqueConstraint("org_id", "request_id"),
        Index(None, "org_id", "create_time", "id"),
        Index(None, "org_id", "owner_kind", "owner_id", "connector_id"),
    )


class ConnectLink(Base):
    """A hosted connect link (single use, short-lived) and the authorization it starts.

    ``id`` is the SHA-256 of the link's secret part; ``state_hash`` that of the
    OAuth ``state`` of the latest start (RFC 6749 §10.12), bound to the browser
    by ``browser_hash`` (a cookie set at the start). The PKCE verifier is sealed.
    """

    __tablename__ = "connect_links"
    org_id: Mapped[str] = _org_fk()
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(ID)
    connector_id: Mapped[str] = mapped_column(CONNECTOR_ID)
    expire_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    state_hash: Mapped[str | None] = mapped_column(String(64))
    browser_hash: Mapped[str | None] = mapped_column(String(64))
    code_verifier: Mapped[bytes | None] = mapped_column(LargeBinary)
    requested_scopes: Mapped[list[str] | None] = mapped_column(JSON)
    __table_args__ = (
        ForeignKeyConstraint(
            ["org_id", "account_id"],
            ["connected_accounts.org_id", "connected_accounts.id"],
            ondelete="CASCADE",
        ),
        Index(None, "org_id", "state_hash"),
        Index(None, "org_id", "expire_time"),
    )


class AccountEvent(Base):
    """A connected account's state change, as WatchConnectedAccounts streams it.

    An org's changes are serialized by an advisory lock (like revocations), so
    its ``seq`` order is its commit order and a resume cursor skips nothing.
    """

    __tablename__ = "account_events"
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    org_id: Mapped[str] = mapped_column(ID, ForeignKey("organizations.id", ondelete="CASCADE"))
    account_id: Mapped[str] = mapped_column(ID)
    connector_id: Mapped[str] = mapped_column(CONNECTOR_ID)
    state: Mapped[str] = mapped_column(String(16))
    state_reason: Mapped[str] = mapped_column(String(64))
    event_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    __table_args__ = (
        Index(None, "org_id", "seq"),
        Index(None, "org_id", "event_time"),
        {"sqlite_autoincrement": True},
    )


# ---------------------------------------------------------------- rate limits
# The shared half of the rate limiter's token buckets (services/rate_limiter.py):
# replicas lease tokens from these rows in batches. ``updated_at`` is BIGINT
# microseconds since the epoch, so the refill is exact integer arithmetic in SQL;
# ``leased`` is what the latest lease took (what RETURNING reports back).

BUCKET_KEY = String(128)


class RateBucket(Base):
    """An org's bucket (``org``) or one of its principals' (``principal:<id>``)."""

    __tablename__ = "rate_buckets"
    org_id: Mapped[str] = _org_fk()
    bucket_key: Mapped[str] = mapped_column(BUCKET_KEY, primary_key=True)
    tokens: Mapped[float] = mapped_column(Double)
    leased: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(EpochMicros())


class AnonymousRateBucket(Base):
    """A platform bucket for callers no org is known for yet (``peer:<address>``)."""

    __tablename__ = "anonymous_rate_buckets"
    bucket_key: Mapped[str] = mapped_column(BUCKET_KEY, primary_key=True)
    tokens: Mapped[float] = mapped_column(Double)
    leased: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(EpochMicros())
    __table_args__ = (Index(None, "updated_at"),)  # pruning idle (full again) buckets


TENANT_TABLES: tuple[str, ...] = tuple(
    t.name for t in Base.metadata.sorted_tables if "org_id" in t.c
)
PLATFORM_TABLES: tuple[str, ...] = tuple(
    t.name for t in Base.metadata.sorted_tables if "org_id" not in t.c
)

__all__ = [
    "Agent",
    "AnonymousRateBucket",
    "DelegationRule",
    "IdentityProvider",
    "IssuedToken",
    "ToolAction",
    "ToolConfirmation",
    "ToolPolicyRule",
    "TrustPolicy",
    "UsedAssertion",
    "Base",
    "OrgApiKey",
    "OrgDek",
    "Organization",
    "PLATFORM_TABLES",
    "PlatformApiKey",
    "PlatformDeveloperSecret",
    "PlatformOAuthApp",
    "RateBucket",
    "OrgConnector",
    "OrgDeveloperSecret",
    "OrgOAuthApp",
    "ConnectedAccount",
    "ConnectLink",
    "AccountEvent",
    "RevocationEvent",
    "ServiceAccount",
    "SigningKey",
    "SystemDek",
    "TENANT_TABLES",
    "User",
]


# ---------------------------------------------------------------- tool actions


class ToolAction(Base):
    """One ExecuteTool call: its intent, written before the provider is called, and
    its outcome after (intent before the external effect).

    ``state`` is PENDING until the outcome is recorded, then SUCCEEDED or FAILED;
    a PENDING row older than the longest call is one whose process died while the
    provider was being called: its outcome is unknown, never guessed. ``outcome``
    is the sealed terminal message, which a retry with the same ``request_id``
    from the same principal replays without calling the provider again.
    """

    __tablename__ = "tool_actions"
    org_id: Mapped[str] = _org_fk()
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    principal: Mapped[str] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(256))
    tool: Mapped[str] = mapped_column(String(128))
    account_id: Mapped[str | None] = mapped_column(ID)
    request_id: Mapped[str | None] = mapped_column(String(64))
    arguments_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[bytes | None] = mapped_column(LargeBinary)
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finish_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    __table_args__ = (
        UniqueConstraint("org_id", "principal", "request_id"),
        Index(None, "org_id", "create_time"),
    )


class ToolConfirmation(Base):
    """A tool call held for a human's confirmation (its action's ``tool_actions`` row).

    Bound to the exact call: the principal, the actor, the tool and the hash of the
    arguments (``tool_actions.arguments_hash``). ``approvers`` is what the rules that
    required it said when the call was made, one entry per rule
    (``{"rule": id, "users": [ids], "groups": [names]}``; both lists empty: the
    principal). ``state`` goes PENDING -> APPROVED -> USED (the waiting call took it,
    once) or PENDING -> DENIED | EXPIRED; nothing else.
    """

    __tablename__ = "tool_confirmations"
    org_id: Mapped[str] = _org_fk()
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    action_id: Mapped[str] = mapped_column(ID)
    principal: Mapped[str] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(256))
    tool: Mapped[str] = mapped_column(String(128))
    arguments_hash: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(String(512))
    rule_ids: Mapped[list[str]] = mapped_column(JSON)
    approvers: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    approver_id: Mapped[str | None] = mapped_column(ID)
    reason: Mapped[str | None] = mapped_column(String(1000))
    create_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expire_time: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    decide_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    __table_args__ = (
        ForeignKeyConstraint(
            ["org_id", "action_id"],
            ["tool_actions.org_id", "tool_actions.id"],
            ondelete="CASCADE",
        ),
        UniqueConstraint("org_id", "action_id"),
        Index(None, "org_id", "create_time"),
    )
