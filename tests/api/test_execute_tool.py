"""ExecuteTool end to end: a real server, real tokens, the sandbox provider upstream.

Each error code of the vocabulary is produced by a real behaviour of the emulator
(or of the org's configuration), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

import grpc
import pytest
from agentauth import ControlPlaneClient
from agentauth.v1 import connection_pb2 as cpb
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import tool_pb2 as tpb2
from agentauth.v1 import tool_pb2_grpc
from google.protobuf import struct_pb2

from control_plane.app import open_runtime, start_servers
from control_plane.audit.hook import RecordingAuditSink
from tests.api.tool_helpers import another_org, rpc_error, tool_world
from tests.scopes import scope

LIST = "gmail.list_messages"
SEND = "gmail.send_message"
MAIL = {"to": ["bob@example.com"], "subject": "Hi", "body": "Hello"}


async def test_a_delegated_agent_lists_messages_with_the_users_account(harness: Any) -> None:
    async with tool_world(harness) as w:
        account = await w.connect()
        w.provider.responses[LIST] = {"messages": [{"id": "m1", "threadId": "t1"}]}
        token = await w.delegated()
        got = await w.run(token, LIST, {"maxResults": 5, "q": "is:unread"})
        assert got.kinds == ["accepted", "result"]
        assert got.accepted.connected_account == account and not got.accepted.replayed
        assert got.result.upstream_status == 200
        assert got.result.output_trust == cpb.OUTPUT_TRUST_TRUSTED
        assert got.data == {"messages": [{"id": "m1", "threadId": "t1"}]}
        [seen] = w.provider.requests
        assert seen.tool == LIST and seen.authorized
        assert seen.query == {"maxResults": "5", "q": "is:unread"}
        assert (await w.account(account)).HasField("last_used_time")
        action = got.accepted.action_id
        events = [e for e in harness.audit.events if e.action_id == action]
        assert [(e.phase, e.outcome) for e in events] == [("attempt", "pending"), ("outcome", "OK")]
        assert events[0].target == LIST and events[0].actor == w.agents["O"]


async def test_a_subagent_runs_the_tool_until_the_orchestrators_token_is_revoked(
    harness: Any,
) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        parent = await w.delegated("tools:gmail.list_messages tools:gmail.send_message")
        child = await w.hop(parent, "S", "tools:gmail.list_messages")
        got = await w.run(child, LIST)
        assert got.kinds == ["accepted", "result"]
        [event] = [e for e in harness.audit.events if e.action_id == got.accepted.action_id][:1]
        assert event.actor == w.agents["S"]
        await w.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=parent))
        exc = await rpc_error(w.run(child, LIST))
        assert exc.code == grpc.StatusCode.UNAUTHENTICATED
        assert len(w.provider.requests) == 1  # the refused call never left


async def test_the_subagent_cannot_run_a_tool_its_token_does_not_name(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        parent = await w.delegated("tools:gmail.list_messages tools:gmail.send_message")
        child = await w.hop(parent, "S", "tools:gmail.list_messages")
        got = await w.run(child, SEND, MAIL)
        assert got.kinds == ["error"] and got.code == "POLICY_DENIED"
        assert got.error.reason == "TOKEN_SCOPE"
        assert got.error.metadata["requiredScope"] == "tools:gmail.send_message"
        assert not w.provider.requests


async def test_an_admin_key_or_a_foreign_audience_runs_no_tool(harness: Any) -> None:
    async with tool_world(harness) as w:
        exc = await rpc_error(
            w.run(w.admin._api_key if hasattr(w.admin, "_api_key") else "aa_x", LIST)
        )
        assert exc.code == grpc.StatusCode.UNAUTHENTICATED
        exc = await rpc_error(w.run("not-a-token", LIST))
        assert exc.code == grpc.StatusCode.UNAUTHENTICATED


async def test_arguments_are_checked_before_anything_leaves(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        token = await w.delegated()
        got = await w.run(token, LIST, {"maxResults": 0})
        assert got.kinds == ["error"] and got.code == "INVALID_ARGUMENTS"
        assert got.error.metadata["pointer"] == "/maxResults" and not got.error.retryable
        got = await w.run(token, "gmail.no_such_tool")
        assert got.code == "INVALID_ARGUMENTS" and got.error.reason == "TOOL_UNKNOWN"
        assert not w.provider.requests


async def test_malformed_request_fields_are_grpc_errors(harness: Any) -> None:
    async with tool_world(harness) as w:
        token = await w.delegated()
        for fields in (
            {"request_id": "has spaces"},
            {"connected_account": "orgs/acme/connectedAccounts/x"},
        ):
            exc = await rpc_error(w.run(token, LIST, **fields))
            assert exc.code == grpc.StatusCode.INVALID_ARGUMENT
        exc = await rpc_error(w.run(token, ""))
        assert exc.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_user_without_an_account_gets_a_connect_link(harness: Any) -> None:
    async with tool_world(harness) as w:
        token = await w.delegated()
        got = await w.run(token, LIST)
        assert got.kinds == ["error"] and got.code == "NOT_CONNECTED"
        url = got.error.metadata["connectUrl"]
        assert url.startswith(harness.http + "/connect/")
        # The link connects the pending account it made; then the call works.
        listed = await w.admin.connections.ListConnectedAccounts(
            cpb.ListConnectedAccountsRequest(parent=w.org)
        )
        [pending] = listed.connected_accounts
        assert pending.state == cpb.CONNECTED_ACCOUNT_STATE_PENDING
        await w.connect(account=pending)
        assert (await w.run(token, LIST)).kinds == ["accepted", "result"]


async def test_a_disabled_tool_is_refused_by_policy(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        await w.enable([LIST])
        got = await w.run(await w.delegated(), SEND, MAIL)
        assert got.code == "POLICY_DENIED" and got.error.reason == "TOOL_DISABLED"
        assert not w.provider.requests


async def test_scopes_the_account_never_granted_are_reported_before_any_call(
    harness: Any,
) -> None:
    async with tool_world(harness) as w:
        await w.enable([LIST])  # the connect link asks for the read-only scope only
        await w.connect()
        await w.enable([LIST, SEND])
        got = await w.run(await w.delegated(), SEND, MAIL)
        assert got.code == "SCOPE_INSUFFICIENT"
        meta = got.error.metadata
        assert meta["required"] == "https://www.googleapis.com/auth/gmail.send"
        assert "gmail.readonly" in meta["granted"]
        assert meta["reconnectUrl"].startswith(harness.http + "/connect/")
        assert not w.provider.requests


async def test_a_revoked_grant_marks_the_account_and_asks_for_a_reconnect(harness: Any) -> None:
    async with tool_world(harness) as w:
        account = await w.connect()
        w.provider.revoke_all()
        got = await w.run(await w.delegated(), LIST)
        assert got.code == "AUTH_REVOKED" and not got.error.retryable
        assert got.error.metadata["reconnectUrl"].startswith(harness.http + "/connect/")
        assert (await w.account(account)).state == cpb.CONNECTED_ACCOUNT_STATE_REVOKED
        again = await w.run(await w.delegated(), LIST)  # no second provider round trip
        assert again.code == "AUTH_REVOKED"


async def test_an_expired_access_token_is_refreshed_and_the_stream_says_so(harness: Any) -> None:
    now = [time.time()]
    async with tool_world(harness, clock=lambda: now[0]) as w:
        await w.connect()
        now[0] += 2 * 3600  # the provider's access token died; our record says it lives
        got = await w.run(await w.delegated(), LIST)
        assert got.kinds == ["accepted", "credential_refreshed", "result"]


async def test_a_short_rate_limit_is_waited_out(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        w.provider.faults.next_api_status = 429
        w.provider.faults.retry_after = 1
        got = await w.run(await w.delegated(), LIST)
        assert got.kinds == ["accepted", "retry_scheduled", "result"]
        retry = got.messages[1].retry_scheduled
        assert retry.reason == "RATE_LIMITED" and retry.attempt == 2
        assert retry.delay.ToTimedelta().total_seconds() == pytest.approx(1, abs=0.01)


async def test_a_long_rate_limit_is_reported_with_its_retry_after(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        w.provider.faults.next_api_status = 429
        w.provider.faults.retry_after = 60
        got = await w.run(await w.delegated(), LIST)
        assert got.code == "RATE_LIMITED" and got.error.retryable
        assert got.error.retry_after.ToTimedelta().total_seconds() == pytest.approx(60, abs=1)
        assert len(w.provider.requests) == 1


async def test_a_transient_failure_is_retried_only_for_idempotent_methods(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        token = await w.delegated()
        w.provider.faults.next_api_status = 503
        w.provider.faults.retry_after = 0
        got = await w.run(token, LIST)
        assert got.kinds == ["accepted", "retry_scheduled", "result"]
        w.provider.faults.next_api_status = 503
        got = await w.run(token, SEND, MAIL)
        assert got.code == "UPSTREAM_UNAVAILABLE" and got.error.retryable
        assert [r.tool for r in w.provider.requests].count(SEND) == 1


async def test_a_provider_refusal_is_an_upstream_error_with_its_status(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        w.provider.faults.next_api_status = 404
        got = await w.run(await w.delegated(), "gmail.get_message", {"id": "abc123"})
        assert got.code == "UPSTREAM_ERROR" and not got.error.retryable
        assert got.error.metadata["status"] == "404"


async def test_a_slow_provider_times_the_call_out(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        w.provider.faults.delay = 3.0
        started = time.monotonic()
        got = await w.run(await w.delegated(), LIST, timeout={"seconds": 1})
        assert got.code == "TIMEOUT" and got.error.reason == "DEADLINE_EXCEEDED"
        assert got.error.retryable  # GET: safe to repeat
        assert time.monotonic() - started < 2.5


async def test_the_same_request_id_posts_once(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        token = await w.delegated()
        first = await w.run(token, SEND, MAIL, request_id="send-1")
        second = await w.run(token, SEND, MAIL, request_id="send-1")
        assert first.kinds == ["accepted", "result"]
        assert second.kinds == ["accepted", "result"] and second.accepted.replayed
        assert second.accepted.action_id == first.accepted.action_id
        assert second.data == first.data
        assert [r.tool for r in w.provider.requests] == [SEND]
        other = await w.run(token, SEND, {**MAIL, "subject": "Other"}, request_id="send-1")
        assert other.code == "INVALID_ARGUMENTS" and other.error.reason == "REQUEST_ID_REUSED"
        # Another principal's identical key is its own call.
        bob = await w.new_user("bob")
        await w.connect(bob)
        theirs = await w.run(await w.delegated(user=bob), SEND, MAIL, request_id="send-1")
        assert not theirs.accepted.replayed
        assert [r.tool for r in w.provider.requests] == [SEND, SEND]


async def test_a_failed_outcome_is_replayed_too(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        token = await w.delegated()
        w.provider.faults.next_api_status = 404
        first = await w.run(token, "gmail.get_message", {"id": "abc"}, request_id="r-1")
        second = await w.run(token, "gmail.get_message", {"id": "abc"}, request_id="r-1")
        assert first.code == second.code == "UPSTREAM_ERROR" and second.accepted.replayed
        assert len(w.provider.requests) == 1


async def test_another_orgs_account_is_never_used(harness: Any) -> None:
    async with tool_world(harness) as a:
        b = await another_org(a)
        theirs = await b.connect()
        await a.connect()
        got = await a.run(await a.delegated(), LIST, connected_account=theirs)
        assert got.code == "NOT_CONNECTED" and got.error.reason == "NO_ACCOUNT"
        assert "connectUrl" not in got.error.metadata
        assert b.org.split("/")[1] not in str(got.messages)
        assert not a.provider.requests


async def test_another_users_account_in_the_same_org_is_never_used(harness: Any) -> None:
    async with tool_world(harness) as w:
        bob = await w.new_user("bob")
        bobs = await w.connect(bob)
        got = await w.run(await w.delegated(), LIST, connected_account=bobs)
        assert got.code == "NOT_CONNECTED"
        assert not w.provider.requests


async def test_a_large_answer_arrives_in_chunks(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        big = {"messages": [{"id": f"m{i:07d}", "threadId": "x" * 80} for i in range(10_000)]}
        w.provider.responses[LIST] = big
        got = await w.run(await w.delegated(), LIST)
        assert got.result.chunked and got.kinds.count("output_chunk") > 4
        assert got.data == big


async def test_list_tools_shows_what_the_token_may_run_and_the_connection(harness: Any) -> None:
    async with tool_world(harness) as w:
        token = await w.delegated("tools:gmail.list_messages")
        [tool] = await w.list_tools(token)
        assert tool.name == LIST and tool.provider_scopes
        assert tool.connection.state == 2  # NOT_CONNECTED
        assert tool.connection.connect_url.startswith(harness.http + "/connect/")
        await w.connect()
        [tool] = await w.list_tools(token)
        assert tool.connection.state == 1 and tool.connection.connected_account
        wide = await w.list_tools(await w.delegated("tools:gmail.*"))
        assert [t.name for t in wide] == sorted(t.name for t in wide) and len(wide) >= 3


async def test_a_request_id_past_the_window_is_a_new_call_and_old_records_go(
    harness: Any,
) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        token = await w.delegated()
        first = await w.run(token, SEND, MAIL, request_id="old-1")
        kept = await w.run(token, SEND, MAIL, request_id="kept-1")
        org = scope(w.org.split("/")[1])
        async with harness.runtime.db.org_tx(org) as tx:
            row = await tx.tool_actions.get(first.accepted.action_id)
            row.create_time -= dt.timedelta(hours=25)
        again = await w.run(token, SEND, MAIL, request_id="old-1")
        assert not again.accepted.replayed and again.accepted.action_id != first.accepted.action_id
        assert [r.tool for r in w.provider.requests] == [SEND, SEND, SEND]
        async with harness.runtime.db.org_tx(org) as tx:
            row = await tx.tool_actions.get(kept.accepted.action_id)
            row.create_time -= dt.timedelta(hours=25)
        assert await harness.servers.connections.tools.prune() == 1
        async with harness.runtime.db.org_tx(org) as tx:
            assert await tx.tool_actions.get(kept.accepted.action_id) is None
            assert await tx.tool_actions.get(again.accepted.action_id) is not None


async def test_a_subagent_gets_a_narrower_tool_scope_than_its_orchestrator(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        parent = await w.delegated("tools:gmail.*")
        child = await w.hop(parent, "S", "tools:gmail.list_messages")
        assert (await w.run(child, LIST)).kinds == ["accepted", "result"]
        assert (await w.run(child, SEND, MAIL)).code == "POLICY_DENIED"
        exc = await rpc_error(w.hop(parent, "S", "tools:*"))
        assert exc.code == grpc.StatusCode.INVALID_ARGUMENT and exc.reason == "INVALID_SCOPE"


async def test_no_audit_record_no_action_and_the_request_id_stays_free(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        token = await w.delegated()
        harness.audit.set_next_error(RuntimeError("audit store down"))
        exc = await rpc_error(w.run(token, SEND, MAIL, request_id="audit-1"))
        assert exc.code == grpc.StatusCode.UNAVAILABLE and exc.reason == "AUDIT_UNAVAILABLE"
        assert not w.provider.requests
        again = await w.run(token, SEND, MAIL, request_id="audit-1")
        assert again.kinds == ["accepted", "result"] and not again.accepted.replayed


async def test_the_same_request_id_on_another_replica_replays_the_first_outcome(
    harness: Any,
) -> None:
    """Idempotency lives in the shared database, not in a replica's memory."""
    async with tool_world(harness) as w:
        await w.connect()
        token = await w.delegated()
        first = await w.run(token, SEND, MAIL, request_id="replica-1")
        # A second replica: same database, KEK and issuer, its own ports and memory.
        settings = dataclasses.replace(
            harness.runtime.settings, issuer=harness.servers.tokens.issuer
        )
        other = await open_runtime(settings, audit=RecordingAuditSink())
        other.catalog.connectors["gmail"] = w.provider.connector_for_sandbox()
        servers = await start_servers(other)
        try:
            async with ControlPlaneClient(f"127.0.0.1:{servers.grpc_port}", token) as client:
                stub = tool_pb2_grpc.ToolServiceStub(client.channel)  # type: ignore[no-untyped-call]
                args = struct_pb2.Struct()
                args.update(MAIL)
                messages = [
                    m
                    async for m in stub.ExecuteTool(
                        tpb2.ExecuteToolRequest(tool=SEND, arguments=args, request_id="replica-1")
                    )
                ]
        finally:
            await servers.stop(0)
            await other.close()
        assert messages[0].accepted.replayed
        assert messages[0].accepted.action_id == first.accepted.action_id
        assert messages[-1].WhichOneof("event") == "result"
        assert [r.tool for r in w.provider.requests] == [SEND]
