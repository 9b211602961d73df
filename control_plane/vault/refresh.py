"""The refresh coordinator: a fresh access token for a connected account, safely.

* Refresh-ahead: a token within the connector's ``refresh_ahead_seconds`` of its
  expiry is refreshed before use, never after a 401.
* Single flight: in one process, concurrent callers share one refresh; across
  replicas, one lease on the account's row (``refresh_lease_until``, taken by a
  conditional UPDATE on the version the taker read) admits one refresher; the
  others re-read until the version moves or the lease lapses (a crashed holder
  delays, never locks out).
* Durable before use: the new secret (a rotated refresh token included) is
  committed, compare-and-set on ``secret_version``, before anyone gets the
  access token. A response without ``refresh_token`` keeps the stored one; kept
  fields missing from a response keep their stored values.
* Failures are classified with the connector's rules (:mod:`.classify`). A dead
  refresh token first re-reads the vault: if another worker rotated it, that
  token is used; only otherwise is the account REVOKED. Operator errors mark it
  ERROR (users are not sent to reconnect); transient failures and rate limits
  keep the refresh token and set a cooldown, so callers get UNAVAILABLE with a
  retry hint instead of a retry storm.
* Every attempt and outcome goes through one seam, :attr:`RefreshCoordinator.events`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from sqlalchemy import update

from control_plane.connectors.authorize import fill_connection
from control_plane.connectors.loader import Catalog
from control_plane.domain.errors import FailedPrecondition, NotFound, Unavailable
from control_plane.logs import get_logger
from control_plane.services.connections import OAuthAppService, account_changed, store_secret
from control_plane.services.context import ServiceContext
from control_plane.storage import models as m
from control_plane.vault.classify import Failure, classify
from control_plane.vault.oauth_client import TokenEndpointError, kept_fields, request_token

LEASE = dt.timedelta(seconds=30)
WAIT_STEP = 0.05
OUTCOME_UNKNOWN = "REFRESH_OUTCOME_UNKNOWN"
GIVE_UP = dt.timedelta(hours=6)  # expired and unrefreshable this long: REFRESH_FAILING
MAX_WAIT = 35.0  # callers wait at most this long for another replica's refresh
_log = get_logger("agentauth.refresh")


@dataclass(frozen=True, slots=True)
class RefreshEvent:
    """An audit-worthy refresh fact (no token in it)."""

    org_id: str
    account_id: str
    connector_id: str
    outcome: str  # attempt | refreshed | reused | revoked | error | transient | waited
    reason: str = ""


@dataclass(frozen=True, slots=True)
class _Snapshot:
    version: int
    state: str
    state_reason: str
    last_activity: dt.datetime | None
    expires: dt.datetime | None
    lease_until: dt.datetime | None
    blocked_until: dt.datetime | None
    secret: dict[str, Any]
    connector_id: str
    connection: dict[str, str]
    metadata: dict[str, str]


class RefreshCoordinator:
    def __init__(
        self,
        ctx: ServiceContext,
        catalog: Catalog,
        oauth_apps: OAuthAppService,
        http: aiohttp.ClientSession,
        *,
        lease: dt.timedelta = LEASE,
    ) -> None:
        self.lease = lease
        self.ctx = ctx
        self.catalog = catalog
        self.oauth_apps = oauth_apps
        self.http = http
        self._inflight: dict[tuple[str, str], asyncio.Future[str]] = {}
        self.events: list[Callable[[RefreshEvent], None]] = [self._log_event]

    # ------------------------------------------------------------ public

    async def access_token(self, org_id: str, account_id: str, *, force: bool = False) -> str:
        """A live access token for the account, refreshing first when it is due."""
        snap = await self._read(org_id, account_id)
        if not force and not self._due(snap):
            return str(snap.secret["access_token"])
        self._check_cooldown(snap)
        key = (org_id, account_id)
        running = self._inflight.get(key)
        if running is not None:  # one refresh per account in this process
            return await asyncio.shield(running)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            token = await self._refresh(org_id, account_id, snap, force)
            future.set_result(token)
            return token
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            self._inflight.pop(key, None)

    # ------------------------------------------------------------ internals

    def _check_cooldown(self, snap: _Snapshot) -> None:
        now = self.ctx.clock.now()
        if snap.blocked_until is not None and snap.blocked_until > now:
            wait = max(1, int((snap.blocked_until - now).total_seconds() + 0.999))
            raise Unavailable(
                "the provider was unavailable; retry later",
                reason="REFRESH_COOLDOWN",
                metadata={"retryAfterSeconds": str(wait)},
            )

    def _connector(self, connector_id: str) -> Any:
        c = self.catalog.get(connector_id)
        if c is None or c.auth.type != "oauth2":
            raise FailedPrecondition("this account has no refreshable credential")
        return c

    def _due(self, snap: _Snapshot) -> bool:
        if snap.state not in ("ACTIVE", "EXPIRED"):
            raise FailedPrecondition(
                "the account needs the user to reconnect", reason="ACCOUNT_" + snap.state
            )
        if snap.expires is None:
            return False
        margin = self._connector(snap.connector_id).auth.refresh.refresh_ahead_seconds
        return snap.expires - dt.timedelta(seconds=margin) <= self.ctx.clock.now()

    async def _read(self, org_id: str, account_id: str) -> _Snapshot:
        async with self.ctx.db.org_tx(org_id) as s:
            row = await s.get(m.ConnectedAccount, (org_id, account_id))
            if row is None:
                raise NotFound()
            if row.secret is None:
                raise FailedPrecondition("the account is not connected", reason="ACCOUNT_PENDING")
            opened = await self.ctx.barrier.open(
                org_id, "connected_accounts", row.id, "secret", row.secret, session=s
            )
            return _Snapshot(
                row.secret_version,
                row.state,
                row.state_reason,
                row.last_refreshed_time or row.secret_create_time,
                row.access_expire_time,
                row.refresh_lease_until,
                row.refresh_blocked_until,
                json.loads(opened),
                row.connector_id,
                dict(row.connection_params),
                dict(row.provider_metadata),
            )

    async def _take_lease(self, org_id: str, account_id: str, version: int) -> bool:
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(org_id) as s:
            result = await s.execute(
                update(m.ConnectedAccount)
                .where(
                    m.ConnectedAccount.org_id == org_id,
                    m.ConnectedAccount.id == account_id,
                    m.ConnectedAccount.secret_version == version,
                    (m.ConnectedAccount.refresh_lease_until.is_(None))
                    | (m.ConnectedAccount.refresh_lease_until < now),
                )
                .values(refresh_lease_until=now + self.lease)
                .returning(m.ConnectedAccount.id)
            )
            return result.scalar_one_or_none() is not None

    async def _refresh(self, org_id: str, account_id: str, snap: _Snapshot, force: bool) -> str:
        waited = 0.0
        while True:
            if await self._take_lease(org_id, account_id, snap.version):
                break
            # Another replica holds the lease (or just finished): wait for its result.
            await asyncio.sleep(WAIT_STEP)
            waited += WAIT_STEP
            fresh = await self._read(org_id, account_id)
            if fresh.version != snap.version and (not self._due(fresh) or not force):
                self._emit(RefreshEvent(org_id, account_id, fresh.connector_id, "waited"))
                return str(fresh.secret["access_token"])
            self._check_cooldown(fresh)  # the holder failed transiently meanwhile
            if waited >= MAX_WAIT:
                raise Unavailable(
                    "the account's token is being refreshed; retry shortly",
                    reason="REFRESH_IN_PROGRESS",
                )
            snap = fresh
        # We hold the lease. Someone may have finished just before: look again.
        snap = await self._read(org_id, account_id)
        if not force and not self._due(snap):
            await self._release(org_id, account_id)
            return str(snap.secret["access_token"])
        return await self._exchange(org_id, account_id, snap)

    async def _exchange(self, org_id: str, account_id: str, snap: _Snapshot) -> str:
        c = self._connector(snap.connector_id)
        refresh_token = snap.secret.get("refresh_token")
        if not c.auth.refresh.supported or not isinstance(refresh_token, str):
            await self._release(org_id, account_id)
            raise FailedPrecondition(
                "the provider gave no refresh token; the user must reconnect",
                reason="REFRESH_UNSUPPORTED",
            )
        app = await self.oauth_apps.client_for(org_id, c.id)
        if app is None:
            await self._settle(
                org_id, account_id, snap, Failure("operator_error", "OAUTH_APP_MISSING")
            )
            raise FailedPrecondition("no OAuth app is configured", reason="OAUTH_APP_MISSING")
        self._emit(RefreshEvent(org_id, account_id, c.id, "attempt"))
        url = fill_connection(c.auth.token_url, {**snap.connection, **snap.metadata})
        try:
            tokens = await request_token(
                self.http,
                c,
                url,
                app[0],
                app[1],
                {"grant_type": "refresh_token", "refresh_token": refresh_token},
            )
        except TokenEndpointError as exc:
            failure = self._failure(c, exc)
            if failure.error_class == "refresh_race":
                # Was it rotated by someone else meanwhile? Then that token is good.
                again = await self._read(org_id, account_id)
                if again.version != snap.version:
                    self._emit(RefreshEvent(org_id, account_id, c.id, "reused", failure.reason))
                    return str(again.secret["access_token"])
                failure = Failure("revoked", self._why_dead(c, snap, failure.reason))
            await self._settle(org_id, account_id, snap, failure)
            raise self._error(failure) from None
        now = self.ctx.clock.now()
        document = dict(snap.secret)
        document.update(tokens.secret_document())  # no refresh_token in it: the old one stays
        if not tokens.refresh_token and "refresh_token" in snap.secret:
            document["refresh_token"] = snap.secret["refresh_token"]
        expires: dt.datetime | None = None
        if tokens.expires_in is not None:
            expires = now + dt.timedelta(seconds=tokens.expires_in)
        elif c.auth.refresh.default_access_ttl_seconds:
            expires = now + dt.timedelta(seconds=c.auth.refresh.default_access_ttl_seconds)
        metadata = {**snap.metadata, **kept_fields(tokens, c)}
        async with self.ctx.db.org_tx(org_id) as s:
            row = await s.get(m.ConnectedAccount, (org_id, account_id), with_for_update=True)
            if row is None or row.secret_version != snap.version:
                raise Unavailable("the account changed during the refresh", reason="REFRESH_RACE")
            row.access_expire_time = expires
            row.provider_metadata = metadata
            row.last_refreshed_time = now
            row.refresh_lease_until = None
            row.refresh_blocked_until = None
            await store_secret(self.ctx, s, row, document, now)
        self._emit(RefreshEvent(org_id, account_id, c.id, "refreshed"))
        return tokens.access_token

    def _why_dead(self, c: Any, snap: _Snapshot, reason: str) -> str:
        """A clearer reason for a dead refresh token when the history explains it."""
        if snap.state_reason == OUTCOME_UNKNOWN:
            # Our last refresh reached the provider but its answer was lost: a
            # rotating provider consumed the token we still hold.
            return "ROTATED_RESPONSE_LOST"
        days = c.auth.refresh.inactivity_expiry_days
        idle = snap.last_activity
        if days and idle is not None and self.ctx.clock.now() - idle > dt.timedelta(days=days):
            return "INACTIVITY"
        return reason

    def _failure(self, c: Any, exc: TokenEndpointError) -> Failure:
        if exc.status is None:
            # Unreachable, timed out or dropped: the token may still be good, or the
            # provider may have rotated it and the answer was lost.
            return Failure("transient", OUTCOME_UNKNOWN)
        body = json.dumps({"error": exc.code}).encode()
        return classify(c, "token", exc.status, exc.headers, exc.raw or body)

    def _error(self, failure: Failure) -> Exception:
        if failure.error_class in ("transient", "rate_limited"):
            hint = {"retryAfterSeconds": str(int(failure.retry_after or 1))}
            return Unavailable(
                "the provider is unavailable; retry later", reason=failure.reason, metadata=hint
            )
        if failure.error_class == "operator_error":
            return FailedPrecondition(
                "the connector's OAuth app is misconfigured", reason="OPERATOR_ERROR"
            )
        return FailedPrecondition("the user must reconnect this account", reason="ACCOUNT_REVOKED")

    async def _settle(
        self, org_id: str, account_id: str, snap: _Snapshot, failure: Failure
    ) -> None:
        now = self.ctx.clock.now()
        async with self.ctx.db.org_tx(org_id) as s:
            row = await s.get(m.ConnectedAccount, (org_id, account_id), with_for_update=True)
            if row is None:
                return
            if failure.error_class in ("transient", "rate_limited"):
                # A cooldown: nobody retries before it (no retry storm); the token stays.
                row.refresh_blocked_until = now + dt.timedelta(seconds=failure.retry_after or 1)
                row.refresh_lease_until = None
                if failure.reason == OUTCOME_UNKNOWN:
                    row.state_reason = OUTCOME_UNKNOWN  # remembered for the next attempt
                expired = row.access_expire_time is not None and row.access_expire_time <= now
                if expired:
                    # EXPIRED: the access token is gone and refresh is not possible yet;
                    # a long outage is named as such (the give-up window).
                    too_long = now - row.access_expire_time > GIVE_UP  # type: ignore[operator]
                    reason = "REFRESH_FAILING" if too_long else failure.reason
                    if row.state != "EXPIRED" or row.state_reason != reason:
                        if failure.reason != OUTCOME_UNKNOWN or too_long:
                            row.state_reason = reason
                        row.state, row.state_change_time = "EXPIRED", now
                        await account_changed(self.ctx, s, row, now)
                outcome = "transient"
            else:
                state = "ERROR" if failure.error_class == "operator_error" else "REVOKED"
                row.state, row.state_reason, row.state_change_time = state, failure.reason, now
                row.refresh_lease_until = None
                row.update_time = now
                await account_changed(self.ctx, s, row, now)
                outcome = "error" if state == "ERROR" else "revoked"
        self._emit(RefreshEvent(org_id, account_id, snap.connector_id, outcome, failure.reason))

    async def _release(self, org_id: str, account_id: str) -> None:
        async with self.ctx.db.org_tx(org_id) as s:
            await s.execute(
                update(m.ConnectedAccount)
                .where(m.ConnectedAccount.org_id == org_id, m.ConnectedAccount.id == account_id)
                .values(refresh_lease_until=None)
            )

    def _emit(self, event: RefreshEvent) -> None:
        for listener in self.events:
            listener(event)

    @staticmethod
    def _log_event(event: RefreshEvent) -> None:
        _log.info(
            "connected account refresh",
            org_id=event.org_id,
            account=event.account_id,
            connector=event.connector_id,
            outcome=event.outcome,
            reason=event.reason,
        )
