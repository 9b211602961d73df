"""The SDK against the real ToolService: execute_tool, its typed errors, the sync
client and a framework adapter, through a real server and the sandbox provider."""

from __future__ import annotations

import asyncio
from typing import Any

from agentauth import (
    SyncToolClient,
    ToolAuthRevoked,
    ToolInvalidArguments,
    ToolNotConnected,
    ToolPolicyDenied,
    ToolRateLimited,
)
from agentauth.integrations.anthropic_tools import AnthropicTools
from agentauth.integrations.tool_runner import ToolRunner

from tests.api.tool_helpers import tool_world

LIST = "gmail.list_messages"


async def test_execute_tool_returns_the_result_and_raises_typed_errors(harness: Any) -> None:
    async with tool_world(harness) as w:
        client = harness.client(None)
        token = await w.delegated()
        try:
            await client.execute_tool(LIST, {}, token=token)
            raise AssertionError("not connected")
        except ToolNotConnected as err:
            assert err.connect_url.startswith(harness.http + "/connect/")
            assert not err.retryable and err.action_id == ""
        await w.connect()
        w.provider.responses[LIST] = {"messages": [{"id": "m1"}], "nextPageToken": "p2"}
        seen: list[str] = []
        result = await client.execute_tool(
            LIST,
            {"maxResults": 3},
            token=token,
            on_event=lambda m: seen.append(m.WhichOneof("event")),
        )
        assert result.data == {"messages": [{"id": "m1"}], "nextPageToken": "p2"}
        assert result.next_cursor == "p2" and result.upstream_status == 200
        assert seen == ["accepted", "result"] and result.action_id
        try:
            await client.execute_tool(LIST, {"maxResults": "many"}, token=token)
            raise AssertionError("invalid")
        except ToolInvalidArguments as err:
            assert err.metadata["pointer"] == "/maxResults"
        w.provider.faults.next_api_status = 429
        w.provider.faults.retry_after = 90
        try:
            await client.execute_tool(LIST, {}, token=token)
            raise AssertionError("rate limited")
        except ToolRateLimited as err:
            assert err.retryable and err.retry_after is not None and err.retry_after >= 89
        narrow = await w.delegated("tools:gmail.list_messages")
        try:
            await client.execute_tool(
                "gmail.send_message", {"to": ["a@b.c"], "subject": "s", "body": "b"}, token=narrow
            )
            raise AssertionError("denied")
        except ToolPolicyDenied as err:
            assert err.reason == "TOKEN_SCOPE"
        w.provider.revoke_all()
        try:
            await client.execute_tool(LIST, {}, token=token)
            raise AssertionError("revoked")
        except ToolAuthRevoked as err:
            assert err.reconnect_url


async def test_list_tools_and_an_anthropic_turn_run_through_the_server(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        w.provider.responses[LIST] = {"messages": [{"id": "m9"}]}
        client = harness.client(None)
        token = await w.delegated("tools:gmail.list_messages")
        specs = await client.list_tools(token=token)
        assert [s.name for s in specs] == [LIST]
        assert specs[0].connection_state == "CONNECTED" and specs[0].cursor_argument == "pageToken"
        adapter = AnthropicTools(ToolRunner(client, specs, token=token))
        [offered] = adapter.tools()
        assert offered["name"] == "gmail-list_messages"
        # The model's turn, as the Messages API returns it: one tool_use block.
        turn = [
            {"type": "text", "text": "Let me look."},
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "gmail-list_messages",
                "input": {"q": "is:unread"},
            },
        ]
        [block] = await adapter.handle(turn)
        assert block["tool_use_id"] == "toolu_01" and not block.get("is_error")
        assert "m9" in str(block["content"])
        assert w.provider.requests[-1].query == {"q": "is:unread"}


async def test_the_sync_client_runs_a_tool(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        w.provider.responses[LIST] = {"messages": []}
        token = await w.delegated()

        def blocking() -> Any:
            with SyncToolClient(harness.target) as tools:
                return tools.execute_tool(LIST, {}, token=token)

        result = await asyncio.to_thread(blocking)
        assert result.data == {"messages": []}
