"""The vault's configuration and connected accounts (ConnectionService).

Connectors come from the catalog; an org enables them and chooses their tools.
OAuth client credentials exist for the deployment and, optionally, per org (the
org's own app wins). Developer secrets (Pattern 1) likewise. A connected
account is one owner's credential at one provider: an OAuth grant (Pattern 2) or
the owner's own API key (BYOK, Pattern 3).

Every secret is sealed by the barrier with AAD binding (scope, table, row,
field) and is write-only: views carry at most a masked suffix. Another org's
names answer exactly like missing ones.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from control_plane.connectors.loader import Catalog
from control_plane.connectors.model import Connector
from control_plane.domain import names
from control_plane.domain.entities import Page
from control_plane.domain.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    field_error,
)
from control_plane.domain.principals import Principal
from control_plane.ids import new_id
from control_plane.services.context import ServiceContext, get_or_404, list_page, require_org
from control_plane.services.feed_watch import FeedWatch
from control_plane.services.tenant_crud import TenantCrud
from control_plane.storage import account_events
from control_plane.storage import models as m
from control_plane.storage.repositories import TenantRepository
from control_plane.tokens.revocation_feed import ACCOUNTS
from control_plane.vault.barrier import PLATFORM

_CONNECTOR_ID = r"[a-z][a-z0-9_]{1,39}"
_HEX = r"[0-9a-f]{32}"
MAX_SECRET = 4096
MAX_CLIENT_ID = 512
_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")
_LABEL = re.compile(r"^[^\x00-\x1f\x7f]{0,100}$")
OWNER_KINDS = ("users", "serviceAccounts")


def mask(secret: str) -> str:
    """The last four characters behind a fixed mask; nothing of a short secret."""
    return "••••" + (secret[-4:] if len(secret) >= 12 else "")


def check_secret(value: str, field_name: str, *, pattern: str = "") -> str:
    """A secret as typed: present, bounded, printable, and of the provider's shape."""
    if not value:
        raise field_error(field_name, "is required", "FIELD_REQUIRED")
    if len(value.encode()) > MAX_SECRET:
        raise field_error(field_name, f"is longer than {MAX_SECRET} bytes", "FIELD_TOO_LONG")
    if not _PRINTABLE.fullmatch(value):
        # The message never echoes the value, nor where the bad character was.
        raise field_error(field_name, "contains whitespace or control characters")
    if pattern and not re.fullmatch(pattern, value):
        raise field_error(field_name, "does not have this provider's key format")
    return value


@dataclass(frozen=True, slots=True)
class CredentialName:
    """``{collection}/{connector}`` (deployment) or ``orgs/{org}/{collection}/{connector}``."""

    org_id: str | None
    connector_id: str

    @property
    def scope(self) -> str:
        return self.org_id or PLATFORM


def parse_credential_name(value: str, collection: str, field_name: str = "name") -> CredentialName:
    if not value or len(value) > names.MAX_NAME_LEN:
        raise field_error(field_name, "is required", "FIELD_REQUIRED")
    found = re.fullmatch(rf"(?:orgs/({_HEX})/)?{collection}/({_CONNECTOR_ID})", value)
    if not found:
        raise field_error(
            field_name,
            f"must look like {collection}/{{connector}} or orgs/{{org}}/{collection}/{{connector}}",
            "INVALID_RESOURCE_NAME",
        )
    return CredentialName(found.group(1), found.group(2))


# ----------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class ToolView:
    name: str
    description: str
    input_schema_json: str
    scopes: tuple[str, ...]
    destructive: bool
    output_trust: str
    enabled: bool


@dataclass(frozen=True, slots=True)
class ConnectorView:
    name: str
    display_name: str
    description: str
    auth_type: str
    enabled: bool
    tools: tuple[ToolView, ...]
    oauth_app_source: str  # NONE | DEPLOYMENT | ORGANIZATION
    connection_params: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OAuthAppView:
    name: str
    client_id: str
    update_time: dt.datetime


@dataclass(frozen=True, slots=True)
class DeveloperSecretView:
    name: str
    secret_hint: str
    rate_requests: int
    rate_period_seconds: int
    create_time: dt.datetime
    rotate_time: dt.datetime


@dataclass(frozen=True, slots=True)
class ConnectedAccountView:
    name: str
    connector: str
    owner: str
    label: str
    default: bool
    state: str
    state_reason: str
    connection_params: dict[str, str]
    granted_scopes: list[str]
    provider_metadata: dict[str, str]
    api_key_hint: str
    create_time: dt.datetime
    update_time: dt.datetime
    state_change_time: dt.datetime
    last_used_time: dt.datetime | None = None
    last_refreshed_time: dt.datetime | None = None
    secret_create_time: dt.datetime | None = None
    secret_rotate_time: dt.datetime | None = None
    access_expire_time: dt.datetime | None = None


def account_view(r: m.ConnectedAccount) -> ConnectedAccountView:
    return ConnectedAccountView(
        name=names.child_name(r.org_id, "connectedAccounts", r.id),
        connector=r.connector_id,
        owner=names.child_name(r.org_id, r.owner_kind, r.owner_id),
        label=r.label,
        default=r.is_default,
        state=r.state,
        state_reason=r.state_reason,
        connection_params=dict(r.connection_params),
        granted_scopes=list(r.granted_scopes),
        provider_metadata=dict(r.provider_metadata),
        api_key_hint=r.api_key_hint,
        create_time=r.create_time,
        update_time=r.update_time,
        state_change_time=r.state_change_time,
        last_used_time=r.last_used_time,
        last_refreshed_time=r.last_refreshed_time,
        secret_create_time=r.secret_create_time,
        secret_rotate_time=r.secret_rotate_time,
        access_expire_time=r.access_expire_time,
    )


# ----------------------------------------------------------------- connectors


class ConnectorConfigService:
    def __init__(self, ctx: ServiceContext, catalog: Catalog) -> None:
        self.ctx = ctx
        self.catalog = catalog

    def connector(self, connector_id: str) -> Connector:
        c = self.catalog.get(connector_id)
        if c is None:
            raise NotFound()
        return c

    async def list(self, principal: Principal, parent: str) -> list[ConnectorView]:
        org_id = principal.scope_for(names.parse_org(parent, "parent"))
        async with self.ctx.db.org_tx(org_id) as s:
            repo = TenantRepository(s, org_id)
            await require_org(repo)
            configs = {r.connector_id: r for r in await _all(s, m.OrgConnector, org_id)}
            org_apps = {r.connector_id for r in await _all(s, m.OrgOAuthApp, org_id)}
            platform_apps = set(
                (await s.execute(select(m.PlatformOAuthApp.connector_id))).scalars()
            )
        return [
            _connector_view(org_id, c, configs.get(c.id), c.id in org_apps, c.id in platform_apps)
            for c in sorted(self.catalog, key=lambda c: c.id)
        ]

    async def update(
        self, principal: Principal, name: str, enabled: bool, enabled_tools: Iterable[str]
    ) -> ConnectorView:
        org_id, connector_id = _parse_org_connector(name)
        org_id = principal.scope_for(org_id)
        c = self.connector(connector_id)
        tools = sorted(set(enabled_tools))
        unknown = [t for t in tools if c.tool(t) is None]
        if unknown:
            raise field_error("enabled_tools", f"{unknown[0]!r} is not a tool of {c.id}")
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(org_id) as s:
            repo = TenantRepository(s, org_id)
            await require_org(repo)
            row = await s.get(m.OrgConnector, (org_id, c.id))
            if row is None:
                row = m.OrgConnector(org_id=org_id, connector_id=c.id)
                s.add(row)
            row.enabled = enabled
            row.enabled_tools = tools or None
            row.update_time = now
            org_app = await s.get(m.OrgOAuthApp, (org_id, c.id)) is not None
            platform_app = await s.get(m.PlatformOAuthApp, c.id) is not None
        return _connector_view(org_id, c, row, org_app, platform_app)

    async def enabled_tools(
        self, org_id: str, connector: Connector, *, session: Any = None
    ) -> tuple[str, ...] | None:
        """The org's enabled tools of ``connector``; None when the connector is disabled.

        Pass ``session`` to read inside a transaction already open for ``org_id``.
        """
        if session is not None:
            row = await session.get(m.OrgConnector, (org_id, connector.id))
        else:
            async with self.ctx.db.org_tx(org_id) as s:
                row = await s.get(m.OrgConnector, (org_id, connector.id))
        return _enabled(connector, row)


def _enabled(connector: Connector, config: m.OrgConnector | None) -> tuple[str, ...] | None:
    """The tools ``config`` enables (all when it names none); None when disabled."""
    if config is None or not config.enabled:
        return None
    return tuple(config.enabled_tools) if config.enabled_tools else connector.tool_names


async def _all(s: Any, model: Any, org_id: str) -> list[Any]:
    return list((await s.execute(select(model).where(model.org_id == org_id))).scalars())


def _parse_org_connector(name: str) -> tuple[str, str]:
    if not name or len(name) > names.MAX_NAME_LEN:
        raise field_error("name", "is required", "FIELD_REQUIRED")
    found = re.fullmatch(rf"orgs/({_HEX})/connectors/({_CONNECTOR_ID})", name)
    if not found:
        raise field_error(
            "name", "must look like orgs/{org}/connectors/{connector}", "INVALID_RESOURCE_NAME"
        )
    return found.group(1), found.group(2)


def _connector_view(
    org_id: str,
    c: Connector,
    config: m.OrgConnector | None,
    org_app: bool,
    platform_app: bool,
) -> ConnectorView:
    tools = _enabled(c, config)
    enabled = tools is not None
    chosen = set(tools or ())
    source = "NONE"
    if c.auth.type == "oauth2":
        source = "ORGANIZATION" if org_app else "DEPLOYMENT" if platform_app else "NONE"
    return ConnectorView(
        name=f"orgs/{org_id}/connectors/{c.id}",
        display_name=c.display_name,
        description=c.description,
        auth_type=c.auth.type,
        enabled=enabled,
        tools=tuple(
            ToolView(
                name=t.name,
                description=t.description,
                input_schema_json=json.dumps(t.input_schema, sort_keys=True),
                scopes=t.scopes,
                destructive=t.destructive,
                output_trust=t.output_trust,
                enabled=enabled and t.name in chosen,
            )
            for t in c.tools
        ),
        oauth_app_source=source,
        connection_params=tuple(p.name for p in c.auth.connection_params),
    )


# ----------------------------------------------------------------- deployment/org credentials


class _CredentialStore:
    """Shared rules of OAuth apps and developer secrets: who may touch which level."""

    collection: str

    def __init__(self, ctx: ServiceContext, catalog: Catalog) -> None:
        self.ctx = ctx
        self.catalog = catalog

    def _name(self, principal: Principal, name: str) -> tuple[CredentialName, Connector]:
        n = parse_credential_name(name, self.collection)
        if n.org_id is None:
            if not principal.is_platform_admin:
                raise PermissionDenied()  # deployment credentials are the platform's
        else:
            principal.scope_for(n.org_id)
        c = self.catalog.get(n.connector_id)
        if c is None:
            raise NotFound()
        return n, c

    def _render(self, n: CredentialName) -> str:
        prefix = f"orgs/{n.org_id}/" if n.org_id else ""
        return f"{prefix}{self.collection}/{n.connector_id}"

    async def _org_exists(self, s: Any, n: CredentialName) -> None:
        if n.org_id is not None:
            await require_org(TenantRepository(s, n.org_id))


class OAuthAppService(_CredentialStore):
    collection = "oauthApps"

    async def set(
        self, principal: Principal, name: str, client_id: str, client_secret: str
    ) -> OAuthAppView:
        n, c = self._name(principal, name)
        if c.auth.type != "oauth2":
            raise field_error("oauth_app.name", f"{c.id} is not an OAuth connector")
        if not client_id or len(client_id) > MAX_CLIENT_ID or not _PRINTABLE.fullmatch(client_id):
            raise field_error("oauth_app.client_id", "must be 1-512 printable characters")
        check_secret(client_secret, "oauth_app.client_secret")
        table = "org_oauth_apps" if n.org_id else "platform_oauth_apps"
        now = self.ctx.clock.now()
        async with self._tx(n) as s:
            await self._org_exists(s, n)
            sealed = await self.ctx.barrier.seal(
                n.scope, table, n.connector_id, "client_secret", client_secret.encode(), session=s
            )
            row: Any = await s.get(*self._key(n))
            if row is None:
                row = self._model(n)(connector_id=n.connector_id)
                if n.org_id:
                    row.org_id = n.org_id
                s.add(row)
            row.client_id = client_id
            row.client_secret = sealed
            row.update_time = now
        return OAuthAppView(self._render(n), client_id, now)

    async def get(self, principal: Principal, name: str) -> OAuthAppView:
        n, _ = self._name(principal, name)
        async with self._tx(n) as s:
            row: Any = await s.get(*self._key(n))
        if row is None:
            raise NotFound()
        return OAuthAppView(self._render(n), row.client_id, row.update_time)

    async def delete(self, principal: Principal, name: str) -> None:
        n, _ = self._name(principal, name)
        async with self._tx(n) as s:
            row = await s.get(*self._key(n))
            if row is None:
                raise NotFound()
            await s.delete(row)

    async def client_for(self, org_id: str, connector_id: str) -> tuple[str, str, str] | None:
        """(client_id, client_secret, source) for an org: its own app, else the deployment's."""
        async with self.ctx.db.org_tx(org_id) as s:
            own = await s.get(m.OrgOAuthApp, (org_id, connector_id))
            if own is not None:
                secret = await self.ctx.barrier.open(
                    org_id,
                    "org_oauth_apps",
                    connector_id,
                    "client_secret",
                    own.client_secret,
                    session=s,
                )
                return own.client_id, secret.decode(), "ORGANIZATION"
        async with self.ctx.db.platform_tx() as s:
            shared = await s.get(m.PlatformOAuthApp, connector_id)
            if shared is None:
                return None
            secret = await self.ctx.barrier.open(
                PLATFORM,
                "platform_oauth_apps",
                connector_id,
                "client_secret",
                shared.client_secret,
                session=s,
            )
        return shared.client_id, secret.decode(), "DEPLOYMENT"

    def _model(self, n: CredentialName) -> type[Any]:
        return m.OrgOAuthApp if n.org_id else m.PlatformOAuthApp

    def _key(self, n: CredentialName) -> tuple[type[Any], Any]:
        if n.org_id:
            return m.OrgOAuthApp, (n.org_id, n.connector_id)
        return m.PlatformOAuthApp, n.connector_id

    def _tx(self, n: CredentialName) -> Any:
        return self.ctx.db.org_tx(n.org_id) if n.org_id else self.ctx.db.platform_tx()


MAX_RATE_PERIOD = 86400


class DeveloperSecretService(_CredentialStore):
    collection = "developerSecrets"

    async def set(
        self,
        principal: Principal,
        name: str,
        secret: str,
        rate_requests: int,
        rate_period_seconds: int,
    ) -> DeveloperSecretView:
        n, c = self._name(principal, name)
        if c.auth.type != "developer_secret":
            raise field_error(
                "developer_secret.name", f"{c.id} is not a developer-secret connector"
            )
        pattern = c.auth.api_key.pattern if c.auth.api_key else ""
        check_secret(secret, "developer_secret.secret", pattern=pattern)
        if rate_requests < 0 or rate_requests > 1_000_000:
            raise field_error("developer_secret.per_user_rate_limit.requests", "must be 0-1000000")
        if rate_requests and not 1 <= rate_period_seconds <= MAX_RATE_PERIOD:
            raise field_error(
                "developer_secret.per_user_rate_limit.period", "must be 1 second to 1 day"
            )
        table = "org_developer_secrets" if n.org_id else "platform_developer_secrets"
        model, key, tx = self._locate(n)
        now = self.ctx.clock.now()
        async with tx as s:
            await self._org_exists(s, n)
            sealed = await self.ctx.barrier.seal(
                n.scope, table, n.connector_id, "secret", secret.encode(), session=s
            )
            row: Any = await s.get(model, key)
            if row is None:
                row = model(connector_id=n.connector_id, create_time=now)
                if n.org_id:
                    row.org_id = n.org_id
                s.add(row)
            row.secret = sealed
            row.secret_hint = mask(secret)
            row.rate_requests = rate_requests
            row.rate_period_seconds = rate_period_seconds if rate_requests else 0
            row.rotate_time = now
            return self._view(n, row)

    async def get(self, principal: Principal, name: str) -> DeveloperSecretView:
        n, _ = self._name(principal, name)
        model, key, tx = self._locate(n)
        async with tx as s:
            row = await s.get(model, key)
            if row is None:
                raise NotFound()
            return self._view(n, row)

    async def delete(self, principal: Principal, name: str) -> None:
        n, _ = self._name(principal, name)
        model, key, tx = self._locate(n)
        async with tx as s:
            row = await s.get(model, key)
            if row is None:
                raise NotFound()
            await s.delete(row)

    def _locate(self, n: CredentialName) -> tuple[Any, Any, Any]:
        """(model, primary key, transaction) of the deployment or org row."""
        if n.org_id:
            return m.OrgDeveloperSecret, (n.org_id, n.connector_id), self.ctx.db.org_tx(n.org_id)
        return m.PlatformDeveloperSecret, n.connector_id, self.ctx.db.platform_tx()

    def _view(self, n: CredentialName, row: Any) -> DeveloperSecretView:
        return DeveloperSecretView(
            self._render(n),
            row.secret_hint,
            row.rate_requests,
            row.rate_period_seconds,
            row.create_time,
            row.rotate_time,
        )


# ----------------------------------------------------------------- connected accounts


class ConnectedAccountService(TenantCrud[m.ConnectedAccount, ConnectedAccountView]):
    model = m.ConnectedAccount
    collection = "connectedAccounts"

    def __init__(self, ctx: ServiceContext, connectors: ConnectorConfigService) -> None:
        super().__init__(ctx, account_view)
        self.connectors = connectors
        # Revokes the grant at the provider before the sealed secret is destroyed.
        self.revoker: Callable[[str, m.ConnectedAccount], Awaitable[None]] | None = None

    async def create(
        self,
        principal: Principal,
        parent: str,
        connector_id: str,
        owner: str,
        label: str,
        connection_params: dict[str, str],
        request_id: str,
    ) -> ConnectedAccountView:
        org_id = principal.scope_for(names.parse_org(parent, "parent"))
        c = self.connectors.catalog.get(connector_id)
        if c is None:
            raise field_error("connected_account.connector", "is not a connector of the catalog")
        if c.auth.type not in ("oauth2", "api_key"):
            raise field_error(
                "connected_account.connector",
                f"{c.auth.type} connectors have no per-user accounts",
            )
        kind, owner_id = _parse_owner(owner, org_id)
        if not _LABEL.fullmatch(label):
            raise field_error("connected_account.label", "at most 100 characters, no controls")
        params = _check_params(c, connection_params)
        awaiting = "AWAITING_AUTHORIZATION" if c.auth.type == "oauth2" else "AWAITING_API_KEY"
        fields = {
            "connector_id": c.id,
            "owner_kind": kind,
            "owner_id": owner_id,
            "label": label,
            "connection_params": params,
        }

        async def precheck(repo: TenantRepository) -> None:
            owner_model: Any = m.User if kind == "users" else m.ServiceAccount
            if await repo.get(owner_model, owner_id) is None:
                raise field_error("connected_account.owner", "does not exist in this organization")
            if await self.connectors.enabled_tools(org_id, c, session=repo.session) is None:
                raise FailedPrecondition(
                    f"the {c.id} connector is not enabled for this organization",
                    reason="CONNECTOR_DISABLED",
                )
            siblings = await repo.page(
                m.ConnectedAccount, None, 1, owner_kind=kind, owner_id=owner_id, connector_id=c.id
            )
            extra["is_default"] = not siblings
            await account_events.record(
                repo.session, self.ctx.db, org_id, extra["id"], c.id, "PENDING", awaiting, now
            )

        now = self.ctx.clock.now()
        extra: dict[str, Any] = {
            "id": new_id(),
            "state": "PENDING",
            "state_reason": awaiting,
            "state_change_time": now,
            "granted_scopes": [],
            "provider_metadata": {},
            "api_key_hint": "",
            "secret_version": 0,
        }
        row, _ = await self._create(
            principal, org_id, request_id, fields, precheck=precheck, extra=extra
        )
        return account_view(row)

    async def get(self, principal: Principal, name: str) -> ConnectedAccountView:
        n = names.parse_child(name, "connectedAccounts")
        return await self._get(principal, n.org_id, n.id)

    async def list(
        self,
        principal: Principal,
        parent: str,
        owner: str,
        connector: str,
        page_size: int,
        page_token: str,
    ) -> Page[ConnectedAccountView]:
        from control_plane.domain import validation as v

        org_id = principal.scope_for(names.parse_org(parent, "parent"))
        equals: dict[str, str] = {}
        if owner:
            kind, owner_id = _parse_owner(owner, org_id, field_name="owner")
            equals.update(owner_kind=kind, owner_id=owner_id)
        if connector:
            if not re.fullmatch(_CONNECTOR_ID, connector):
                raise field_error("connector", "is not a connector id")
            equals["connector_id"] = connector
        # Page tokens are bound to the filter, so one cannot be reused under another.
        collection = f"{self.collection}?{json.dumps(equals, sort_keys=True)}"
        size = v.page_size(page_size)
        async with self.ctx.db.org_tx(org_id) as s:
            repo = TenantRepository(s, org_id)
            await require_org(repo)
            return await list_page(
                self.ctx, repo, self.model, collection, size, page_token, self.view, **equals
            )

    async def update(
        self, principal: Principal, name: str, label: str, make_default: bool
    ) -> ConnectedAccountView:
        n = names.parse_child(name, "connectedAccounts")
        org_id = principal.scope_for(n.org_id)
        if label and not _LABEL.fullmatch(label):
            raise field_error("label", "at most 100 characters, no controls")
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(org_id) as s:
            repo = TenantRepository(s, org_id)
            row = await repo.get_for_update(m.ConnectedAccount, n.id)
            if row is None:
                raise NotFound()
            if label:
                row.label = label
            if make_default and not row.is_default:
                await _clear_default(s, row)
                row.is_default = True
            row.update_time = now
            await s.flush()
        return account_view(row)

    async def delete(self, principal: Principal, name: str) -> None:
        """Delete the account; its sealed secret goes with the row."""
        n = names.parse_child(name, "connectedAccounts")
        org_id = principal.scope_for(n.org_id)
        if self.revoker is not None:
            async with self.ctx.db.org_tx(org_id) as s:
                found = await get_or_404(TenantRepository(s, org_id), m.ConnectedAccount, n.id)
            await self.revoker(org_id, found)
        async with self.ctx.db.org_tx(org_id) as s:
            repo = TenantRepository(s, org_id)
            row = await get_or_404(repo, m.ConnectedAccount, n.id)
            was_default = row.is_default
            await account_changed(self.ctx, s, row, self.ctx.clock.now(), state="DELETED")
            await s.delete(row)
            await s.flush()
            if was_default:  # the owner's newest remaining account becomes the default
                nxt = (
                    await s.execute(
                        select(m.ConnectedAccount)
                        .where(
                            m.ConnectedAccount.org_id == org_id,
                            m.ConnectedAccount.owner_kind == row.owner_kind,
                            m.ConnectedAccount.owner_id == row.owner_id,
                            m.ConnectedAccount.connector_id == row.connector_id,
                        )
                        .order_by(m.ConnectedAccount.create_time.desc())
                        .limit(1)
                    )
                ).scalar_one_or_none()
                if nxt is not None:
                    nxt.is_default = True

    async def set_api_key(
        self, principal: Principal, name: str, api_key: str
    ) -> ConnectedAccountView:
        n = names.parse_child(name, "connectedAccounts")
        org_id = principal.scope_for(n.org_id)
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(org_id) as s:
            repo = TenantRepository(s, org_id)
            row = await repo.get_for_update(m.ConnectedAccount, n.id)
            if row is None:
                raise NotFound()
            c = self.connectors.catalog.get(row.connector_id)
            if c is None or c.auth.type != "api_key":
                raise FailedPrecondition(
                    "this account's connector does not take an API key", reason="NOT_BYOK"
                )
            pattern = c.auth.api_key.pattern if c.auth.api_key else ""
            check_secret(api_key, "api_key", pattern=pattern)
            row.api_key_hint = mask(api_key)
            await store_secret(self.ctx, s, row, {"api_key": api_key}, now)
            await s.flush()
        return account_view(row)


async def store_secret(
    ctx: ServiceContext, s: Any, row: m.ConnectedAccount, document: dict[str, Any], now: dt.datetime
) -> None:
    """Seal ``document`` as the account's secret (bumping its version) and make it ACTIVE.

    Used by connecting, BYOK and refreshing alike; a state change is published.
    """
    row.secret = await ctx.barrier.seal(
        row.org_id, "connected_accounts", row.id, "secret", json.dumps(document).encode(), session=s
    )
    row.secret_version += 1
    row.secret_create_time = row.secret_create_time or now
    row.secret_rotate_time = now
    row.update_time = now
    if row.state != "ACTIVE":
        row.state, row.state_reason, row.state_change_time = "ACTIVE", "", now
        await account_changed(ctx, s, row, now)
    else:
        row.state_reason = ""  # e.g. a remembered REFRESH_OUTCOME_UNKNOWN


async def account_changed(
    ctx: ServiceContext, s: Any, row: m.ConnectedAccount, now: dt.datetime, state: str = ""
) -> None:
    """Record ``row``'s state (or ``state``, e.g. DELETED) for WatchConnectedAccounts."""
    await account_events.record(
        s, ctx.db, row.org_id, row.id, row.connector_id, state or row.state, row.state_reason, now
    )


def _parse_owner(
    owner: str, org_id: str, field_name: str = "connected_account.owner"
) -> tuple[str, str]:
    for kind in OWNER_KINDS:
        if f"/{kind}/" in owner:
            n = names.parse_child(owner, kind, field_name)
            if n.org_id != org_id:
                # Another org's user looks exactly like a missing one.
                raise field_error(field_name, "does not exist in this organization")
            return kind, n.id
    raise field_error(
        field_name,
        "must be orgs/{org}/users/{user} or orgs/{org}/serviceAccounts/{service_account}",
        "INVALID_RESOURCE_NAME",
    )


def _check_params(c: Connector, given: dict[str, str]) -> dict[str, str]:
    wanted = {p.name: p for p in c.auth.connection_params}
    extra = sorted(set(given) - set(wanted))
    if extra:
        raise field_error(f"connected_account.connection_params.{extra[0]}", "is not a parameter")
    out: dict[str, str] = {}
    for name, p in wanted.items():
        value = given.get(name, "")
        if not value:
            raise field_error(
                f"connected_account.connection_params.{name}", "is required", "FIELD_REQUIRED"
            )
        if len(value) > 200 or not re.fullmatch(p.pattern, value):
            raise field_error(f"connected_account.connection_params.{name}", "has an invalid value")
        out[name] = value
    return out


async def _clear_default(s: Any, row: m.ConnectedAccount) -> None:
    await s.execute(
        update(m.ConnectedAccount)
        .where(
            m.ConnectedAccount.org_id == row.org_id,
            m.ConnectedAccount.owner_kind == row.owner_kind,
            m.ConnectedAccount.owner_id == row.owner_id,
            m.ConnectedAccount.connector_id == row.connector_id,
        )
        .values(is_default=False)
    )


class AccountWatch(FeedWatch[account_events.Event]):
    """An org's connected-account state changes; without a cursor, from now on."""

    table = "account_events"
    topic = ACCOUNTS

    async def fetch(
        self, org_id: str, seq: int, limit: int
    ) -> list[tuple[int, account_events.Event]]:
        return [(e.seq, e) for e in await account_events.after(self.db, org_id, seq, limit)]

    async def start_seq(self, org_id: str) -> int:
        return await account_events.latest(self.db, org_id)
