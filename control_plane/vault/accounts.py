"""Connected accounts' credentials: sealing them, completing a grant, revoking it.

The account's ``secret`` column is one sealed JSON document (access and refresh
tokens, or the BYOK key), AAD-bound to (org, ``connected_accounts``, account id,
``secret``). It is opened only here and in the refresh coordinator and the
upstream caller, never returned: the operations below take what the caller
legitimately has (a code from the provider's redirect, a key the user typed)
and answer with states, never secrets.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import aiohttp

from control_plane.clock import Clock
from control_plane.connectors.authorize import fill_connection
from control_plane.connectors.model import Connector
from control_plane.domain.scope import OrgScope
from control_plane.logs import get_logger
from control_plane.storage import models as m
from control_plane.storage.db import Database
from control_plane.storage.units import OrgTx
from control_plane.tracing import CLIENT, Tracing, failed
from control_plane.vault.barrier import Barrier
from control_plane.vault.credentials import OAuthApps
from control_plane.vault.oauth_client import (
    TokenEndpointError,
    granted_scopes,
    kept_fields,
    request_token,
    revoke_token,
)

_log = get_logger("agentauth.vault")
TABLE, FIELD = "connected_accounts", "secret"


class AuthorizationFailed(Exception):
    """Completing a grant failed; ``code`` is safe to show (no token, code or secret)."""

    def __init__(self, code: str, status: int = 502) -> None:
        super().__init__(code)
        self.code = code
        self.status = status


def access_expiry(
    connector: Connector, expires_in: int | None, now: dt.datetime
) -> dt.datetime | None:
    """When an access token stops working: the provider's ``expires_in``, else the
    connector's documented default lifetime, else unknown (None)."""
    if expires_in is not None:
        return now + dt.timedelta(seconds=expires_in)
    if connector.auth.refresh.default_access_ttl_seconds:
        return now + dt.timedelta(seconds=connector.auth.refresh.default_access_ttl_seconds)
    return None


async def store_secret(
    barrier: Barrier, tx: OrgTx, row: m.ConnectedAccount, document: dict[str, Any], now: dt.datetime
) -> None:
    """Seal ``document`` as the account's secret (bumping its version) and make it ACTIVE.

    Used by connecting, BYOK and refreshing alike; a state change is published.
    """
    row.secret = await barrier.seal(
        tx.scope, TABLE, row.id, FIELD, json.dumps(document).encode(), tx=tx
    )
    row.secret_version += 1
    row.secret_create_time = row.secret_create_time or now
    row.secret_rotate_time = now
    row.update_time = now
    # A new secret supersedes every refresh in flight for the old one: its lease,
    # cooldown and intent go (a refresh that still holds the old version fails its
    # compare-and-set), so a reconnect never waits out a dead attempt's lease.
    row.refresh_lease_until = None
    row.refresh_blocked_until = None
    row.refresh_sent_version = None
    if row.state != "ACTIVE":
        row.state, row.state_reason, row.state_change_time = "ACTIVE", "", now
        await tx.account_events.changed(row, now)
    else:
        row.state_reason = ""  # e.g. a remembered REFRESH_OUTCOME_UNKNOWN


async def open_secret(barrier: Barrier, tx: OrgTx, row: m.ConnectedAccount) -> dict[str, Any]:
    """The account's sealed document (vault-internal)."""
    if row.secret is None:
        return {}
    opened = await barrier.open(tx.scope, TABLE, row.id, FIELD, row.secret, tx=tx)
    doc = json.loads(opened)
    return doc if isinstance(doc, dict) else {}


class AccountVault:
    def __init__(
        self,
        db: Database,
        barrier: Barrier,
        clock: Clock,
        oauth_apps: OAuthApps,
        http: aiohttp.ClientSession,
        tracing: Tracing,
    ) -> None:
        self._db = db
        self._barrier = barrier
        self._clock = clock
        self._apps = oauth_apps
        self._http = http
        self._tracing = tracing

    async def set_api_key(
        self, tx: OrgTx, row: m.ConnectedAccount, api_key: str, hint: str, now: dt.datetime
    ) -> None:
        """Seal a user's own key (already checked against the provider's format)."""
        row.api_key_hint = hint
        await store_secret(self._barrier, tx, row, {"api_key": api_key}, now)

    async def complete_authorization(
        self,
        scope: OrgScope,
        account_id: str,
        connector: Connector,
        *,
        code: str,
        code_verifier: str | None,
        redirect_uri: str,
        requested_scopes: list[str],
    ) -> None:
        """Exchange an authorization code (RFC 6749 §4.1.3) and store the grant.

        Raises :class:`AuthorizationFailed` with a safe code; the account is left
        PENDING with the reason when the provider refused.
        """
        app = await self._apps.client_for(scope, connector.id)
        async with self._db.org_tx(scope) as tx:
            account = await tx.accounts.get(account_id)
        if app is None or account is None:
            raise AuthorizationFailed("CONNECTOR_UNAVAILABLE", 409)
        params = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier is not None:
            params["code_verifier"] = code_verifier
        attributes = {"agentauth.connector": connector.id, "agentauth.grant": "authorization_code"}
        try:
            with self._tracing.span("token_endpoint", CLIENT, attributes) as span:
                try:
                    tokens = await request_token(
                        self._http,
                        connector,
                        fill_connection(connector.auth.token_url, account.connection_params),
                        app.client_id,
                        app.client_secret.reveal(),
                        params,
                    )
                except TokenEndpointError as exc:
                    if span is not None and exc.status is not None:
                        span.set_attribute("http.response.status_code", exc.status)
                    raise
        except TokenEndpointError as exc:
            await self.mark_pending(scope, account_id, "TOKEN_EXCHANGE_FAILED")
            raise AuthorizationFailed("PROVIDER_" + exc.code.upper(), 502) from None
        now = self._clock.now()
        async with self._db.org_tx(scope) as tx:
            row = await tx.accounts.get_for_update(account_id)
            if row is None:
                raise AuthorizationFailed("ACCOUNT_GONE", 410)
            row.granted_scopes = granted_scopes(tokens, requested_scopes)
            row.provider_metadata = kept_fields(tokens, connector)
            row.access_expire_time = access_expiry(connector, tokens.expires_in, now)
            await store_secret(self._barrier, tx, row, tokens.secret_document(), now)

    async def mark_pending(self, scope: OrgScope, account_id: str, reason: str) -> None:
        """Remember why a PENDING account is not connected yet (published once per reason)."""
        now = self._clock.now()
        async with self._db.org_tx(scope) as tx:
            row = await tx.accounts.get_for_update(account_id)
            if row is not None and row.state == "PENDING" and row.state_reason != reason[:64]:
                row.state_reason, row.update_time = reason[:64], now
                await tx.account_events.changed(row, now)

    async def revoke_grant(self, scope: OrgScope, account_id: str, connector: Connector) -> None:
        """Before an account is deleted: revoke its grant where the provider supports it.

        Best effort (the account is deleted either way); the outcome is logged
        without the token. RFC 7009 §2.1: the refresh token is revoked when there
        is one (which also ends its access tokens), else the access token; a
        connector whose provider revokes by access token says so
        (``auth.revoke.token: access``, e.g. Dropbox, GitHub, Notion).
        """
        if connector.auth.type != "oauth2" or not connector.auth.revoke_url:
            return
        async with self._db.org_tx(scope) as tx:
            row = await tx.accounts.get(account_id)
            if row is None or not row.secret:
                return
            doc = await open_secret(self._barrier, tx, row)
            connection = {**row.provider_metadata, **row.connection_params}
        app = await self._apps.client_for(scope, connector.id)
        if app is None:
            return
        token, hint = doc.get("refresh_token"), "refresh_token"
        if not token or connector.auth.revocation.token == "access":
            token, hint = doc.get("access_token"), "access_token"
        if not isinstance(token, str):
            return
        try:
            url = fill_connection(connector.auth.revoke_url, connection)
        except ValueError:  # a kept host that is not a plain https origin: not sent
            status = None
        else:
            attributes = {"agentauth.connector": connector.id, "agentauth.token_hint": hint}
            with self._tracing.span("revocation_endpoint", CLIENT, attributes) as span:
                secret = app.client_secret.reveal()
                status = await revoke_token(
                    self._http, connector, url, app.client_id, secret, token, hint
                )
                if span is not None and status is not None:
                    span.set_attribute("http.response.status_code", status)
                if status is None or not 200 <= status < 300:
                    failed(span, "revocation_failed")
        _log.info(
            "provider grant revoked"
            if status is not None and 200 <= status < 300
            else "provider revocation failed",
            org_id=scope.org_id,
            connector=connector.id,
            status=status,
        )
