"""Human confirmation of tool calls, end to end: a rule marks gmail.send_message
``confirm``; the agent's stream says ``confirmation_required`` and waits; the
developer's backend records the human's decision with ToolService.ConfirmAction.

On SQLite and PostgreSQL, through the real server and the sandbox provider.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from agentauth import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from agentauth.v1 import admin_pb2 as apb
from agentauth.v1 import tool_pb2 as pb
from agentauth.v1 import tool_pb2_grpc
from agentauth.v1 import tool_policy_pb2 as tppb
from google.protobuf import struct_pb2
from sqlalchemy import text

from control_plane.storage.db import Database
from tests.api.conftest import start_harness
from tests.api.tool_helpers import Outcome, ToolWorld, another_org, tool_world

SEND = "gmail.send_message"
MAIL = {"to": ["bob@example.com"], "subject": "Hi", "body": "Hello"}
CONFIRM = "/agentauth.v1.ToolService/ConfirmAction"
HEX = "0123456789abcdef" * 2


class Held:
    """One ExecuteTool stream, read in the background (cancelling a read would cancel
    the call) and handed to the test as far as it needs."""

    def __init__(self, w: ToolWorld, token: str, arguments: dict[str, Any], **fields: Any) -> None:
        args = struct_pb2.Struct()
        args.update(arguments)
        self.call = w.stub(token).ExecuteTool(
            pb.ExecuteToolRequest(tool=SEND, arguments=args, **fields)
        )
        self.outcome = Outcome()
        self._queue: asyncio.Queue[pb.ExecuteToolResponse | None] = asyncio.Queue()
        self._pump = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.call:
                self._queue.put_nowait(message)
        finally:
            self._queue.put_nowait(None)

    async def _next(self) -> pb.ExecuteToolResponse | None:
        async with asyncio.timeout(30):
            message = await self._queue.get()
        if message is not None:
            self.outcome.messages.append(message)
        return message

    async def confirmation(self) -> pb.ConfirmationRequired:
        while True:
            message = await self._next()
            assert message is not None, self.outcome.kinds
            if message.WhichOneof("event") == "confirmation_required":
                return message.confirmation_required

    async def still_waiting(self, seconds: float = 0.6) -> None:
        """The stream carries nothing more for a while: the call waits."""
        await asyncio.sleep(seconds)
        assert self._queue.empty() and not self._pump.done()

    async def rest(self) -> Outcome:
        while await self._next() is not None:
            pass
        await self._pump
        return self.outcome


async def _rule(w: ToolWorld, **fields: Any) -> tppb.ToolPolicyRule:
    created = await w.admin.admin.CreateToolPolicyRule(
        apb.CreateToolPolicyRuleRequest(
            parent=w.org, tool_policy_rule=tppb.ToolPolicyRule(tool=SEND, confirm=True, **fields)
        )
    )
    return created.tool_policy_rule


async def decide(
    client: Any, name: str, approver: str, approve: bool = True, reason: str = ""
) -> pb.ToolConfirmation:
    stub = tool_pb2_grpc.ToolServiceStub(client.channel)  # type: ignore[no-untyped-call]
    resp = await stub.ConfirmAction(
        pb.ConfirmActionRequest(name=name, approver=approver, approve=approve, reason=reason)
    )
    return resp.confirmation


async def lookup(client: Any, name: str) -> pb.ToolConfirmation:
    stub = tool_pb2_grpc.ToolServiceStub(client.channel)  # type: ignore[no-untyped-call]
    resp = await stub.GetToolConfirmation(pb.GetToolConfirmationRequest(name=name))
    return resp.confirmation


async def _row(h: Any, name: str) -> Any:
    owner = Database(h.database_url, app_role=None)
    try:
        async with owner.engine.connect() as conn:
            found = await conn.execute(
                text("SELECT * FROM tool_confirmations WHERE id = :id"),
                {"id": name.rsplit("/", 1)[1]},
            )
            return found.mappings().one()
    finally:
        await owner.dispose()


async def test_an_approved_call_runs_once_with_the_arguments_the_human_saw(
    harness: Any, captured_logs: Any
) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        rule = await _rule(w)
        held = Held(w, await w.delegated(), MAIL)
        asked = await held.confirmation()
        assert held.outcome.kinds == ["accepted", "confirmation_required"]
        assert asked.confirmation.startswith(w.org + "/toolConfirmations/")
        assert asked.summary == "gmail.send_message body=Hello subject=Hi to=bob@example.com"
        assert asked.expire_time.ToDatetime(dt.UTC) > dt.datetime.now(dt.UTC)
        await held.still_waiting()
        assert not w.provider.requests

        # The backend shows the human the server's record, not what the agent relayed.
        shown = await lookup(w.backend, asked.confirmation)
        assert shown.state == pb.TOOL_CONFIRMATION_STATE_PENDING and shown.approver == ""
        assert shown.summary == asked.summary and shown.tool == SEND
        assert shown.principal == w.user and shown.actor == w.agents["O"]
        assert shown.expire_time == asked.expire_time and not shown.HasField("decide_time")

        reason = "approved-in-the-ui-7f3a"
        decided = await decide(w.backend, asked.confirmation, w.user, reason=reason)
        assert decided.state == pb.TOOL_CONFIRMATION_STATE_APPROVED
        assert decided.approver == w.user and decided.reason == reason
        assert decided.tool == SEND and decided.principal == w.user
        assert decided.actor == w.agents["O"] and decided.summary == asked.summary
        assert decided.HasField("decide_time")
        got = await held.rest()
        assert got.kinds == ["accepted", "confirmation_required", "result"]
        [seen] = w.provider.requests
        assert seen.tool == SEND

        row = await _row(harness, asked.confirmation)
        assert row["state"] == "USED" and row["action_id"] == got.accepted.action_id
        rule_ids = row["rule_ids"]
        assert (json.loads(rule_ids) if isinstance(rule_ids, str) else rule_ids) == [
            rule.name.rsplit("/", 1)[1]
        ]
        # The decision is audited; the approver's words stay out of the logs.
        assert [e.outcome for e in harness.audit.events if e.action == CONFIRM] == [
            "pending",
            "OK",
        ]
        # (Our loggers: at DEBUG the SQLite driver's own logger prints statements'
        # parameters, as it does every column's value.)
        ours = [
            line
            for line in captured_logs.getvalue().splitlines()
            if json.loads(line).get("logger", "").startswith("agentauth")
        ]
        assert any("tool_confirmation_decided" in line for line in ours)
        assert not any(reason in line for line in ours)

        # A second decision on a used confirmation changes nothing.
        with pytest.raises(FailedPreconditionError) as err:
            await decide(w.backend, asked.confirmation, w.user, approve=False)
        assert err.value.reason == "CONFIRMATION_DECIDED"
        assert (await _row(harness, asked.confirmation))["state"] == "USED"


async def test_a_denied_call_never_reaches_the_provider(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        await _rule(w)
        held = Held(w, await w.delegated(), MAIL)
        asked = await held.confirmation()
        decided = await decide(w.backend, asked.confirmation, w.user, approve=False)
        assert decided.state == pb.TOOL_CONFIRMATION_STATE_DENIED
        got = await held.rest()
        assert got.code == "CONFIRMATION_DENIED"
        assert got.error.reason == "DENIED_BY_APPROVER" and not got.error.retryable
        assert not w.provider.requests
        with pytest.raises(FailedPreconditionError) as err:
            await decide(w.backend, asked.confirmation, w.user)
        assert err.value.reason == "CONFIRMATION_DECIDED"
        assert not w.provider.requests
        # Replaying the action (same request_id) would replay the denial; the audit
        # trail has the action's outcome.
        outcomes = [
            e
            for e in harness.audit.events
            if e.action_id == got.accepted.action_id and e.phase == "outcome"
        ]
        assert [(e.outcome, e.reason) for e in outcomes] == [
            ("CONFIRMATION_DENIED", "DENIED_BY_APPROVER")
        ]


async def test_a_confirmation_nobody_gives_expires(database_url: str, tmp_path: Path) -> None:
    async with (
        start_harness(
            database_url, tmp_path, tool_confirmation_ttl=dt.timedelta(seconds=1)
        ) as harness,
        tool_world(harness) as w,
    ):
        await w.connect()
        await _rule(w)
        held = Held(w, await w.delegated(), MAIL)
        asked = await held.confirmation()
        left = asked.expire_time.ToDatetime(dt.UTC) - dt.datetime.now(dt.UTC)
        assert left <= dt.timedelta(seconds=1)
        got = await held.rest()
        assert got.code == "CONFIRMATION_DENIED"
        assert got.error.reason == "CONFIRMATION_EXPIRED" and got.error.retryable
        assert (await _row(harness, asked.confirmation))["state"] == "EXPIRED"
        with pytest.raises(FailedPreconditionError) as err:
            await decide(w.backend, asked.confirmation, w.user)
        assert err.value.reason == "CONFIRMATION_EXPIRED"
        assert not w.provider.requests


async def test_only_an_approver_the_policy_names_decides(harness: Any) -> None:
    """A rule naming approvers: the principal is not one of them, an unknown or
    suspended user is not either; each refusal leaves the call waiting."""
    async with tool_world(harness) as w:
        await w.connect()
        bob = await w.new_user("bob")
        mallory = await w.new_user("mallory")
        await _rule(w, approvers=[bob, mallory])
        await w.admin.admin.UpdateUserStatus(
            apb.UpdateUserStatusRequest(name=mallory, state=apb.USER_STATE_SUSPENDED)
        )
        held = Held(w, await w.delegated(), MAIL)
        asked = await held.confirmation()
        for who in (w.user, mallory, f"{w.org}/users/{HEX}"):
            with pytest.raises(PermissionDeniedError) as err:
                await decide(w.backend, asked.confirmation, who)
            assert err.value.reason == "APPROVER_NOT_ALLOWED"
        await held.still_waiting()
        assert (await _row(harness, asked.confirmation))["state"] == "PENDING"
        decided = await decide(w.backend, asked.confirmation, bob)
        assert decided.approver == bob
        assert (await held.rest()).kinds[-1] == "result"
        assert len(w.provider.requests) == 1


async def test_the_principal_decides_when_the_rule_names_nobody(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        bob = await w.new_user("bob")
        await _rule(w)
        held = Held(w, await w.delegated(), MAIL)
        asked = await held.confirmation()
        with pytest.raises(PermissionDeniedError):
            await decide(w.backend, asked.confirmation, bob)
        await decide(w.backend, asked.confirmation, w.user)
        assert (await held.rest()).kinds[-1] == "result"


async def test_members_of_an_approver_group_decide(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        carol = await w.new_user("carol")
        await w.admin.admin.UpdateUserGroups(
            apb.UpdateUserGroupsRequest(name=carol, groups=["security"])
        )
        await _rule(w, approver_groups=["security"])
        held = Held(w, await w.delegated(), MAIL)
        asked = await held.confirmation()
        with pytest.raises(PermissionDeniedError):  # the principal is not in the group
            await decide(w.backend, asked.confirmation, w.user)
        await decide(w.backend, asked.confirmation, carol)
        assert (await held.rest()).kinds[-1] == "result"


async def test_every_rule_that_asks_for_confirmation_must_admit_the_approver(
    harness: Any,
) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        bob, carol = await w.new_user("bob"), await w.new_user("carol")
        await w.admin.admin.UpdateUserGroups(
            apb.UpdateUserGroupsRequest(name=carol, groups=["security"])
        )
        await _rule(w, approvers=[bob, carol])
        await _rule(w, approver_groups=["security"])
        held = Held(w, await w.delegated(), MAIL)
        asked = await held.confirmation()
        with pytest.raises(PermissionDeniedError):  # named by one rule, not the other
            await decide(w.backend, asked.confirmation, bob)
        await decide(w.backend, asked.confirmation, carol, approve=False)
        assert (await held.rest()).error.reason == "DENIED_BY_APPROVER"


async def test_an_approval_is_used_once_and_only_for_its_own_arguments(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        await _rule(w)
        token = await w.delegated()
        first = Held(w, token, MAIL)
        asked = await first.confirmation()
        other_args = {**MAIL, "to": ["eve@example.com"]}
        other = Held(w, token, other_args)
        other_asked = await other.confirmation()
        assert other_asked.confirmation != asked.confirmation
        assert "to=eve@example.com" in other_asked.summary
        hashes = {
            (await _row(harness, n))["arguments_hash"]
            for n in (asked.confirmation, other_asked.confirmation)
        }
        assert len(hashes) == 2

        await decide(w.backend, asked.confirmation, w.user)
        assert (await first.rest()).kinds[-1] == "result"
        # The approval of the first call did nothing for the call with other arguments.
        await other.still_waiting()
        await decide(w.backend, other_asked.confirmation, w.user, approve=False)
        assert (await other.rest()).error.reason == "DENIED_BY_APPROVER"

        # The same arguments again: a new call asks again; the used approval is spent.
        again = Held(w, token, MAIL)
        again_asked = await again.confirmation()
        assert again_asked.confirmation != asked.confirmation
        with pytest.raises(FailedPreconditionError):
            await decide(w.backend, asked.confirmation, w.user)
        await again.still_waiting()
        await decide(w.backend, again_asked.confirmation, w.user, approve=False)
        assert (await again.rest()).error.reason == "DENIED_BY_APPROVER"
        assert len(w.provider.requests) == 1


async def test_another_orgs_backend_cannot_find_the_confirmation(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        await _rule(w)
        held = Held(w, await w.delegated(), MAIL)
        asked = await held.confirmation()
        other = await another_org(w)
        missing = f"{w.org}/toolConfirmations/{HEX}"
        errors = []
        for name in (asked.confirmation, missing):
            for client in (other.backend, other.admin):
                with pytest.raises(NotFoundError) as err:
                    await decide(client, name, w.user)
                errors.append((err.value.reason, err.value.message))
                assert w.org.split("/")[1] not in err.value.message
                with pytest.raises(NotFoundError) as err:
                    await lookup(client, name)
                errors.append((err.value.reason, err.value.message))
        assert len(set(errors)) == 1
        # Its own org's name with the other org's confirmation id: not found either.
        with pytest.raises(NotFoundError):
            await decide(
                other.backend,
                f"{other.org}/toolConfirmations/{asked.confirmation.rsplit('/', 1)[1]}",
                other.user,
            )
        await held.still_waiting()
        # The org's admin key may record the decision too.
        await decide(w.admin, asked.confirmation, w.user, approve=False)
        assert (await held.rest()).error.reason == "DENIED_BY_APPROVER"


async def test_an_agents_own_service_account_token_cannot_decide(harness: Any) -> None:
    """The orchestrator can exchange its workload token for a service-account token
    of the org; without the decide scope that token cannot approve its own call."""
    async with tool_world(harness) as w:
        await w.connect()
        await _rule(w)
        delegated = await w.delegated()
        held = Held(w, delegated, MAIL)
        asked = await held.confirmation()
        agent_sa = harness.client(await w.sa_token("O"))
        with pytest.raises(PermissionDeniedError) as err:
            await decide(agent_sa, asked.confirmation, w.user)
        assert err.value.reason == "SCOPE_REQUIRED"
        with pytest.raises(PermissionDeniedError) as err:
            await lookup(agent_sa, asked.confirmation)
        assert err.value.reason == "SCOPE_REQUIRED"
        with pytest.raises(UnauthenticatedError):  # a tool token is no bearer credential
            await decide(harness.client(delegated), asked.confirmation, w.user)
        await held.still_waiting()
        assert (await _row(harness, asked.confirmation))["state"] == "PENDING"
        await decide(w.backend, asked.confirmation, w.user, approve=False)
        await held.rest()


async def test_malformed_requests_name_their_field(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        await _rule(w)
        held = Held(w, await w.delegated(), MAIL)
        asked = await held.confirmation()
        cases = [
            ("", w.user, "", "name", "FIELD_REQUIRED"),
            ("toolConfirmations/" + HEX, w.user, "", "name", "INVALID_RESOURCE_NAME"),
            (f"{w.org}/toolConfirmations/XYZ", w.user, "", "name", "INVALID_RESOURCE_NAME"),
            (f"{w.org}/users/{HEX}", w.user, "", "name", "INVALID_RESOURCE_NAME"),
            (asked.confirmation, "", "", "approver", "FIELD_REQUIRED"),
            (asked.confirmation, "alice", "", "approver", "INVALID_RESOURCE_NAME"),
            (asked.confirmation, w.agents["O"], "", "approver", "INVALID_RESOURCE_NAME"),
            (
                asked.confirmation,
                f"orgs/{'1' * 32}/users/{HEX}",
                "",
                "approver",
                "INVALID_ARGUMENT",
            ),
            (asked.confirmation, w.user, "ok\x07", "reason", "INVALID_ARGUMENT"),
            (asked.confirmation, w.user, "r" * 1001, "reason", "FIELD_TOO_LONG"),
        ]
        wrong = []
        for name, approver, reason, field, code in cases:
            try:
                await decide(w.backend, name, approver, reason=reason)
            except InvalidArgumentError as exc:
                if (dict(exc.metadata), exc.reason) != ({"field": field}, code):
                    wrong.append((name, approver, field, code, dict(exc.metadata), exc.reason))
            else:
                wrong.append((name, approver, field, code, "accepted"))
        for name in ("", f"{w.org}/toolConfirmations/XYZ"):
            with pytest.raises(InvalidArgumentError) as err:
                await lookup(w.backend, name)
            assert dict(err.value.metadata) == {"field": "name"}
        assert wrong == []
        await held.still_waiting(0.3)
        await decide(w.backend, asked.confirmation, w.user, approve=False)
        await held.rest()


# ------------------------------------------------------------------ the rules' approvers


async def test_a_rules_approvers_round_trip_and_are_checked(harness: Any) -> None:
    async with tool_world(harness) as w:
        bob = await w.new_user("bob")
        made = await _rule(w, approvers=[bob, bob], approver_groups=["sec", "ops", "sec"])
        assert list(made.approvers) == [bob] and list(made.approver_groups) == ["ops", "sec"]
        got = await w.admin.admin.GetToolPolicyRule(apb.GetToolPolicyRuleRequest(name=made.name))
        assert got.tool_policy_rule == made
        other = await another_org(w)
        cases: list[tuple[dict[str, Any], str, str]] = [
            ({"approvers": [other.user]}, "approvers", "INVALID_ARGUMENT"),
            ({"approvers": [f"{w.org}/users/{HEX}"]}, "approvers", "INVALID_ARGUMENT"),
            ({"approvers": [w.agents["O"]]}, "approvers", "INVALID_RESOURCE_NAME"),
            ({"approvers": [f"{w.org}/users/{HEX}"] * 65}, "approvers", "INVALID_ARGUMENT"),
            ({"approver_groups": ["Sec"]}, "approver_groups", "INVALID_ARGUMENT"),
            (
                {"approver_groups": [f"g{i}" for i in range(65)]},
                "approver_groups",
                "INVALID_ARGUMENT",
            ),
            ({"approvers": [bob], "confirm": False}, "approvers", "INVALID_ARGUMENT"),
            ({"approver_groups": ["sec"], "confirm": False}, "approver_groups", "INVALID_ARGUMENT"),
        ]
        wrong = []
        for fields, field, reason in cases:
            rule = {"tool": SEND, "confirm": True, **fields}
            try:
                await w.admin.admin.CreateToolPolicyRule(
                    apb.CreateToolPolicyRuleRequest(
                        parent=w.org, tool_policy_rule=tppb.ToolPolicyRule(**rule)
                    )
                )
            except InvalidArgumentError as exc:
                if (dict(exc.metadata), exc.reason) != (
                    {"field": "tool_policy_rule." + field},
                    reason,
                ):
                    wrong.append((fields, dict(exc.metadata), exc.reason))
            else:
                wrong.append((fields, "accepted"))
        assert wrong == []


# ------------------------------------------------------------------ the wait's lifetime


async def test_a_caller_that_goes_away_can_replay_the_confirmed_call(harness: Any) -> None:
    """The wait belongs to the call, not to its stream (like the provider call)."""
    async with tool_world(harness) as w:
        await w.connect()
        await _rule(w)
        token = await w.delegated()
        held = Held(w, token, MAIL, request_id="confirm-me")
        asked = await held.confirmation()
        held.call.cancel()
        replay = asyncio.ensure_future(w.run(token, SEND, MAIL, request_id="confirm-me"))
        await asyncio.sleep(0.5)
        assert not replay.done() and not w.provider.requests
        await decide(w.backend, asked.confirmation, w.user)
        got = await replay
        assert got.accepted.replayed and got.kinds == ["accepted", "result"]
        assert len(w.provider.requests) == 1


async def test_shutdown_closes_a_pending_confirmation(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        await _rule(w)
        held = Held(w, await w.delegated(), MAIL)
        asked = await held.confirmation()
        await harness.servers.connections.tools.drain(0.1)
        got = await held.rest()
        assert got.code == "TIMEOUT" and got.error.reason == "SHUTDOWN"
        assert (await _row(harness, asked.confirmation))["state"] == "EXPIRED"
        with pytest.raises(FailedPreconditionError) as err:
            await decide(w.backend, asked.confirmation, w.user)
        assert err.value.reason == "CONFIRMATION_EXPIRED"
        assert not w.provider.requests


async def test_an_approval_bound_to_other_arguments_never_runs_the_call(harness: Any) -> None:
    """The waiting call takes an approval only if the confirmation is bound to its own
    arguments hash: a row whose binding was changed (here, by hand in the database)
    lets nothing run."""
    async with tool_world(harness) as w:
        await w.connect()
        await _rule(w)
        held = Held(w, await w.delegated(), MAIL)
        asked = await held.confirmation()
        owner = Database(harness.database_url, app_role=None)
        try:
            async with owner.engine.begin() as conn:
                await conn.execute(
                    text("UPDATE tool_confirmations SET arguments_hash = :h WHERE id = :id"),
                    {"h": "0" * 64, "id": asked.confirmation.rsplit("/", 1)[1]},
                )
        finally:
            await owner.dispose()
        await decide(w.backend, asked.confirmation, w.user)
        got = await held.rest()
        assert got.code == "CONFIRMATION_DENIED" and got.error.reason == "CONFIRMATION_EXPIRED"
        assert (await _row(harness, asked.confirmation))["state"] == "EXPIRED"
        assert not w.provider.requests
