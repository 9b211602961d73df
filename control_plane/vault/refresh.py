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
import contextlib
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from control_plane import deadlines
from control_plane.clock import Clock
from control_plane.connectors.authorize import fill_connection
from control_plane.connectors.loader import Catalog
from control_plane.domain.errors import FailedPrecondition, NotFound, Unavailable
from control_plane.domain.scope import OrgScope
from control_plane.logs import get_logger
from control_plane.storage.db import Database
from control_plane.tracing import CLIENT, Tracing
from control_plane.vault.accounts import access_expiry, open_secret, store_secret
from control_plane.vault.barrier import Barrier
from control_plane.vault.classify import Failure, classify
from control_plane.vault.credentials import OAuthApps
from control_plane.vault.oauth_client import TokenEndpointError, kept_fields, request_token

LEASE = dt.timedelta(seconds=30)
WAIT_STEP = 0.05
OUTCOME_UNKNOWN = "REFRESH_OUTCOME_UNKNOWN"
NOT_SENT = "PROVIDER_UNREACHABLE"  # nothing left this process: the token is unchanged
DRAIN_TIMEOUT = 20.0  # the provider's total timeout (15 s) plus the commit
GIVE_UP = dt.timedelta(hours=6)  # expired and unrefreshable this long: REFRESH_FAILING
MAX_WAIT = 35.0  # callers wait at most this long for another replica's refresh
_log = get_logger("agentauth.refresh")


@dataclass(frozen=True, slots=True)
class RefreshEvent:
    """An audit-worthy refresh fact (no token in it)."""

    org_id: str
    account_id: str
    connector_id: str
    # attempt, then exactly one of: refreshed | reused | revoked | error | transient |
    # cancelled (| gone: the account was deleted meanwhile); or waited (no attempt)
    outcome: str
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
    sent_version: int | None  # an earlier attempt's recorded intent (see refresh_sent_version)


def _not_refreshable() -> FailedPrecondition:
    return FailedPrecondition(
        "this account has no refreshable credential", reason="REFRESH_UNSUPPORTED"
    )


def _in_progress() -> Unavailable:
    """Another replica's refresh outlasted this caller's wait: come back shortly."""
    return Unavailable(
        "the account's token is being refreshed; retry shortly",
        reason="REFRESH_IN_PROGRESS",
        metadata={"retryAfterSeconds": "1"},
    )


def _snapshot(row: Any, opened: dict[str, Any]) -> _Snapshot:
    return _Snapshot(
        row.secret_version,
        row.state,
        row.state_reason,
        row.last_refreshed_time or row.secret_create_time,
        row.access_expire_time,
        row.refresh_lease_until,
        row.refresh_blocked_until,
        opened,
        row.connector_id,
        dict(row.connection_params),
        dict(row.provider_metadata),
        row.refresh_sent_version,
    )


def _access(snap: _Snapshot) -> str:
    token = snap.secret.get("access_token")
    if not isinstance(token, str):
        raise _not_refreshable()
    return token


class RefreshCoordinator:
    def __init__(
        self,
        db: Database,
        barrier: Barrier,
        clock: Clock,
        catalog: Catalog,
        oauth_apps: OAuthApps,
        http: aiohttp.ClientSession,
        *,
        lease: dt.timedelta = LEASE,
        listeners: Sequence[Callable[[RefreshEvent], None]] = (),
        tracing: Tracing,
    ) -> None:
        self.lease = lease
        self.tracing = tracing
        self.db = db
        self.barrier = barrier
        self.clock = clock
        self.catalog = catalog
        self.oauth_apps = oauth_apps
        self.http = http
        # One refresh per account in this process; callers share it and may leave.
        self._inflight: dict[tuple[str, str], asyncio.Task[str]] = {}
        # Provider exchanges with their commit: never cancelled by a caller, and
        # waited for by :meth:`drain` at shutdown.
        self._critical: set[asyncio.Task[str]] = set()
        self._listeners: tuple[Callable[[RefreshEvent], None], ...] = (
            self._log_event,
            *listeners,
        )

    # ------------------------------------------------------------ public

    async def ensure_fresh(
        self,
        scope: OrgScope,
        account_id: str,
        *,
        force: bool = False,
        idle_before: dt.datetime | None = None,
    ) -> None:
        """Make the account's access token fresh (when due, or always with ``force``).

        With ``idle_before`` (keep-alive), refresh only while the account has not
        been refreshed or connected since then, which another replica may have just
        done. The operation the rest of the system sees: it answers with nothing or
        an error, never with the token (``RefreshConnectedAccount``, keep-alive).
        """
        await self.access_token(scope, account_id, force=force, idle_before=idle_before)

    async def drain(self, seconds: float = DRAIN_TIMEOUT) -> int:
        """Shutdown: wait for every provider exchange in flight to be committed (at most
        ``seconds``, which covers the provider's own timeout); then cancel the callers'
        waits. Returns how many exchanges were still running at the deadline."""
        pending = {t for t in self._critical if not t.done()}
        if pending:
            _log.info("waiting for refreshes in flight", count=len(pending))
            _, pending = await asyncio.wait(pending, timeout=seconds)
            for task in pending:
                task.cancel()  # records its own outcome (cancelled) on the way out
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        for task in list(self._inflight.values()):
            task.cancel()
        return len(pending)

    # ------------------------------------------------------------ vault-internal

    async def access_token(
        self,
        scope: OrgScope,
        account_id: str,
        *,
        force: bool = False,
        idle_before: dt.datetime | None = None,
    ) -> str:
        """A live access token for the account, refreshing first when it is due.

        Vault-internal: only the vault's own upstream caller uses the value. The
        wait honours the caller's deadline (:mod:`control_plane.deadlines`): before
        it runs out the caller gets ``UNAVAILABLE`` with a retry hint, while the
        refresh itself carries on.
        """
        snap = await self._read(scope, account_id)
        self._connector(snap.connector_id)  # an API key has nothing to refresh
        self._check_state(snap)  # forced or not: a dead refresh token is never sent again
        if not self._wanted(snap, force, idle_before):
            return _access(snap)
        self._check_cooldown(snap)
        key = (scope.org_id, account_id)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._refresh(scope, account_id, snap, force, idle_before)
            )
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        budget = deadlines.budget(MAX_WAIT + self.lease.total_seconds())
        try:
            async with asyncio.timeout(budget):
                return await asyncio.shield(task)
        except TimeoutError:
            if task.done():
                raise
            raise _in_progress() from None

    # ------------------------------------------------------------ internals

    def _forget(self, key: tuple[str, str], task: asyncio.Task[str]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: the callers that waited re-raised it

    def _wanted(self, snap: _Snapshot, force: bool, idle_before: dt.datetime | None) -> bool:
        if idle_before is not None:
            return snap.last_activity is None or snap.last_activity < idle_before
        return force or self._due(snap)

    def _check_cooldown(self, snap: _Snapshot) -> None:
        now = self.clock.now()
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
            raise _not_refreshable()
        return c

    @staticmethod
    def _check_state(snap: _Snapshot) -> None:
        if snap.state not in ("ACTIVE", "EXPIRED"):
            raise FailedPrecondition(
                "the account needs the user to reconnect", reason="ACCOUNT_" + snap.state
            )

    def _due(self, snap: _Snapshot) -> bool:
        """Within the refresh-ahead margin (the caller has checked the state)."""
        if snap.expires is None:
            return False
        margin = self._connector(snap.connector_id).auth.refresh.refresh_ahead_seconds
        return snap.expires - dt.timedelta(seconds=margin) <= self.clock.now()

    async def _read(self, scope: OrgScope, account_id: str) -> _Snapshot:
        async with self.db.org_tx(scope) as tx:
            row = await tx.accounts.get(account_id)
            if row is None:
                raise NotFound()
            if row.secret is None:
                raise FailedPrecondition("the account is not connected", reason="ACCOUNT_PENDING")
            return _snapshot(row, await open_secret(self.barrier, tx, row))

    def ready_token(self, row: Any, opened: dict[str, Any]) -> str | None:
        """The access token of an account row the caller has just read (and opened), when
        nothing is due: no refresh wanted, no I/O. None: ask :meth:`access_token`."""
        snap = _snapshot(row, opened)
        if snap.state not in ("ACTIVE", "EXPIRED") or self._due(snap):
            return None
        token = snap.secret.get("access_token")
        return token if isinstance(token, str) else None

    async def _take_lease(self, scope: OrgScope, account_id: str, version: int) -> bool:
        now = self.clock.now()
        async with self.db.org_tx(scope) as tx:
            return await tx.accounts.take_lease(account_id, version, now, now + self.lease)

    async def _refresh(
        self,
        scope: OrgScope,
        account_id: str,
        snap: _Snapshot,
        force: bool,
        idle_before: dt.datetime | None,
    ) -> str:
        org_id = scope.org_id
        waited = 0.0
        while True:
            if await self._take_lease(scope, account_id, snap.version):
                break
            # Another replica holds the lease (or just finished): wait for its result.
            await asyncio.sleep(WAIT_STEP)
            waited += WAIT_STEP
            fresh = await self._read(scope, account_id)
            self._check_state(fresh)  # revoked meanwhile: no version change says so
            if fresh.version != snap.version and not (force and self._due(fresh)):
                self._emit(RefreshEvent(org_id, account_id, fresh.connector_id, "waited"))
                return _access(fresh)
            self._check_cooldown(fresh)  # the holder failed transiently meanwhile
            if waited >= MAX_WAIT:
                raise _in_progress()
            snap = fresh
        # We hold the lease; every way out below releases it or commits.
        try:
            # Someone may have finished just before: look again.
            snap = await self._read(scope, account_id)
            self._check_state(snap)
            if not self._wanted(snap, force, idle_before):
                await self._release(scope, account_id)
                return _access(snap)
            critical = asyncio.get_running_loop().create_task(
                self._exchange(scope, account_id, snap)
            )
        except BaseException:
            await asyncio.shield(self._release(scope, account_id))
            raise
        self._critical.add(critical)
        critical.add_done_callback(self._critical.discard)
        return await asyncio.shield(critical)

    async def _exchange(self, scope: OrgScope, account_id: str, snap: _Snapshot) -> str:
        """Intent, the provider call, and the commit of its result: one unit that no
        caller can cancel (it runs shielded; shutdown waits for it in :meth:`drain`)."""
        org_id = scope.org_id
        c = self._connector(snap.connector_id)
        refresh_token = snap.secret.get("refresh_token")
        if not c.auth.refresh.supported or not isinstance(refresh_token, str):
            await self._release(scope, account_id)
            raise FailedPrecondition(
                "the provider gave no refresh token; the user must reconnect",
                reason="REFRESH_UNSUPPORTED",
            )
        app = await self.oauth_apps.client_for(scope, c.id)
        if app is None:
            failure = Failure("operator_error", "OAUTH_APP_MISSING")
            self._emit(RefreshEvent(org_id, account_id, c.id, "attempt"))  # refused at once
            outcome = await self._settle(scope, account_id, failure)
            self._emit(RefreshEvent(org_id, account_id, c.id, outcome, failure.reason))
            raise FailedPrecondition("no OAuth app is configured", reason="OAUTH_APP_MISSING")
        # Intent before the external effect: if this process dies after sending, the
        # next attempt knows a rotating provider may have consumed the token.
        async with self.db.org_tx(scope) as tx:
            recorded = await tx.accounts.record_sent(account_id, snap.version)
        if not recorded:  # reconnected meanwhile: the new secret needs no refresh from us
            await self._release(scope, account_id)
            raise Unavailable("the account changed during the refresh", reason="REFRESH_RACE")
        self._emit(RefreshEvent(org_id, account_id, c.id, "attempt"))
        url = fill_connection(c.auth.token_url, {**snap.connection, **snap.metadata})
        try:
            attributes = {"agentauth.connector": c.id, "agentauth.grant": "refresh_token"}
            with self.tracing.span("token_endpoint", CLIENT, attributes) as span:
                try:
                    tokens = await request_token(
                        self.http,
                        c,
                        url,
                        app.client_id,
                        app.client_secret.reveal(),
                        {"grant_type": "refresh_token", "refresh_token": refresh_token},
                    )
                except TokenEndpointError as exc:
                    if span is not None and exc.status is not None:
                        span.set_attribute("http.response.status_code", exc.status)
                    raise
        except TokenEndpointError as exc:
            failure = self._failure(c, exc)
            try:
                if failure.error_class == "refresh_race":
                    # Was it rotated by someone else meanwhile? Then that token is good.
                    again = await self._read(scope, account_id)
                    if again.version != snap.version:
                        self._emit(RefreshEvent(org_id, account_id, c.id, "reused", failure.reason))
                        return _access(again)
                    failure = Failure("revoked", self._why_dead(c, snap, failure.reason))
                outcome = await self._settle(scope, account_id, failure)
            except BaseException as err:  # the failure could not be recorded: say so
                reason = f"{failure.reason}; not recorded: {type(err).__name__}"
                self._emit(RefreshEvent(org_id, account_id, c.id, "error", reason[:64]))
                raise
            self._emit(RefreshEvent(org_id, account_id, c.id, outcome, failure.reason))
            raise self._error(failure) from None
        except asyncio.CancelledError:
            # Only a shutdown past its drain timeout gets here. Whether the provider
            # rotated is unknown: the intent stays recorded for the next attempt, and
            # the lease goes so that another replica need not wait it out.
            self._emit(RefreshEvent(org_id, account_id, c.id, "cancelled", OUTCOME_UNKNOWN))
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self._release(scope, account_id)
            raise
        try:
            await self._commit(scope, account_id, snap, c, tokens)
        except asyncio.CancelledError:
            self._emit(RefreshEvent(org_id, account_id, c.id, "cancelled", OUTCOME_UNKNOWN))
            raise
        except BaseException as exc:
            # The provider answered but the answer could not be stored: for a rotating
            # provider that token is now lost; the intent says so to the next attempt.
            self._emit(
                RefreshEvent(org_id, account_id, c.id, "error", f"COMMIT_{type(exc).__name__}")
            )
            with contextlib.suppress(Exception):
                await self._release(scope, account_id)
            raise
        self._emit(RefreshEvent(org_id, account_id, c.id, "refreshed"))
        return tokens.access_token

    async def _commit(
        self, scope: OrgScope, account_id: str, snap: _Snapshot, c: Any, tokens: Any
    ) -> None:
        now = self.clock.now()
        document = dict(snap.secret)
        document.update(tokens.secret_document())  # no refresh_token in it: the old one stays
        if not tokens.refresh_token and "refresh_token" in snap.secret:
            document["refresh_token"] = snap.secret["refresh_token"]
        expires = access_expiry(c, tokens.expires_in, now)
        metadata = {**snap.metadata, **kept_fields(tokens, c)}
        async with self.db.org_tx(scope) as tx:
            row = await tx.accounts.get_for_update(account_id)
            if row is None or row.secret_version != snap.version:
                raise Unavailable("the account changed during the refresh", reason="REFRESH_RACE")
            row.access_expire_time = expires
            row.provider_metadata = metadata
            row.last_refreshed_time = now
            await store_secret(self.barrier, tx, row, document, now)  # clears lease and intent

    def _why_dead(self, c: Any, snap: _Snapshot, reason: str) -> str:
        """A clearer reason for a dead refresh token when the history explains it."""
        if snap.state_reason == OUTCOME_UNKNOWN or snap.sent_version == snap.version:
            # An earlier refresh sent this refresh token and its answer was lost (no
            # reply, or the process died after sending): a rotating provider
            # consumed the token we still hold.
            return "ROTATED_RESPONSE_LOST"
        days = c.auth.refresh.inactivity_expiry_days
        idle = snap.last_activity
        if days and idle is not None and self.clock.now() - idle > dt.timedelta(days=days):
            return "INACTIVITY"
        return reason

    def _failure(self, c: Any, exc: TokenEndpointError) -> Failure:
        if exc.status is None:
            if not exc.sent:
                # Refused, no DNS, no TLS: nothing reached the provider, the token is
                # as good as before. Only a request that left can have an unknown outcome.
                return Failure("transient", NOT_SENT)
            # Timed out or dropped after sending: the token may still be good, or the
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

    async def _settle(self, scope: OrgScope, account_id: str, failure: Failure) -> str:
        """Record a failed refresh on the account; the outcome to report."""
        now = self.clock.now()
        async with self.db.org_tx(scope) as tx:
            row = await tx.accounts.get_for_update(account_id)
            if row is None:
                return "gone"
            if failure.reason != OUTCOME_UNKNOWN:
                row.refresh_sent_version = None  # the attempt's outcome is known now
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
                        await tx.account_events.changed(row, now)
                outcome = "transient"
            else:
                state = "ERROR" if failure.error_class == "operator_error" else "REVOKED"
                row.state, row.state_reason, row.state_change_time = state, failure.reason, now
                row.refresh_lease_until = None
                row.update_time = now
                await tx.account_events.changed(row, now)
                outcome = "error" if state == "ERROR" else "revoked"
        return outcome

    async def _release(self, scope: OrgScope, account_id: str) -> None:
        async with self.db.org_tx(scope) as tx:
            await tx.accounts.release_lease(account_id)

    def _emit(self, event: RefreshEvent) -> None:
        for listener in self._listeners:
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
