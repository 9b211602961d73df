"""Human confirmation of tool calls: hold a call, let a named human decide, use it once.

ExecuteTool calls :meth:`ToolConfirmations.hold` when the org's policy marks the call
``confirm`` (after the action's intent is recorded, inside the call's shielded task).
It writes a PENDING confirmation bound to the action, the principal, the actor, the
tool and the hash of the exact arguments; tells the stream ``confirmation_required``;
and polls the row (every :data:`POLL_SECONDS`, which works across replicas) until a
decision arrives, the confirmation's TTL lapses, or the call's own time runs out —
whichever is first, so the wait never outlives the call's deadline.

The developer's backend, which authenticated the human in its own UI, records the
decision with :meth:`ToolConfirmations.decide` (ToolService.ConfirmAction): with an
org admin key, or with a service-account token holding :data:`DECIDE_SCOPE` — agents
can hold service-account tokens of their org too, and must not approve their own
calls. The approver must be allowed by every rule that required the confirmation
(:func:`control_plane.domain.tool_confirmation.may_approve`), and a confirmation is
decided exactly once.

An approval is consumed by the call that asked for it, under a row lock, in the
transaction that checks it is still APPROVED (state USED): it cannot run the call
twice, and no other call can present it — a call gets its own confirmation, and the
waiting call checks the row's binding to its tool and arguments before it goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from control_plane.clock import Clock
from control_plane.domain import names
from control_plane.domain import tool_confirmation as tc
from control_plane.domain import tool_outcome as out
from control_plane.domain import validation as v
from control_plane.domain.errors import (
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    field_error,
)
from control_plane.domain.principals import Principal, Role, TokenCaller
from control_plane.domain.scope import OrgScope
from control_plane.domain.tool_policy import ToolRule
from control_plane.ids import new_id
from control_plane.logs import get_logger
from control_plane.storage import models as m
from control_plane.storage.db import Database

COLLECTION = "toolConfirmations"
#: The scope a service-account token needs to record a human's decision.
DECIDE_SCOPE = "confirmations:decide"
DEFAULT_TTL = dt.timedelta(minutes=5)
POLL_SECONDS = 0.25
#: Time kept back from the call's deadline to settle the confirmation's state.
SETTLE_MARGIN = 0.2
MAX_REASON = 1000

log = get_logger("agentauth.tools")


@dataclass(frozen=True, slots=True)
class ConfirmationView:
    org_id: str
    id: str
    tool: str
    summary: str
    principal: str
    actor: str
    state: str
    approver_id: str
    reason: str
    create_time: dt.datetime
    expire_time: dt.datetime
    decide_time: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Binding:
    """The exact call a confirmation is for."""

    action_id: str
    principal: str
    actor: str
    tool: str
    arguments_hash: str


def confirmation_name(org_id: str, id_: str) -> str:
    return names.child_name(org_id, COLLECTION, id_)


class ToolConfirmations:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        *,
        ttl: dt.timedelta = DEFAULT_TTL,
        poll_seconds: float = POLL_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if ttl <= dt.timedelta(0):
            raise ValueError("a confirmation's TTL must be positive")
        self._db = db
        self._clock = clock
        self._ttl = ttl
        self._poll = poll_seconds
        self._sleep = sleep

    # ------------------------------------------------------------ ExecuteTool

    async def hold(
        self,
        scope: OrgScope,
        caller: TokenCaller,
        binding: Binding,
        arguments: Mapping[str, Any],
        rules: tuple[ToolRule, ...],
        ends: float,
        emit: Callable[[out.Event], None],
    ) -> out.Failed | None:
        """Wait for a human's decision on this call: None once an approval was taken
        (the call goes on), else the call's terminal refusal."""
        approvers = tuple(tc.RuleApprovers.of(r) for r in rules)
        if not tc.anyone_may_approve(approvers, _principal_user(caller)):
            return out.Failed(
                out.CONFIRMATION_DENIED,
                "NO_APPROVER",
                "the organization's policy requires a human's confirmation, but names no "
                "approver and the principal is not a user",
                metadata={"rule": ",".join(r.id for r in rules)},
            )
        budget = min(self._ttl.total_seconds(), ends - time.monotonic() - SETTLE_MARGIN)
        if budget <= 0:
            return _expired()
        now = self._clock.now()
        row = m.ToolConfirmation(
            org_id=scope.org_id,
            id=new_id(),
            action_id=binding.action_id,
            principal=binding.principal,
            actor=binding.actor,
            tool=binding.tool,
            arguments_hash=binding.arguments_hash,
            summary=tc.summary(binding.tool, arguments),
            rule_ids=[r.id for r in rules],
            approvers=[a.to_record() for a in approvers],
            state=tc.PENDING,
            approver_id=None,
            reason=None,
            create_time=now,
            expire_time=now + dt.timedelta(seconds=budget),
            decide_time=None,
        )
        async with self._db.org_tx(scope) as tx:
            await tx.tool_confirmations.add(row)
        emit(
            out.ConfirmationRequired(
                confirmation_name(scope.org_id, row.id), row.summary, row.expire_time
            )
        )
        until = time.monotonic() + budget
        try:
            while True:
                async with self._db.org_tx(scope) as tx:
                    state = await tx.tool_confirmations.state(row.id)
                left = until - time.monotonic()
                if state != tc.PENDING or left <= 0:
                    return await self._settle(scope, row.id, binding)
                await self._sleep(min(self._poll, left))
        except asyncio.CancelledError:
            # Shutdown stopped the wait: no one may approve a call that will not run.
            with contextlib.suppress(Exception):
                await self._settle(scope, row.id, _NOBODY)
            raise

    async def _settle(self, scope: OrgScope, id_: str, binding: Binding) -> out.Failed | None:
        """Under the row's lock: take an approval (APPROVED -> USED), report a denial,
        or close a confirmation nobody decided in time (PENDING -> EXPIRED)."""
        async with self._db.org_tx(scope) as tx:
            row = await tx.tool_confirmations.get_for_update(id_)
            if row is None:
                return _expired()
            if row.state == tc.APPROVED and _bound_to(row, binding):
                row.state = tc.USED
                return None
            if row.state == tc.DENIED:
                return out.Failed(
                    out.CONFIRMATION_DENIED,
                    "DENIED_BY_APPROVER",
                    "the human asked to confirm this call denied it",
                    retryable=False,
                )
            if row.state in (tc.PENDING, tc.APPROVED):
                row.state = tc.EXPIRED
            return _expired()

    # ------------------------------------------------------------ ConfirmAction

    async def get(self, principal: Principal, name: str) -> ConfirmationView:
        """What the backend shows the human before deciding (the server's own record,
        not the summary an agent relayed)."""
        n, scope = _addressed(principal, name)
        async with self._db.org_tx(scope) as tx:
            row = await tx.tool_confirmations.get(n.id)
            if row is None:
                raise NotFound()
            return _view(row)

    async def decide(
        self, principal: Principal, name: str, approver: str, approve: bool, reason: str
    ) -> ConfirmationView:
        n, scope = _addressed(principal, name)
        who = names.parse_child(approver, "users", "approver")
        if who.org_id != n.org_id:
            raise field_error("approver", "must be a user of the confirmation's organization")
        why = v.text(reason, "reason", max_len=MAX_REASON, allow_newlines=True)
        now = self._clock.now()
        async with self._db.org_tx(scope) as tx:
            row = await tx.tool_confirmations.get_for_update(n.id)
            if row is None:
                raise NotFound()
            user = await tx.users.fields(who.id, "state", "groups")
            groups = frozenset(user.groups or ()) if user is not None else frozenset[str]()
            rules = [tc.RuleApprovers.from_record(a) for a in row.approvers]
            if (
                user is None
                or user.state != "ACTIVE"
                or not tc.may_approve(rules, who.id, groups, _principal_user_of(row.principal))
            ):
                raise PermissionDenied(
                    "the policy that requires this confirmation does not let this user decide",
                    reason="APPROVER_NOT_ALLOWED",
                )
            if row.state == tc.EXPIRED or (row.state == tc.PENDING and row.expire_time <= now):
                raise FailedPrecondition("the confirmation expired", reason="CONFIRMATION_EXPIRED")
            if row.state != tc.PENDING:
                raise FailedPrecondition(
                    "the confirmation was decided already", reason="CONFIRMATION_DECIDED"
                )
            row.state = tc.APPROVED if approve else tc.DENIED
            row.approver_id = who.id
            row.reason = why or None
            row.decide_time = now
            view = _view(row)
        log.info(
            "tool_confirmation_decided",
            confirmation=n.id,
            approved=approve,
            tool=view.tool,
        )
        return view


def _addressed(principal: Principal, name: str) -> tuple[names.OrgChildName, OrgScope]:
    """The confirmation's name and org scope, once the caller may decide there."""
    n = names.parse_child(name, COLLECTION)
    scope = principal.scope_for(n.org_id)  # another org's name: NOT_FOUND
    if principal.role is Role.SERVICE_ACCOUNT and DECIDE_SCOPE not in principal.scopes:
        raise PermissionDenied(
            f"a service-account token needs the scope {DECIDE_SCOPE} to see or decide tool "
            "confirmations",
            reason="SCOPE_REQUIRED",
            metadata={"requiredScope": DECIDE_SCOPE},
        )
    return n, scope


#: Matches no confirmation: settling with it can only close one (never take it).
_NOBODY = Binding("", "", "", "", "")


def _expired() -> out.Failed:
    return out.Failed(
        out.CONFIRMATION_DENIED,
        "CONFIRMATION_EXPIRED",
        "nobody confirmed the call in time; it can be made again",
        retryable=True,
    )


def _bound_to(row: m.ToolConfirmation, binding: Binding) -> bool:
    return (
        row.action_id == binding.action_id
        and row.principal == binding.principal
        and row.actor == binding.actor
        and row.tool == binding.tool
        and row.arguments_hash == binding.arguments_hash
    )


def _principal_user(caller: TokenCaller) -> str | None:
    kind, id_ = caller.owner
    return id_ if kind == "users" else None


def _principal_user_of(subject: str) -> str | None:
    parts = subject.split("/")
    return parts[3] if len(parts) == 4 and parts[2] == "users" else None


def _view(row: m.ToolConfirmation) -> ConfirmationView:
    return ConfirmationView(
        row.org_id,
        row.id,
        row.tool,
        row.summary,
        row.principal,
        row.actor,
        row.state,
        row.approver_id or "",
        row.reason or "",
        row.create_time,
        row.expire_time,
        row.decide_time,
    )
