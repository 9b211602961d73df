"""Connected accounts: one owner's (a user's or a service account's) credential at one
provider — an OAuth grant (Pattern 2) or the owner's own API key (BYOK, Pattern 3).

Several per owner and connector, each with a label, one default; states PENDING,
ACTIVE, EXPIRED, REVOKED, ERROR with a reason. The credential itself lives in the
vault (:mod:`control_plane.vault.accounts`); this module never sees it. Another
org's names answer exactly like missing ones.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from control_plane.connectors.model import Connector
from control_plane.domain import names
from control_plane.domain import validation as v
from control_plane.domain.entities import Page
from control_plane.domain.errors import FailedPrecondition, NotFound, field_error
from control_plane.domain.principals import Principal
from control_plane.domain.scope import OrgScope
from control_plane.ids import new_id
from control_plane.services.connectors import ConnectorConfigService
from control_plane.services.context import ServiceContext, get_or_404, list_page, require_org
from control_plane.services.credential_names import CONNECTOR_ID, check_secret, mask
from control_plane.services.feed_watch import FeedWatch
from control_plane.services.tenant_crud import TenantCrud
from control_plane.storage import account_events
from control_plane.storage import models as m
from control_plane.storage.units import OrgTx
from control_plane.tokens.revocation_feed import ACCOUNTS
from control_plane.vault.accounts import AccountVault
from control_plane.vault.refresh import RefreshCoordinator

_LABEL = re.compile(r"^[^\x00-\x1f\x7f]{0,100}$")
OWNER_KINDS = ("users", "serviceAccounts")


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


class ConnectedAccountService(TenantCrud[m.ConnectedAccount, ConnectedAccountView]):
    model = m.ConnectedAccount
    collection = "connectedAccounts"
    repository = "accounts"

    def __init__(
        self,
        ctx: ServiceContext,
        connectors: ConnectorConfigService,
        vault: AccountVault,
        refresher: RefreshCoordinator,
    ) -> None:
        super().__init__(ctx, account_view)
        self.connectors = connectors
        self.vault = vault
        self.refresher = refresher

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
        org_id = principal.scope_for(names.parse_org(parent, "parent")).org_id
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

        async def precheck(tx: OrgTx) -> None:
            owners: Any = tx.users if kind == "users" else tx.service_accounts
            if await owners.get(owner_id) is None:
                raise field_error("connected_account.owner", "does not exist in this organization")
            if await self.connectors.enabled_tools(tx, c) is None:
                raise FailedPrecondition(
                    f"the {c.id} connector is not enabled for this organization",
                    reason="CONNECTOR_DISABLED",
                )
            siblings = await tx.accounts.page(
                None, 1, owner_kind=kind, owner_id=owner_id, connector_id=c.id
            )
            extra["is_default"] = not siblings
            await tx.account_events.record(extra["id"], c.id, "PENDING", awaiting, now)

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
        scope = principal.scope_for(names.parse_org(parent, "parent"))
        equals: dict[str, str] = {}
        if owner:
            kind, owner_id = _parse_owner(owner, scope.org_id, field_name="owner")
            equals.update(owner_kind=kind, owner_id=owner_id)
        if connector:
            if not re.fullmatch(CONNECTOR_ID, connector):
                raise field_error("connector", "is not a connector id")
            equals["connector_id"] = connector
        # Page tokens are bound to the filter, so one cannot be reused under another.
        collection = f"{self.collection}?{json.dumps(equals, sort_keys=True)}"
        size = v.page_size(page_size)
        async with self.ctx.db.org_tx(scope) as tx:
            await require_org(tx)
            return await list_page(
                self.ctx, tx, tx.accounts, collection, size, page_token, self.view, **equals
            )

    async def update(
        self, principal: Principal, name: str, label: str, make_default: bool
    ) -> ConnectedAccountView:
        n = names.parse_child(name, "connectedAccounts")
        scope = principal.scope_for(n.org_id)
        if label and not _LABEL.fullmatch(label):
            raise field_error("label", "at most 100 characters, no controls")
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(scope) as tx:
            row = await tx.accounts.get_for_update(n.id)
            if row is None:
                raise NotFound()
            if label:
                row.label = label
            if make_default and not row.is_default:
                await tx.accounts.clear_default(row.owner_kind, row.owner_id, row.connector_id)
                row.is_default = True
            row.update_time = now
            await tx.flush()
        return account_view(row)

    async def delete(self, principal: Principal, name: str) -> None:
        """Revoke the grant at the provider (best effort), then delete the account; its
        sealed secret goes with the row."""
        n = names.parse_child(name, "connectedAccounts")
        scope = principal.scope_for(n.org_id)
        async with self.ctx.db.org_tx(scope) as tx:
            found = await get_or_404(tx.accounts, n.id)
        connector = self.connectors.catalog.get(found.connector_id)
        if connector is not None:
            await self.vault.revoke_grant(scope, n.id, connector)
        async with self.ctx.db.org_tx(scope) as tx:
            row = await get_or_404(tx.accounts, n.id)
            was_default = row.is_default
            await tx.account_events.changed(row, self.ctx.clock.now(), state="DELETED")
            await tx.accounts.delete_row(row)
            if was_default:  # the owner's newest remaining account becomes the default
                nxt = await tx.accounts.newest(row.owner_kind, row.owner_id, row.connector_id)
                if nxt is not None:
                    nxt.is_default = True

    async def set_api_key(
        self, principal: Principal, name: str, api_key: str
    ) -> ConnectedAccountView:
        n = names.parse_child(name, "connectedAccounts")
        scope = principal.scope_for(n.org_id)
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(scope) as tx:
            row = await tx.accounts.get_for_update(n.id)
            if row is None:
                raise NotFound()
            c = self.connectors.catalog.get(row.connector_id)
            if c is None or c.auth.type != "api_key":
                raise FailedPrecondition(
                    "this account's connector does not take an API key", reason="NOT_BYOK"
                )
            pattern = c.auth.api_key.pattern if c.auth.api_key else ""
            check_secret(api_key, "api_key", pattern=pattern)
            await self.vault.set_api_key(tx, row, api_key, mask(api_key), now)
            await tx.flush()
        return account_view(row)

    async def refresh(self, principal: Principal, name: str, force: bool) -> ConnectedAccountView:
        """Make an OAuth account's access token fresh; the account, never the token."""
        n = names.parse_child(name, "connectedAccounts")
        scope = principal.scope_for(n.org_id)
        # A missing account is NOT_FOUND from the coordinator's own read.
        await self.refresher.ensure_fresh(scope, n.id, force=force)
        return await self._get(principal, n.org_id, n.id)


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
        "must be orgs/{org}/users/{user} or orgs/{org}/serviceAccounts/{service_account} "
        + names.IDS_ARE,
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


class AccountWatch(FeedWatch[account_events.Event]):
    """An org's connected-account state changes; without a cursor, from now on."""

    table = "account_events"
    topic = ACCOUNTS

    async def fetch(
        self, scope: OrgScope, seq: int, limit: int
    ) -> list[tuple[int, account_events.Event]]:
        async with self.db.org_tx(scope) as tx:
            return [(e.seq, e) for e in await tx.account_events.after(seq, limit)]

    async def start_seq(self, scope: OrgScope) -> int:
        async with self.db.org_tx(scope) as tx:
            return await tx.account_events.latest()
