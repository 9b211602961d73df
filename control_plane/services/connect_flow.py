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
import secrets
from dataclasses import dataclass

from control_plane.connectors.authorize import authorization_url, requested_scopes
from control_plane.connectors.model import Connector
from control_plane.domain import names
from control_plane.domain.errors import FailedPrecondition, NotFound, Unauthenticated
from control_plane.domain.principals import Principal, Role
from control_plane.domain.scope import OrgScope
from control_plane.ids import is_id
from control_plane.logs import get_logger
from control_plane.services.connectors import ConnectorConfigService
from control_plane.services.context import ServiceContext
from control_plane.services.credential_names import check_secret, mask
from control_plane.storage import models as m
from control_plane.storage.units import OrgTx
from control_plane.vault.accounts import AccountVault, AuthorizationFailed
from control_plane.vault.credentials import OAuthApps

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
        oauth_apps: OAuthApps,
        vault: AccountVault,
        public_base: str,
    ) -> None:
        self.ctx = ctx
        self.connectors = connectors
        self.oauth_apps = oauth_apps
        self.vault = vault
        self.base = public_base.rstrip("/")

    @property
    def redirect_uri(self) -> str:
        return self.base + CALLBACK_PATH

    # ------------------------------------------------------------ the RPC

    async def create_link(self, principal: Principal, name: str) -> tuple[str, dt.datetime]:
        n = names.parse_child(name, "connectedAccounts")
        scope = principal.scope_for(n.org_id)
        org_id = scope.org_id
        now = self.ctx.clock.now()
        secret = secrets.token_urlsafe(32)
        async with self.ctx.db.org_tx(scope) as tx:
            account = await tx.accounts.get(n.id)
            if account is None:
                raise NotFound()
            c = self.connectors.connector(account.connector_id)
            if c.auth.type not in ("oauth2", "api_key"):
                raise FailedPrecondition("this connector is not connected by a user")
            if await self.connectors.enabled_tools(tx, c) is None:
                raise FailedPrecondition(
                    f"the {c.id} connector is not enabled for this organization",
                    reason="CONNECTOR_DISABLED",
                )
            if c.auth.type == "oauth2" and not await self.oauth_apps.configured(tx, c.id):
                raise FailedPrecondition(
                    f"no OAuth app is configured for {c.id}", reason="OAUTH_APP_MISSING"
                )
            await tx.connect_links.add(
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

    async def _live_link(self, token: str, tx: OrgTx) -> m.ConnectLink:
        parts = _split(token)
        if parts is None:
            raise FlowFailed("LINK_INVALID", 404)
        link = await tx.connect_links.get(_digest(parts[1]))
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

    def _scope(self, token: str) -> OrgScope:
        """The link names its org; the link's own secret is what is checked in it."""
        return OrgScope.to_authenticate(self.org_of(token), credential="connect-link")

    async def authenticate_link(self, token: str) -> Principal:
        """A live link is a capability for one account: the request pipeline's
        authentication of the connect pages. A bad, used or expired link (another
        org's included) is UNAUTHENTICATED with the page's code as the reason."""
        try:
            scope = self._scope(token)
            async with self.ctx.db.org_tx(scope) as tx:
                link = await self._live_link(token, tx)
        except FlowFailed as exc:
            raise Unauthenticated("this link is not valid", reason=exc.code) from None
        return Principal(Role.CONNECT_LINK, link.id[:16], scope.org_id)

    async def authenticate_state(self, state: str) -> Principal:
        """The authorization response's ``state`` names a pending start of one link.

        Only checked here (read-only); the callback spends it once, atomically.
        """
        parts = _split(state)
        if parts is None:
            raise Unauthenticated("this sign-in attempt is not valid", reason="STATE_INVALID")
        scope = OrgScope.to_authenticate(parts[0], credential="oauth-state")
        async with self.ctx.db.org_tx(scope) as tx:
            link = await tx.connect_links.pending_state(_digest(parts[1]), self.ctx.clock.now())
        if link is None:
            raise Unauthenticated("this sign-in attempt is not valid", reason="STATE_INVALID")
        return Principal(Role.CONNECT_LINK, link[:16], scope.org_id)

    async def page(self, token: str) -> LinkPage:
        scope = self._scope(token)
        async with self.ctx.db.org_tx(scope) as tx:
            link = await self._live_link(token, tx)
            account = await tx.accounts.get(link.account_id)
        if account is None:
            raise FlowFailed("LINK_INVALID", 404)
        c = self.connectors.connector(link.connector_id)
        return LinkPage(c, account.label, c.auth.type)

    async def start(self, token: str) -> Started:
        """Begin the authorization request: new state, verifier and browser binding."""
        scope = self._scope(token)
        org_id = scope.org_id
        state_secret = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(48)  # 64 characters, RFC 7636 §4.1
        nonce = secrets.token_urlsafe(32)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .decode()
            .rstrip("=")
        )
        async with self.ctx.db.org_tx(scope) as tx:
            link = await self._live_link(token, tx)
            c = self.connectors.connector(link.connector_id)
            if c.auth.type != "oauth2":
                raise FlowFailed("NOT_OAUTH", 400)
            account = await tx.accounts.get(link.account_id)
            tools = await self.connectors.enabled_tools(tx, c)
            client_id = await self.oauth_apps.client_id(tx, c.id)
            if account is None or tools is None or client_id is None:
                raise FlowFailed("CONNECTOR_UNAVAILABLE", 409)
            url = authorization_url(
                c,
                client_id=client_id,
                redirect_uri=self.redirect_uri,
                state=f"{org_id}.{state_secret}",
                code_challenge=challenge if c.auth.pkce else None,
                enabled_tools=tools,
                connection=account.connection_params,
            )
            link.state_hash = _digest(state_secret)
            link.browser_hash = _digest(nonce)
            link.code_verifier = await self.ctx.barrier.seal(
                scope, "connect_links", link.id, "code_verifier", verifier.encode(), tx=tx
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
        scope = OrgScope.to_authenticate(org_id, credential="oauth-state")
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(scope) as tx:
            # Single use, atomically: whoever flips used_time owns this state.
            link_id = await tx.connect_links.claim_state(_digest(state_secret), now)
            if link_id is None:
                raise FlowFailed("STATE_INVALID")
            link = await tx.connect_links.get(link_id)
            assert link is not None
            if not browser_nonce or not secrets.compare_digest(
                _digest(browser_nonce), link.browser_hash or ""
            ):
                raise FlowFailed("BROWSER_MISMATCH")
            verifier = (
                await self.ctx.barrier.open(
                    scope,
                    "connect_links",
                    link.id,
                    "code_verifier",
                    link.code_verifier or b"",
                    tx=tx,
                )
            ).decode()
            account_id = link.account_id
            requested = list(link.requested_scopes or [])
            c = self.connectors.connector(link.connector_id)
        # The state is spent whatever happens next (a failed try needs a new start).
        # RFC 9207 §2.4. The loader requires an issuer with sends_iss; a connector
        # built without one fails closed here instead of skipping the comparison.
        if c.auth.sends_iss and not c.auth.issuer:
            raise FlowFailed("ISSUER_MISMATCH")
        if c.auth.sends_iss or iss is not None:
            if c.auth.issuer and iss != c.auth.issuer:
                raise FlowFailed("ISSUER_MISMATCH")
        if error is not None:
            code_text = error if error.replace("_", "").isalnum() and len(error) <= 64 else "error"
            await self.vault.mark_pending(scope, account_id, "AUTHORIZATION_" + code_text.upper())
            raise FlowFailed("PROVIDER_" + code_text.upper())
        if not code or len(code) > 4096:
            raise FlowFailed("CODE_MISSING")
        try:
            await self.vault.complete_authorization(
                scope,
                account_id,
                c,
                code=code,
                code_verifier=verifier if c.auth.pkce else None,
                redirect_uri=self.redirect_uri,
                requested_scopes=requested,
            )
        except AuthorizationFailed as exc:
            raise FlowFailed(exc.code, exc.status) from None
        return Finished(c)

    # ------------------------------------------------------------ BYOK

    async def submit_api_key(self, token: str, api_key: str) -> Finished:
        scope = self._scope(token)
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(scope) as tx:
            link = await self._live_link(token, tx)
            c = self.connectors.connector(link.connector_id)
            if c.auth.type != "api_key":
                raise FlowFailed("NOT_BYOK")
            pattern = c.auth.api_key.pattern if c.auth.api_key else ""
            check_secret(api_key, "api_key", pattern=pattern)  # InvalidArgument → form again
            row = await tx.accounts.get_for_update(link.account_id)
            if row is None:
                raise FlowFailed("ACCOUNT_GONE", 410)
            await self.vault.set_api_key(tx, row, api_key, mask(api_key), now)
            link.used_time = now
        return Finished(c)
