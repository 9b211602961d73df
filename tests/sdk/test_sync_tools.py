"""SyncToolClient: the blocking facade runs the async client on its own thread.

The scripted server runs on the test's event loop; the blocking calls run in
worker threads (asyncio.to_thread), as they would in synchronous code.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from agentauth import SyncToolClient, ToolRateLimited, UnauthenticatedError
from agentauth.v1 import tool_pb2

from tests.sdk.scripted_server import Abort, Hang, ScriptedTools, serve, tools_servicer
from tests.sdk.test_tools import accepted, error, result, seconds


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, ScriptedTools]]:
    servicer = ScriptedTools()
    servicer.tools = [tool_pb2.Tool(name="gmail.send_message", input_schema_json="{}")]
    servicer.scripts["gmail.send_message"] = [accepted(), result({"id": "m-1"})]
    servicer.scripts["gmail.list_messages"] = [
        accepted(),
        error(tool_pb2.TOOL_ERROR_CODE_RATE_LIMITED, retryable=True, retry_after=seconds(3)),
    ]
    servicer.scripts["gmail.hang"] = [accepted(), Hang()]
    servicer.scripts["gmail.refused"] = [Abort(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED")]
    async with serve(tools_servicer(servicer)) as target:
        yield target, servicer


async def test_blocking_calls_return_results_and_raise_typed_errors(
    server: tuple[str, ScriptedTools],
) -> None:
    target, servicer = server
    threads: list[str] = []

    def use() -> Any:
        with SyncToolClient(target, "k-sync") as tools:
            specs = tools.list_tools()
            got = tools.execute_tool(
                "gmail.send_message",
                {"to": "a@example.com"},
                request_id="r-1",
                token="agent-token",
                on_event=lambda msg: threads.append(threading.current_thread().name),
            )
            with pytest.raises(ToolRateLimited) as limited:
                tools.execute_tool("gmail.list_messages")
            with pytest.raises(UnauthenticatedError):
                tools.execute_tool("gmail.refused")
            return specs, got, limited.value

    specs, got, limited = await asyncio.to_thread(use)
    assert [s.name for s in specs] == ["gmail.send_message"]
    assert got.data == {"id": "m-1"} and got.action_id == "act-1"
    assert limited.retry_after == 3 and limited.retryable
    assert servicer.requests[1].request_id == "r-1"
    assert servicer.authorization[:2] == ["Bearer k-sync", "Bearer agent-token"]
    assert threads == ["agentauth-sync-tools"] * 2  # callbacks run on the client's thread


async def test_calls_from_many_threads_share_one_client(server: tuple[str, ScriptedTools]) -> None:
    target, servicer = server
    tools = await asyncio.to_thread(SyncToolClient, target)
    try:
        outcomes = await asyncio.gather(
            *(asyncio.to_thread(tools.execute_tool, "gmail.send_message") for _ in range(8))
        )
    finally:
        await asyncio.to_thread(tools.close)
    assert [o.data for o in outcomes] == [{"id": "m-1"}] * 8


async def test_close_ends_a_pending_call_and_the_thread(server: tuple[str, ScriptedTools]) -> None:
    target, servicer = server
    tools = await asyncio.to_thread(SyncToolClient, target)
    pending = asyncio.ensure_future(asyncio.to_thread(tools.execute_tool, "gmail.hang"))
    while not servicer.requests:
        await asyncio.sleep(0.01)
    await asyncio.to_thread(tools.close)
    with pytest.raises(BaseException) as info:  # noqa: PT011 - the cancellation's class varies
        await asyncio.wait_for(pending, 5)
    assert "Cancelled" in type(info.value).__name__
    assert not any(t.name == "agentauth-sync-tools" for t in threading.enumerate())
    await asyncio.to_thread(tools.close)  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await asyncio.to_thread(tools.execute_tool, "gmail.send_message")


async def test_a_callback_calling_back_in_is_refused_not_deadlocked(
    server: tuple[str, ScriptedTools],
) -> None:
    target, _ = server
    refused: list[str] = []

    def use() -> None:
        with SyncToolClient(target) as tools:

            def reenter(msg: tool_pb2.ExecuteToolResponse) -> None:
                try:
                    tools.list_tools()
                except RuntimeError as exc:
                    refused.append(str(exc))

            tools.execute_tool("gmail.send_message", on_event=reenter)

    await asyncio.wait_for(asyncio.to_thread(use), 10)
    assert refused and "own callbacks" in refused[0]
