"""Connecting an account: hosted links, the OAuth authorization code flow, BYOK entry.

``GetAuthorizationLink`` gives the developer a short-lived, single-use link on our
HTTP surface for one connected account. For an OAuth connector, opening it and
continuing starts an authorization request (RFC 6749 §4.1) with PKCE S256
(RFC 7636) and a fresh, unguessable ``state`` bound to (org, account, connector)
and to the browser that started it (a cookie; RFC 6749 §10.12). The callback
checks the state once (an atomic update), the browser binding, RFC 9207 ``iss``
where the provider sends it, exchanges the code with our exact ``redirect_uri``
and the verifier, seals the tokens, keeps the connector's fields and marks the
account ACTIVE. For a BYOK connector the link opens a key-entry form instead.
No token, code or secret ever appears in a URL, page, log or error.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlalchemy import update

from control_plane.connectors.authorize import (
    authorization_url,
    fill_connection,
    requested_scopes,
)
from control_plane.connectors.model import Connector
from control_plane.domain import names
from control_plane.domain.errors import FailedPrecondition, NotFound
from control_plane.domain.principals import Principal
from control_plane.ids import is_id
from control_plane.logs import get_logger
from control_plane.services.connections import (
    ConnectedAccountService,
    ConnectorConfigService,
    OAuthAppService,
    account_changed,
    check_secret,
    mask,
    store_secret,
)
from control_plane.services.context import ServiceContext
from control_plane.storage import models as m
from control_plane.storage.repositories import TenantRepository
from control_plane.vault.oauth_client import (
    TokenEndpointError,
    granted_scopes,
    kept_fields,
    request_token,
    revoke_token,
)

_log = get_logger("agentauth.connect")
LINK_TTL = dt.timedelta(minutes=15)
STATE_TTL = dt.timedelta(minutes=10)
CALLBACK_PATH = "/oauth/callback"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _split(token: str) -> tuple[str, str] | None:
    """``{org_id}.{secret}`` → parts, or None for anything else."""
    org_id, dot, secret = token.partition(".")
    if not dot or not is_id(org_id) or not 32 <= len(secret) <= 64 or not secret.isascii():
        return None
    if not secret.replace("-", "").replace("_", "").isalnum():
        return None
    return org_id, secret


class FlowFailed(Exception):
    """The flow cannot go on; ``code`` is shown on the page (never secret)."""

    def __init__(self, code: str, status: int = 400) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class LinkPage:
    """What the start page needs."""

    connector: Connector
    account_label: str
    kind: str  # "oauth2" | "api_key"


@dataclass(frozen=True, slots=True)
class Started:
    authorize_url: str
    browser_nonce: str


@dataclass(frozen=True, slots=True)
class Finished:
    connector: Connector


class ConnectFlow:
    def __init__(
        self,
        ctx: ServiceContext,
        connectors: ConnectorConfigService,
        accounts: ConnectedAccountService,
        oauth_apps: OAuthAppService,
        http: aiohttp.ClientSession,
        public_base: str,
    ) -> None:
        self.ctx = ctx
        self.connectors = connectors
        self.accounts = accounts
        self.oauth_apps = oauth_apps
        self.http = http
        self.base = public_base.rstrip("/")

    @property
    def redirect_uri(self) -> str:
        return self.base + CALLBACK_PATH

    # ------------------------------------------------------------ the RPC

    async def create_link(self, principal: Principal, name: str) -> tuple[str, dt.datetime]:
        n = names.parse_child(name, "connectedAccounts")
        org_id = principal.scope_for(n.org_id)
        now = self.ctx.clock.now()
        secret = secrets.token_urlsafe(32)
        async with self.ctx.db.org_tx(org_id) as s:
            repo = TenantRepository(s, org_id)
            account = await repo.get(m.ConnectedAccount, n.id)
            if account is None:
                raise NotFound()
            c = self.connectors.connector(account.connector_id)
            if c.auth.type not in ("oauth2", "api_key"):
                raise FailedPrecondition("this connector is not connected by a user")
            if await self.connectors.enabled_tools(org_id, c, session=s) is None:
                raise FailedPrecondition(
                    f"the {c.id} connector is not enabled for this organization",
                    reason="CONNECTOR_DISABLED",
                )
            if c.auth.type == "oauth2" and await self.oauth_apps.client_for(org_id, c.id) is None:
                raise FailedPrecondition(
                    f"no OAuth app is configured for {c.id}", reason="OAUTH_APP_MISSING"
                )
            s.add(
                m.ConnectLink(
                    org_id=org_id,
                    id=_digest(secret),
                    account_id=account.id,
                    connector_id=c.id,
                    expire_time=now + LINK_TTL,
                    create_time=now,
                )
            )
        return f"{self.base}/connect/{org_id}.{secret}", now + LINK_TTL

    # ------------------------------------------------------------ the pages

    async def _live_link(self, token: str, s: Any, org_id: str) -> m.ConnectLink:
        parts = _split(token)
        if parts is None:
            raise FlowFailed("LINK_INVALID", 404)
        link: m.ConnectLink | None = await s.get(m.ConnectLink, (org_id, _digest(parts[1])))
        if link is None:
            raise FlowFailed("LINK_INVALID", 404)
        if link.used_time is not None:
            raise FlowFailed("LINK_USED", 410)
        if link.expire_time <= self.ctx.clock.now():
            raise FlowFailed("LINK_EXPIRED", 410)
        return link

    def org_of(self, token: str) -> str:
        parts = _split(token)
        if parts is None:
            raise FlowFailed("LINK_INVALID", 404)
        return parts[0]

    async def page(self, token: str) -> LinkPage:
        org_id = self.org_of(token)
        async with self.ctx.db.org_tx(org_id) as s:
            link = await self._live_link(token, s, org_id)
            account = await s.get(m.ConnectedAccount, (org_id, link.account_id))
        if account is None:
            raise FlowFailed("LINK_INVALID", 404)
        c = self.connectors.connector(link.connector_id)
        return LinkPage(c, account.label, c.auth.type)

    async def start(self, token: str) -> Started:
        """Begin the authorization request: new state, verifier and browser binding."""
        org_id = self.org_of(token)
        state_secret = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(48)  # 64 characters, RFC 7636 §4.1
        nonce = secrets.token_urlsafe(32)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .decode()
            .rstrip("=")
        )
        async with self.ctx.db.org_tx(org_id) as s:
            link = await self._live_link(token, s, org_id)
            c = self.connectors.connector(link.connector_id)
            if c.auth.type != "oauth2":
                raise FlowFailed("NOT_OAUTH", 400)
            account = await s.get(m.ConnectedAccount, (org_id, link.account_id))
            tools = await self.connectors.enabled_tools(org_id, c, session=s)
            app = await self.oauth_apps.client_for(org_id, c.id)
            if account is None or tools is None or app is None:
                raise FlowFailed("CONNECTOR_UNAVAILABLE", 409)
            url = authorization_url(
                c,
                client_id=app[0],
                redirect_uri=self.redirect_uri,
                state=f"{org_id}.{state_secret}",
                code_challenge=challenge if c.auth.pkce else None,
                enabled_tools=tools,
                connection=account.connection_params,
            )
            link.state_hash = _digest(state_secret)
            link.browser_hash = _digest(nonce)
            link.code_verifier = await self.ctx.barrier.seal(
                org_id, "connect_links", link.id, "code_verifier", verifier.encode(), session=s
            )
            link.requested_scopes = requested_scopes(c, tools)
        return Started(url, nonce)

    async def callback(
        self,
        *,
        state: str,
        code: str,
        iss: str | None,
        error: str | None,
        browser_nonce: str | None,
    ) -> Finished:
        parts = _split(state)
        if parts is None:
            raise FlowFailed("STATE_INVALID")
        org_id, state_secret = parts
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(org_id) as s:
            # Single use, atomically: whoever flips used_time owns this state.
            claimed = await s.execute(
                update(m.ConnectLink)
                .where(
                    m.ConnectLink.org_id == org_id,
                    m.ConnectLink.state_hash == _digest(state_secret),
                    m.ConnectLink.used_time.is_(None),
                    m.ConnectLink.expire_time > now,
                )
                .values(used_time=now)
                .returning(m.ConnectLink.id)
            )
            link_id = claimed.scalar_one_or_none()
            if link_id is None:
                raise FlowFailed("STATE_INVALID")
            link = await s.get(m.ConnectLink, (org_id, link_id))
            assert link is not None
            if not browser_nonce or not secrets.compare_digest(
                _digest(browser_nonce), link.browser_hash or ""
            ):
                raise FlowFailed("BROWSER_MISMATCH")
            verifier = (
                await self.ctx.barrier.open(
                    org_id,
                    "connect_links",
                    link.id,
                    "code_verifier",
                    link.code_verifier or b"",
                    session=s,
                )
            ).decode()
            account_id = link.account_id
            requested = list(link.requested_scopes or [])
            c = self.connectors.connector(link.connector_id)
        # The state is spent whatever happens next (a failed try needs a new start).
        if c.auth.sends_iss or iss is not None:
            if c.auth.issuer and iss != c.auth.issuer:
                raise FlowFailed("ISSUER_MISMATCH")
        if error is not None:
            code_text = error if error.replace("_", "").isalnum() and len(error) <= 64 else "error"
            await self._mark(org_id, account_id, "PENDING", "AUTHORIZATION_" + code_text.upper())
            raise FlowFailed("PROVIDER_" + code_text.upper())
        if not code or len(code) > 4096:
            raise FlowFailed("CODE_MISSING")
        app = await self.oauth_apps.client_for(org_id, c.id)
        async with self.ctx.db.org_tx(org_id) as s:
            account = await s.get(m.ConnectedAccount, (org_id, account_id))
        if app is None or account is None:
            raise FlowFailed("CONNECTOR_UNAVAILABLE", 409)
        params = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
        }
        if c.auth.pkce:
            params["code_verifier"] = verifier
        try:
            tokens = await request_token(
                self.http,
                c,
                fill_connection(c.auth.token_url, account.connection_params),
                app[0],
                app[1],
                params,
            )
        except TokenEndpointError as exc:
            await self._mark(org_id, account_id, "PENDING", "TOKEN_EXCHANGE_FAILED")
            raise FlowFailed("PROVIDER_" + exc.code.upper(), 502) from None
        now = self.ctx.clock.now()
        expires: dt.datetime | None = None
        if tokens.expires_in is not None:
            expires = now + dt.timedelta(seconds=tokens.expires_in)
        elif c.auth.refresh.default_access_ttl_seconds:
            expires = now + dt.timedelta(seconds=c.auth.refresh.default_access_ttl_seconds)
        async with self.ctx.db.org_tx(org_id) as s:
            row = await TenantRepository(s, org_id).get_for_update(m.ConnectedAccount, account_id)
            if row is None:
                raise FlowFailed("ACCOUNT_GONE", 410)
            row.granted_scopes = granted_scopes(tokens, requested)
            row.provider_metadata = kept_fields(tokens, c)
            row.access_expire_time = expires
            await store_secret(self.ctx, s, row, tokens.secret_document(), now)
        return Finished(c)

    async def _mark(self, org_id: str, account_id: str, state: str, reason: str) -> None:
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(org_id) as s:
            row = await TenantRepository(s, org_id).get_for_update(m.ConnectedAccount, account_id)
            if row is not None and row.state == "PENDING" and row.state_reason != reason[:64]:
                row.state_reason, row.update_time = reason[:64], now
                await account_changed(self.ctx, s, row, now)

    # ------------------------------------------------------------ deletion

    async def revoke_at_provider(self, org_id: str, row: m.ConnectedAccount) -> None:
        """Before an account is deleted: revoke its grant where the provider supports it.

        Best effort (the account is deleted either way); the outcome is logged
        without the token.
        """
        c = self.connectors.catalog.get(row.connector_id)
        if c is None or c.auth.type != "oauth2" or not c.auth.revoke_url or not row.secret:
            return
        app = await self.oauth_apps.client_for(org_id, c.id)
        if app is None:
            return
        doc = json.loads(
            await self.ctx.barrier.open(org_id, "connected_accounts", row.id, "secret", row.secret)
        )
        token, hint = doc.get("refresh_token"), "refresh_token"
        if not token:
            token, hint = doc.get("access_token"), "access_token"
        if not isinstance(token, str):
            return
        url = fill_connection(c.auth.revoke_url, row.connection_params)
        status = await revoke_token(self.http, c, url, app[0], app[1], token, hint)
        _log.info(
            "provider grant revoked" if status == 200 else "provider revocation failed",
            org_id=org_id,
            connector=c.id,
            status=status,
        )

    # ------------------------------------------------------------ BYOK

    async def submit_api_key(self, token: str, api_key: str) -> Finished:
        org_id = self.org_of(token)
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(org_id) as s:
            link = await self._live_link(token, s, org_id)
            c = self.connectors.connector(link.connector_id)
            if c.auth.type != "api_key":
                raise FlowFailed("NOT_BYOK")
            pattern = c.auth.api_key.pattern if c.auth.api_key else ""
            check_secret(api_key, "api_key", pattern=pattern)  # InvalidArgument → form again
            row = await TenantRepository(s, org_id).get_for_update(
                m.ConnectedAccount, link.account_id
            )
            if row is None:
                raise FlowFailed("ACCOUNT_GONE", 410)
            row.api_key_hint = mask(api_key)
            await store_secret(self.ctx, s, row, {"api_key": api_key}, now)
            link.used_time = now
        return Finished(c)
