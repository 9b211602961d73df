"""ExecuteTool: one tool call, from a verified token to exactly one terminal outcome.

The pipeline has authenticated the token already (offline, through the one JWS
core; every link of its chain live) and resolved the principal, the org and the
current actor. Here, in order, with nothing touching the network before step 6:

1. the tool exists in the catalog;
2. the token's ``tools:`` scopes allow it (:mod:`control_plane.domain.tool_scopes`);
3. the arguments fit the tool's JSON Schema (``INVALID_ARGUMENTS`` + JSON pointer);
4. the org enabled the tool and its policy allows this actor with these
   arguments (:mod:`control_plane.domain.tool_policy`, evaluated by the runtime);
   a rule may require a human's confirmation, collected after step 6;
5. the principal's connected account in this org (:mod:`.tool_accounts`) is
   usable and has granted the tool's provider scopes (``SCOPE_INSUFFICIENT``
   with a reconnect link otherwise);
6. the action is recorded (intent, with the idempotency key) and audited; the
   stream says ``accepted``;
7. when a rule requires it, a human confirms this exact call first
   (:mod:`.tool_confirmations`: ``confirmation_required``, then a bounded wait;
   a denial or a lapse ends the call ``CONFIRMATION_DENIED``); then
   the provider is called through the credential boundary
   (:class:`~control_plane.vault.upstream.Upstream`: freshness through the refresh
   coordinator, refresh-once-and-retry-once on an expired access token, REVOKED
   after a second rejection), with bounded retries: rate limits wait as the
   provider says (up to :data:`MAX_RATE_WAIT`), transient failures back off with
   jitter, but only for idempotent methods;
8. the outcome is normalized to one vocabulary (:mod:`control_plane.domain.tool_outcome`),
   recorded (sealed, for replays) and audited.

Steps 7-8 run as one shielded task: a caller that goes away does not cancel a
provider call halfway or leave it without an outcome record; shutdown waits
for these tasks (:meth:`ToolExecutor.drain`) and records the ones it has to stop.

Traced, each step is a span under the RPC's server span, which the stream keeps
current while it runs (the task inherits it): ``prepare`` (1-5, and the intent
when it is written in the same transaction), ``intent`` (6), ``replay`` for a
repeated request_id, ``confirmation`` and ``provider`` (7, the vault's client spans
below it), ``outcome`` (8). Attributes name catalog tools and outcome codes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import hashlib
import json
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from control_plane import deadlines
from control_plane.clock import Clock
from control_plane.connectors.loader import Catalog
from control_plane.connectors.model import Connector, Tool
from control_plane.connectors.output import header, next_cursor, shape
from control_plane.connectors.requests import build_request
from control_plane.domain import names
from control_plane.domain import tool_outcome as out
from control_plane.domain.errors import (
    AgentAuthError,
    AlreadyExists,
    FailedPrecondition,
    ResourceExhausted,
    Unavailable,
    field_error,
)
from control_plane.domain.principals import Principal, TokenCaller
from control_plane.domain.rate_limit import Limit
from control_plane.domain.scope import OrgScope
from control_plane.domain.tool_arguments import ArgumentChecker, InvalidArguments
from control_plane.domain.tool_policy import PolicyDenied, ToolPolicy, ToolRule, evaluate
from control_plane.domain.tool_scopes import parse_tool_scopes, tool_scope
from control_plane.domain.validation import request_id as check_request_id
from control_plane.ids import new_id
from control_plane.logs import get_logger
from control_plane.metrics import Metrics
from control_plane.services.connectors import ConnectorConfigService
from control_plane.services.tool_accounts import (
    USABLE,
    ConnectLinks,
    account_name,
    find_account,
    parse_account_name,
)
from control_plane.services.tool_confirmations import Binding, ToolConfirmations
from control_plane.storage import models as m
from control_plane.storage import rate_buckets
from control_plane.storage.db import Database
from control_plane.storage.units import OrgTx
from control_plane.tracing import Attributes, Tracing
from control_plane.vault.barrier import Barrier
from control_plane.vault.classify import parse_body
from control_plane.vault.upstream import Upstream, UpstreamRequest, UpstreamResponse

DEFAULT_TIMEOUT = 60.0
MAX_TIMEOUT = 120.0
#: A retry with the same request_id from the same principal replays the first
#: call's outcome for this long.
IDEMPOTENCY_WINDOW = dt.timedelta(hours=24)
#: A PENDING action older than this was cut off by a dead process: outcome unknown.
STALE_PENDING = dt.timedelta(seconds=MAX_TIMEOUT + 30)
MAX_ATTEMPTS = 3
#: The longest a call waits for a provider's rate limit before reporting it.
MAX_RATE_WAIT = 10.0
BACKOFF_BASE = 0.2
#: RFC 9110 §9.2.2: repeating these has the effect of one request.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
_PROVIDER_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_TOOL_NAME_MAX = 128

log = get_logger("agentauth.tools")


class ToolPolicySource(Protocol):
    async def rules(self, tx: OrgTx) -> tuple[ToolRule, ...]: ...

    async def owner_groups(self, tx: OrgTx, owner: tuple[str, str]) -> frozenset[str]: ...


class ActionAudit(Protocol):
    async def intent(self, principal: Principal, action_id: str, tool: str) -> None: ...

    async def outcome(
        self, principal: Principal, action_id: str, tool: str, outcome: out.Terminal
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class ToolCall:
    tool: str
    arguments: Mapping[str, Any]
    connected_account: str = ""
    request_id: str = ""
    timeout: float | None = None


def check_call(call: ToolCall) -> None:
    """Faults of the request itself (gRPC INVALID_ARGUMENT), before the stream opens."""
    if not call.tool or len(call.tool) > _TOOL_NAME_MAX:
        raise field_error("tool", "is required (a tool name such as gmail.list_messages)")
    check_request_id(call.request_id)
    if call.connected_account and parse_account_name(call.connected_account) is None:
        raise field_error(
            "connected_account",
            f"must look like orgs/{{org}}/connectedAccounts/{{id}} {names.IDS_ARE}",
        )
    if call.timeout is not None and not 0 < call.timeout <= MAX_TIMEOUT:
        raise field_error("timeout", f"must be more than 0 and at most {MAX_TIMEOUT:g} seconds")


@dataclass(frozen=True, slots=True)
class _Prepared:
    tool: Tool
    connector: Connector
    arguments: dict[str, Any]
    account: m.ConnectedAccount | None  # None for developer-secret connectors
    connection: dict[str, str]
    confirming: tuple[ToolRule, ...] = ()  # rules requiring a human's confirmation
    #: The intent record was written in the same transaction as the checks.
    recorded: bool = False


class _Refused(Exception):
    def __init__(self, failed: out.Failed) -> None:
        self.failed = failed


class ToolExecutor:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        catalog: Catalog,
        barrier: Barrier,
        upstream: Upstream,
        connectors: ConnectorConfigService,
        policies: ToolPolicySource,
        links: ConnectLinks,
        audit: ActionAudit,
        confirmations: ToolConfirmations,
        metrics: Metrics,
        tracing: Tracing,
        *,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._db = db
        self._clock = clock
        self._catalog = catalog
        self._barrier = barrier
        self._upstream = upstream
        self._connectors = connectors
        self._policies = policies
        self._links = links
        self._audit = audit
        self._confirmations = confirmations
        self._metrics = metrics
        self._tracing = tracing
        self._rng = rng
        self._sleep = sleep
        self._checkers: dict[str, ArgumentChecker] = {}
        self._inflight: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ the call

    async def events(self, principal: Principal, call: ToolCall) -> AsyncIterator[out.Event]:
        caller = principal.caller
        if caller is None:  # the authorization table admits only tool callers here
            raise FailedPrecondition("only agents' tokens run tools")
        scope = principal.own_scope
        ceiling = min(call.timeout or DEFAULT_TIMEOUT, MAX_TIMEOUT)
        ends = time.monotonic() + deadlines.budget(ceiling)
        action_id = new_id()
        # Traced, each stage is a span of its own under the RPC's (current in each step
        # of the stream); none stays open across a yield.
        span = self._tracing.span
        refused: out.Failed | None = None
        with span("prepare") as checks:
            try:
                try:
                    prepared = await self._prepare(principal, scope, caller, call, action_id)
                except AlreadyExists:  # a concurrent call took the request_id meanwhile
                    prepared = await self._prepare(principal, scope, caller, call, action_id)
            except _Refused as exc:
                refused = exc.failed
            if checks is not None:
                checks.set_attributes(self._named(call.tool))
                if refused is not None:
                    checks.set_attribute("agentauth.tool_code", refused.code)
        if refused is not None:
            # An unknown name is the caller's text: the audit names only catalog tools.
            target = call.tool if self._named(call.tool) else "(unknown)"
            with span("outcome", attributes={"agentauth.tool_code": refused.code}):
                await self._audit.outcome(principal, action_id, target, refused)
            yield refused
            return
        account = prepared.account
        shown = account_name(scope.org_id, account.id) if account is not None else ""
        digest = _arguments_hash(prepared.tool.name, prepared.arguments, shown)
        with span("intent"):
            claimed = None
            if not prepared.recorded:
                claimed = await self._claim(scope, caller, call, prepared, action_id, digest)
            if not isinstance(claimed, m.ToolAction):
                try:
                    await self._audit.intent(principal, action_id, prepared.tool.name)
                except Unavailable:
                    # No audit record, no action (and no record of one that never
                    # happened, so a retry with the same request_id is a new call, not
                    # an unknown outcome).
                    async with self._db.org_tx(scope) as tx:
                        await tx.tool_actions.delete(action_id)
                    raise
        if isinstance(claimed, m.ToolAction):  # the same request_id was seen before
            with span("replay"):
                replayed = await self._replay(scope, claimed, digest, prepared, shown, ends)
            for event in replayed:
                yield event
            return
        yield out.Accepted(action_id, shown)
        events: asyncio.Queue[out.Event] = asyncio.Queue()
        # The task's context is a copy of this one, taken here (create_task copies it):
        # its spans join the RPC's trace, as children of the RPC's span, even when the
        # caller has gone and that span has ended.
        task = asyncio.create_task(
            self._run(principal, scope, prepared, action_id, digest, ends, events.put_nowait),
            context=contextvars.copy_context(),
        )
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        while True:
            event = await events.get()
            yield event
            if isinstance(event, out.Succeeded | out.Failed):
                return

    async def drain(self, seconds: float = 30.0) -> None:
        """Shutdown: let running calls finish and record their outcomes; stop the rest
        after ``seconds`` (each records that it was stopped)."""
        if not self._inflight:
            return
        _, pending = await asyncio.wait(set(self._inflight), timeout=seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)

    async def prune(self) -> int:
        """Delete action records past the idempotency window (a maintenance job): a
        request_id older than the window is a new call anyway."""
        before = self._clock.now() - IDEMPOTENCY_WINDOW
        async with self._db.platform_tx() as ptx:
            org_ids = await ptx.orgs.ids()
        removed = 0
        for org_id in org_ids:
            scope = OrgScope.for_platform_job(org_id, job="tool-action-prune")
            async with self._db.org_tx(scope) as tx:
                removed += await tx.tool_actions.prune(before)
        return removed

    # ------------------------------------------------------------------ before

    def _named(self, name: str) -> dict[str, str]:
        """The span attributes naming a catalog tool; none for a name that is not one
        (the caller's text)."""
        connector = self._catalog.get(name.split(".", 1)[0])
        if connector is None or connector.tool(name) is None:
            return {}
        return {"agentauth.connector": connector.id, "agentauth.tool": name}

    def _checker(self, tool: Tool) -> ArgumentChecker:
        checker = self._checkers.get(tool.name)
        if checker is None:
            checker = self._checkers[tool.name] = ArgumentChecker(tool.input_schema)
        return checker

    async def _prepare(
        self,
        principal: Principal,
        scope: OrgScope,
        caller: TokenCaller,
        call: ToolCall,
        action_id: str,
    ) -> _Prepared:
        connector_id = call.tool.split(".", 1)[0]
        connector = self._catalog.get(connector_id)
        tool = connector.tool(call.tool) if connector is not None else None
        if connector is None or tool is None:
            raise _Refused(
                out.Failed(out.INVALID_ARGUMENTS, "TOOL_UNKNOWN", "there is no such tool")
            )
        if not parse_tool_scopes(caller.scopes).allows(tool.name):
            raise _Refused(
                out.Failed(
                    out.POLICY_DENIED,
                    "TOKEN_SCOPE",
                    "the token's scopes do not include this tool",
                    metadata={"requiredScope": tool_scope(tool.name)},
                )
            )
        try:
            arguments = self._checker(tool).check(dict(call.arguments))
        except InvalidArguments as exc:
            raise _Refused(
                out.Failed(
                    out.INVALID_ARGUMENTS,
                    "INVALID_ARGUMENTS",
                    exc.message,
                    metadata={"pointer": exc.pointer},
                )
            ) from None
        async with self._db.org_tx(scope) as tx:
            enabled = await self._connectors.enabled_tools(tx, connector) or ()
            rules = await self._policies.rules(tx)
            groups = await self._policies.owner_groups(tx, caller.owner)
            try:
                decision = evaluate(
                    ToolPolicy(frozenset(enabled), rules),
                    tool.name,
                    agent_id(caller.actor),
                    groups,
                    arguments,
                )
            except PolicyDenied as exc:
                reason = "TOOL_DISABLED" if tool.name not in enabled else "POLICY_RULE"
                raise _Refused(
                    out.Failed(out.POLICY_DENIED, reason, exc.message, metadata=exc.metadata)
                ) from None
            account = None
            if connector.auth.type != "developer_secret":
                account = await find_account(tx, caller, connector, call.connected_account)
            # Ready to run: write the intent in this same transaction (one round trip
            # fewer) unless the request_id was seen before (then _claim decides).
            recorded = False
            if _ready(connector, tool, account):
                shown = account_name(scope.org_id, account.id) if account is not None else ""
                earlier = None
                if call.request_id:
                    earlier = await tx.tool_actions.by_request(caller.subject, call.request_id)
                if earlier is None:
                    digest = _arguments_hash(tool.name, arguments, shown)
                    account_id = account.id if account is not None else None
                    intent = _intent(scope, caller, call, tool.name, account_id, action_id, digest)
                    await tx.tool_actions.add(intent(self._clock.now()))
                    recorded = True
        if connector.auth.type == "developer_secret":
            return _Prepared(tool, connector, arguments, None, {}, decision.confirming, recorded)
        if connector.auth.type not in ("oauth2", "api_key"):
            raise _Refused(
                out.Failed(
                    out.UPSTREAM_ERROR,
                    "CONNECTOR_UNSUPPORTED",
                    "this connector's credentials cannot run tools yet",
                )
            )
        if account is None:
            url = ""
            if not call.connected_account:
                url = await self._links.for_new_account(principal, caller, connector)
            raise _Refused(_not_connected("NO_ACCOUNT", url))
        await self._check_account(principal, scope, tool, account)
        connection = {**account.provider_metadata, **account.connection_params}
        return _Prepared(
            tool, connector, arguments, account, connection, decision.confirming, recorded
        )

    async def _check_account(
        self, principal: Principal, scope: OrgScope, tool: Tool, account: m.ConnectedAccount
    ) -> None:
        problem = _account_problem(tool, account)
        if problem == "PENDING":
            url = await self._links.for_account(principal, scope.org_id, account.id)
            raise _Refused(_not_connected(account.state_reason or "PENDING", url))
        if problem == "REVOKED":
            raise _Refused(await self._revoked(principal, scope, account.id, account.state_reason))
        if problem == "ERROR":
            raise _Refused(
                out.Failed(
                    out.UPSTREAM_ERROR,
                    "ACCOUNT_ERROR",
                    "the account is in error (the connector's OAuth app needs an operator)",
                )
            )
        if problem == "SCOPES":
            url = await self._links.for_account(principal, scope.org_id, account.id)
            raise _Refused(_scope_insufficient(tool, sorted(account.granted_scopes), url))

    # ------------------------------------------------------------------ idempotency

    async def _claim(
        self,
        scope: OrgScope,
        caller: TokenCaller,
        call: ToolCall,
        prepared: _Prepared,
        action_id: str,
        digest: str,
    ) -> m.ToolAction | None:
        """Write the intent record; the earlier record when the request_id was used."""
        now = self._clock.now()
        account_id = prepared.account.id if prepared.account is not None else None
        row = _intent(scope, caller, call, prepared.tool.name, account_id, action_id, digest)(now)
        for _ in range(2):
            try:
                async with self._db.org_tx(scope) as tx:
                    await tx.tool_actions.add(row)
                return None
            except AlreadyExists:
                async with self._db.org_tx(scope) as tx:
                    earlier = await tx.tool_actions.by_request(caller.subject, call.request_id)
                    if earlier is None:
                        continue  # pruned meanwhile: claim it now
                    if earlier.create_time >= now - IDEMPOTENCY_WINDOW:
                        return earlier
                    await tx.tool_actions.delete_row(earlier)  # past the window: a new call
        raise Unavailable("the action could not be recorded", reason="ACTION_CONFLICT")

    async def _replay(
        self,
        scope: OrgScope,
        earlier: m.ToolAction,
        digest: str,
        prepared: _Prepared,
        shown: str,
        ends: float,
    ) -> list[out.Event]:
        """The first call's events (once it has an outcome), for a repeated request_id."""
        if earlier.tool != prepared.tool.name or earlier.arguments_hash != digest:
            return [
                out.Failed(
                    out.INVALID_ARGUMENTS,
                    "REQUEST_ID_REUSED",
                    "this request_id was used for a different call",
                )
            ]
        row: m.ToolAction | None = earlier
        while row is not None and row.state == "PENDING":
            if row.create_time < self._clock.now() - STALE_PENDING:
                return [
                    out.Accepted(row.id, shown, replayed=True),
                    _unknown("the first call with this request_id never recorded an outcome"),
                ]
            if time.monotonic() >= ends:
                return [
                    out.Failed(
                        out.TIMEOUT,
                        "IN_PROGRESS",
                        "the first call with this request_id is still running",
                        retryable=True,
                    )
                ]
            await self._sleep(min(0.2, max(0.0, ends - time.monotonic())))
            async with self._db.org_tx(scope) as tx:
                row = await tx.tool_actions.get(earlier.id)
        if row is None or row.outcome is None:
            raise Unavailable("the earlier action disappeared", reason="ACTION_CONFLICT")
        raw = await self._barrier.open(scope, "tool_actions", row.id, "outcome", row.outcome)
        return [out.Accepted(row.id, shown, replayed=True), out.from_record(raw)]

    # ------------------------------------------------------------------ the provider

    async def _run(
        self,
        principal: Principal,
        scope: OrgScope,
        prepared: _Prepared,
        action_id: str,
        digest: str,
        ends: float,
        emit: Callable[[out.Event], None],
    ) -> None:
        """Call the provider and record the outcome: one unit, shielded from the caller.

        Traced: a ``confirmation`` span for a human's confirmation, a ``provider`` span
        around the attempts (each provider request and refresh a client span under it,
        each wait before a retry a ``retry_wait``), then the ``outcome`` span."""
        span = self._tracing.span
        outcome: out.Terminal
        called = False  # whether a request may have reached the provider
        try:
            async with asyncio.timeout(max(0.0, ends - time.monotonic())):
                refused = None
                if prepared.confirming:  # a human confirms first (or the call ends here)
                    with span("confirmation") as confirming:
                        refused = await self._confirmed(
                            principal, prepared, action_id, digest, ends, emit
                        )
                        if confirming is not None and refused is not None:
                            confirming.set_attribute("agentauth.tool_code", refused.code)
                called = refused is None
                if refused is not None:
                    outcome = refused
                else:
                    named = {
                        "agentauth.connector": prepared.connector.id,
                        "agentauth.tool": prepared.tool.name,
                    }
                    with span("provider", attributes=named) as calling:
                        outcome = await self._attempts(principal, scope, prepared, ends, emit)
                        if calling is not None:
                            calling.set_attribute("agentauth.tool_code", _code(outcome))
        except TimeoutError:
            outcome = _cut_short(prepared, called, "DEADLINE_EXCEEDED", "the call ran out of time")
        except asyncio.CancelledError:
            outcome = _cut_short(prepared, called, "SHUTDOWN", "the server stopped during the call")
            await self._finish(principal, scope, prepared, action_id, outcome)
            emit(outcome)
            raise
        except Exception:
            log.exception("tool_call_failed", tool=prepared.tool.name, action_id=action_id)
            outcome = _unknown("the call failed inside agentauth")
        await self._finish(principal, scope, prepared, action_id, outcome)
        emit(outcome)

    async def _confirmed(
        self,
        principal: Principal,
        prepared: _Prepared,
        action_id: str,
        digest: str,
        ends: float,
        emit: Callable[[out.Event], None],
    ) -> out.Failed | None:
        """A human's confirmation of this exact call: None once it was given."""
        caller = principal.caller
        assert caller is not None
        binding = Binding(action_id, caller.subject, caller.actor[:256], prepared.tool.name, digest)
        return await self._confirmations.hold(
            principal.own_scope,
            caller,
            binding,
            prepared.arguments,
            prepared.confirming,
            ends,
            emit,
        )

    async def _finish(
        self,
        principal: Principal,
        scope: OrgScope,
        prepared: _Prepared,
        action_id: str,
        outcome: out.Terminal,
    ) -> None:
        code = _code(outcome)
        with self._tracing.span("outcome", attributes={"agentauth.tool_code": code}):
            sealed = await self._barrier.seal(
                scope, "tool_actions", action_id, "outcome", out.to_record(outcome)
            )
            state = "SUCCEEDED" if isinstance(outcome, out.Succeeded) else "FAILED"
            try:
                async with self._db.org_tx(scope) as tx:
                    await tx.tool_actions.finish(action_id, state, sealed, self._clock.now())
            except AgentAuthError as exc:  # left PENDING: a replay says the outcome is unknown
                log.warning(
                    "tool_action_outcome_unrecorded", action_id=action_id, reason=exc.reason
                )
            await self._audit.outcome(principal, action_id, prepared.tool.name, outcome)
        self._metrics.tool_outcome(prepared.connector.id, prepared.tool.name, code)

    async def _attempts(
        self,
        principal: Principal,
        scope: OrgScope,
        prepared: _Prepared,
        ends: float,
        emit: Callable[[out.Event], None],
    ) -> out.Terminal:
        tool = prepared.tool
        built = build_request(tool, prepared.arguments, prepared.connection)
        request = UpstreamRequest(
            built.method,
            built.url,
            built.query,
            built.headers,
            built.json,
            built.form,
            graphql=tool.http.graphql is not None,
            timeout=MAX_TIMEOUT,
        )
        idempotent = built.method.upper() in IDEMPOTENT_METHODS
        refreshed = False
        attempt = 1
        while True:
            delay: float | None = None
            why = ""
            try:
                response = await self._perform(principal, scope, prepared, request)
            except Unavailable as exc:
                if exc.reason == "UPSTREAM_TOO_LARGE":
                    return out.Failed(
                        out.UPSTREAM_ERROR,
                        "RESPONSE_TOO_LARGE",
                        "the provider's answer is larger than agentauth accepts",
                    )
                if exc.reason != "UPSTREAM_UNAVAILABLE":  # the refresh could not run now
                    return out.Failed(
                        out.UPSTREAM_UNAVAILABLE,
                        exc.reason,
                        exc.message,
                        retry_after=_retry_hint(exc),
                    )
                if not idempotent:
                    return out.Failed(
                        out.UPSTREAM_UNAVAILABLE,
                        "UNREACHABLE",
                        "the provider could not be reached",
                        retryable=True,
                    )
                delay, why = self._backoff(attempt), out.UPSTREAM_UNAVAILABLE
            except FailedPrecondition as exc:
                return await self._precondition(principal, scope, prepared, exc)
            except ResourceExhausted as exc:  # a developer secret's per-user limit
                return out.Failed(
                    out.RATE_LIMITED,
                    "DEVELOPER_SECRET_LIMIT",
                    "this user's rate limit for the connector is used up",
                    retry_after=_retry_hint(exc),
                )
            else:
                if response.refreshed and not refreshed:
                    refreshed = True
                    emit(out.Refreshed())
                failure = response.failure
                if failure is None:
                    return self._succeeded(tool, response)
                kind = failure.error_class
                if kind == "rate_limited":
                    wait = failure.retry_after
                    if wait is None or wait > MAX_RATE_WAIT:
                        return out.Failed(
                            out.RATE_LIMITED,
                            failure.reason,
                            "the provider's rate limit was reached",
                            retry_after=wait,
                            metadata=_upstream_meta(response),
                        )
                    delay, why = wait, out.RATE_LIMITED  # a 429 was not acted on: any method
                elif kind == "transient" and idempotent:
                    delay = failure.retry_after or self._backoff(attempt)
                    why = out.UPSTREAM_UNAVAILABLE
                else:
                    return await self._failure(principal, scope, prepared, response)
            # Only a wait that leaves time for the next attempt; else report it now.
            if (
                attempt >= MAX_ATTEMPTS
                or delay is None
                or delay > MAX_RATE_WAIT
                or delay >= ends - time.monotonic()
            ):
                return out.Failed(
                    out.RATE_LIMITED if why == out.RATE_LIMITED else out.UPSTREAM_UNAVAILABLE,
                    "RETRIES_EXHAUSTED",
                    "the provider kept failing; try again later",
                    retry_after=delay,
                )
            attempt += 1
            emit(out.RetryScheduled(delay, why, attempt))
            waiting: Attributes = {"agentauth.attempt": attempt, "agentauth.retry_reason": why}
            with self._tracing.span("retry_wait", attributes=waiting):
                await self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Full jitter: a random wait up to BACKOFF_BASE * 2^(attempt-1)."""
        return max(0.05, self._rng() * BACKOFF_BASE * 2.0 ** (attempt - 1))

    async def _perform(
        self, principal: Principal, scope: OrgScope, prepared: _Prepared, request: UpstreamRequest
    ) -> UpstreamResponse:
        if prepared.account is not None:
            return await self._upstream.perform(scope, prepared.account.id, request)
        caller = principal.caller
        assert caller is not None
        subject = caller.subject

        async def admit(requests: int, period: int) -> None:
            if not requests or not period:
                return
            limit = Limit(requests / period, requests)
            key = (
                "devsecret:"
                + hashlib.sha256(f"{prepared.connector.id}\0{subject}".encode()).hexdigest()[:48]
            )
            now = self._clock.now()
            lease = await rate_buckets.lease(self._db, scope, key, limit, 1, now)
            if lease.granted < 1:
                wait = (lease.next_token_at(limit) - now).total_seconds()
                raise ResourceExhausted(max(1, round(wait)))

        return await self._upstream.perform_with_developer_secret(
            scope, prepared.connector.id, request, admit
        )

    def _succeeded(self, tool: Tool, response: UpstreamResponse) -> out.Terminal:
        content_type = (header(response.headers, "Content-Type") or "").split(";")[0].strip()
        doc, text = parse_body(response.body)
        cursor = next_cursor(tool, doc, response.headers)
        data: Any = text if doc is None and response.body else shape(tool, doc)
        limit = tool.output.max_bytes
        if limit is not None and len(json.dumps(data, separators=(",", ":"))) > limit:
            return out.Failed(
                out.UPSTREAM_ERROR,
                "RESPONSE_TOO_LARGE",
                f"the answer is larger than this tool returns ({limit} bytes): narrow the call",
                metadata={"status": str(response.status)},
            )
        return out.Succeeded(data, response.status, tool.output_trust, content_type, cursor)

    async def _failure(
        self, principal: Principal, scope: OrgScope, prepared: _Prepared, response: UpstreamResponse
    ) -> out.Failed:
        failure = response.failure
        assert failure is not None
        kind = failure.error_class
        account = prepared.account
        if kind in ("expired_access", "revoked") and account is not None:
            return await self._revoked(principal, scope, account.id, failure.reason)
        if kind == "insufficient_scope" and account is not None:
            url = await self._links.for_account(principal, scope.org_id, account.id)
            return _scope_insufficient(prepared.tool, sorted(account.granted_scopes), url)
        if kind == "transient":
            return out.Failed(
                out.UPSTREAM_UNAVAILABLE,
                failure.reason,
                "the provider failed transiently",
                retry_after=failure.retry_after,
                metadata=_upstream_meta(response),
            )
        return out.Failed(
            out.UPSTREAM_ERROR,
            failure.reason,
            "the provider refused the request",
            metadata=_upstream_meta(response),
        )

    async def _precondition(
        self, principal: Principal, scope: OrgScope, prepared: _Prepared, exc: FailedPrecondition
    ) -> out.Failed:
        account = prepared.account
        if exc.reason == "ACCOUNT_REVOKED" and account is not None:
            return await self._revoked(principal, scope, account.id, "ACCOUNT_REVOKED")
        if exc.reason == "ACCOUNT_PENDING" and account is not None:
            url = await self._links.for_account(principal, scope.org_id, account.id)
            return _not_connected("ACCOUNT_PENDING", url)
        return out.Failed(out.UPSTREAM_ERROR, exc.reason, exc.message)

    async def _revoked(
        self, principal: Principal, scope: OrgScope, account_id: str, reason: str
    ) -> out.Failed:
        url = await self._links.for_account(principal, scope.org_id, account_id)
        return out.Failed(
            out.AUTH_REVOKED,
            reason or "ACCOUNT_REVOKED",
            "the provider no longer honours this account's grant: the user must reconnect",
            metadata={"reconnectUrl": url} if url else {},
        )


# ---------------------------------------------------------------------- helpers


def _code(outcome: out.Terminal) -> str:
    return "OK" if isinstance(outcome, out.Succeeded) else outcome.code


def agent_id(actor: str) -> str:
    """The agent id of an actor name ``orgs/{org}/agents/{id}`` (else the name itself)."""
    parts = actor.split("/")
    return parts[3] if len(parts) == 4 and parts[2] == "agents" else actor


def _arguments_hash(tool: str, arguments: Mapping[str, Any], account: str) -> str:
    canonical = json.dumps(
        [tool, arguments, account], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _account_problem(tool: Tool, account: m.ConnectedAccount) -> str | None:
    """What stops ``account`` from running ``tool`` (PENDING, REVOKED, ERROR, SCOPES),
    or None; :meth:`ToolExecutor._check_account` turns it into the refusal."""
    if account.state == "PENDING":
        return "PENDING"
    if account.state == "REVOKED":
        return "REVOKED"
    if account.state not in USABLE:
        return "ERROR"
    if not set(tool.scopes) <= set(account.granted_scopes):
        return "SCOPES"
    return None


def _ready(connector: Connector, tool: Tool, account: m.ConnectedAccount | None) -> bool:
    """Nothing stands between the call and the provider (else a refusal follows)."""
    if connector.auth.type == "developer_secret":
        return True
    return (
        connector.auth.type in ("oauth2", "api_key")
        and account is not None
        and _account_problem(tool, account) is None
    )


def _intent(
    scope: OrgScope,
    caller: TokenCaller,
    call: ToolCall,
    tool: str,
    account_id: str | None,
    action_id: str,
    digest: str,
) -> Callable[[dt.datetime], m.ToolAction]:
    """The intent record of a call, at the time given."""

    def at(now: dt.datetime) -> m.ToolAction:
        return m.ToolAction(
            org_id=scope.org_id,
            id=action_id,
            principal=caller.subject,
            actor=caller.actor[:256],
            tool=tool,
            account_id=account_id,
            request_id=call.request_id or None,
            arguments_hash=digest,
            state="PENDING",
            outcome=None,
            create_time=now,
            finish_time=None,
        )

    return at


def _not_connected(reason: str, url: str) -> out.Failed:
    return out.Failed(
        out.NOT_CONNECTED,
        reason,
        "the user has no usable account for this connector: connect it first",
        metadata={"connectUrl": url} if url else {},
    )


def _scope_insufficient(tool: Tool, granted: list[str], url: str) -> out.Failed:
    meta = {"required": " ".join(tool.scopes), "granted": " ".join(granted)}
    if url:
        meta["reconnectUrl"] = url
    return out.Failed(
        out.SCOPE_INSUFFICIENT,
        "SCOPE_INSUFFICIENT",
        "the account has not granted the scopes this tool needs: the user must reconnect",
        metadata=meta,
    )


def _cut_short(prepared: _Prepared, called: bool, reason: str, why: str) -> out.Failed:
    """A call stopped before its outcome: say whether the provider may have acted."""
    if not called:
        return out.Failed(
            out.TIMEOUT, reason, why + " before the provider was called", retryable=True
        )
    return out.Failed(
        out.TIMEOUT,
        reason,
        why + "; the provider may or may not have acted",
        retryable=prepared.tool.http.method in IDEMPOTENT_METHODS,
    )


def _unknown(message: str) -> out.Failed:
    return out.Failed(out.TIMEOUT, "OUTCOME_UNKNOWN", message, retryable=False)


def _retry_hint(exc: AgentAuthError) -> float | None:
    for key in ("retryAfterSeconds", "retryAfter"):
        value = exc.metadata.get(key)
        if value is not None:
            with contextlib.suppress(ValueError):
                return float(str(value))
    return None


def _upstream_meta(response: UpstreamResponse) -> dict[str, str]:
    meta = {"status": str(response.status)}
    code = _provider_code(response.body)
    if code:
        meta["providerCode"] = code
    return meta


def _provider_code(raw: bytes) -> str:
    """A short machine code from the provider's error body (never free text)."""
    doc, _ = parse_body(raw)
    candidates: list[Any] = []
    if isinstance(doc, dict):
        error = doc.get("error")
        if isinstance(error, dict):
            candidates += [error.get("status"), error.get("code")]
        candidates += [error, doc.get("code"), doc.get("errorCode"), doc.get("category")]
        errors = doc.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            candidates += [errors[0].get("code"), errors[0].get("reason")]
    elif isinstance(doc, list) and doc and isinstance(doc[0], dict):
        candidates += [doc[0].get("errorCode")]  # Salesforce
    for value in candidates:
        # A number is the HTTP status again (already in ``status``), not a code.
        if isinstance(value, str) and not value.isdigit() and _PROVIDER_CODE.fullmatch(value):
            return value
    return ""
