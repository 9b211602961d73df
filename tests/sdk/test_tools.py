"""ControlPlaneClient.list_tools / execute_tool against a scripted ToolService.

The server side is scripted (tests/sdk/scripted_server.py): real proto messages
over a real loopback channel, in the order tool.proto promises. The lead's
end-to-end tests cover the real servicer.
"""

from __future__ import annotations

import asyncio
import json
import pickle
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from agentauth import (
    ControlPlaneClient,
    ToolAuthRevoked,
    ToolCallResult,
    ToolConfirmationDenied,
    ToolError,
    ToolInvalidArguments,
    ToolNotConnected,
    ToolPolicyDenied,
    ToolRateLimited,
    ToolRetry,
    ToolScopeInsufficient,
    ToolStreamIncomplete,
    ToolTimeout,
    ToolUpstreamError,
    ToolUpstreamUnavailable,
    UnauthenticatedError,
)
from agentauth.v1 import connection_pb2, tool_pb2
from google.protobuf import duration_pb2, struct_pb2

from tests.sdk.scripted_server import Abort, Hang, ScriptedTools, serve, tools_servicer

ACCOUNT = "orgs/0123456789abcdef0123456789abcdef/connectedAccounts/ca-1"
SECRET_LINK = "https://agentauth.example/connect/one-time-secret-link"
AGENT_TOKEN = "eyJhbGciOiJFUzI1NiJ9.agent-token.sig"


def accepted(action: str = "act-1", replayed: bool = False) -> tool_pb2.ExecuteToolResponse:
    return tool_pb2.ExecuteToolResponse(
        accepted=tool_pb2.ToolCallAccepted(
            action_id=action, connected_account=ACCOUNT, replayed=replayed
        )
    )


def result(data: Any = None, **fields: Any) -> tool_pb2.ExecuteToolResponse:
    value = None
    if data is not None:
        value = struct_pb2.Value()
        if isinstance(data, dict):
            value.struct_value.update(data)
        else:
            value.string_value = data
    r = tool_pb2.ToolResult(upstream_status=200, **fields)
    if value is not None:
        r.data.CopyFrom(value)
    return tool_pb2.ExecuteToolResponse(result=r)


def error(code: int, **fields: Any) -> tool_pb2.ExecuteToolResponse:
    return tool_pb2.ExecuteToolResponse(error=tool_pb2.ToolError(code=code, **fields))


def seconds(s: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(s * 1e9))
    return d


@pytest.fixture
async def tools() -> AsyncIterator[tuple[ControlPlaneClient, ScriptedTools]]:
    servicer = ScriptedTools()
    async with serve(tools_servicer(servicer)) as target:
        async with ControlPlaneClient(target, "k-admin") as client:
            yield client, servicer


async def test_a_result_with_progress_is_returned_whole(
    tools: tuple[ControlPlaneClient, ScriptedTools],
) -> None:
    client, servicer = tools
    servicer.scripts["gmail.list_messages"] = [
        accepted(),
        tool_pb2.ExecuteToolResponse(credential_refreshed=tool_pb2.CredentialRefreshed()),
        tool_pb2.ExecuteToolResponse(
            retry_scheduled=tool_pb2.RetryScheduled(
                delay=seconds(1.5), reason="RATE_LIMITED", attempt=2
            )
        ),
        result(
            {"messages": [{"id": "m1", "size": 1024}], "ratio": 0.5, "more": True, "x": None},
            output_trust=connection_pb2.OUTPUT_TRUST_UNTRUSTED,
            next_cursor="page-2",
            content_type="application/json",
        ),
    ]
    seen: list[str | None] = []
    got = await client.execute_tool(
        "gmail.list_messages",
        {"query": "is:unread", "max": 5, "labels": ["INBOX"]},
        connected_account=ACCOUNT,
        request_id="req-1",
        timeout=20,
        token=AGENT_TOKEN,
        on_event=lambda msg: seen.append(msg.WhichOneof("event")),
    )
    assert got == ToolCallResult(
        data={"messages": [{"id": "m1", "size": 1024}], "ratio": 0.5, "more": True, "x": None},
        upstream_status=200,
        output_trust="UNTRUSTED",
        next_cursor="page-2",
        content_type="application/json",
        action_id="act-1",
        connected_account=ACCOUNT,
        replayed=False,
        credential_refreshed=True,
        retries=(ToolRetry(delay=1.5, reason="RATE_LIMITED", attempt=2),),
    )
    assert isinstance(got.data["messages"][0]["size"], int)
    assert seen == ["accepted", "credential_refreshed", "retry_scheduled", "result"]
    (request,) = servicer.requests
    assert request.tool == "gmail.list_messages"
    assert dict(request.arguments) == {"query": "is:unread", "max": 5.0, "labels": ["INBOX"]}
    assert (request.connected_account, request.request_id) == (ACCOUNT, "req-1")
    assert request.timeout.ToTimedelta().total_seconds() == 20
    # The agent's token for this call, not the client's key.
    assert servicer.authorization == [f"Bearer {AGENT_TOKEN}"]
    # The transport deadline leaves room for the server's own TIMEOUT outcome.
    (remaining,) = servicer.deadlines
    # (grpc-timeout on the wire is rounded up, hence the slack)
    assert remaining is not None and 24 < remaining <= 26


async def test_defaults_send_no_idempotency_key_and_no_timeout(
    tools: tuple[ControlPlaneClient, ScriptedTools],
) -> None:
    client, servicer = tools
    servicer.scripts["stripe.get_balance"] = [accepted(replayed=True), result("plain text")]
    got = await client.execute_tool("stripe.get_balance")
    assert got.data == "plain text" and got.replayed and not got.credential_refreshed
    (request,) = servicer.requests
    assert request.request_id == "" and not request.HasField("timeout")
    assert request.connected_account == "" and not request.arguments.fields
    assert servicer.authorization == ["Bearer k-admin"]
    (remaining,) = servicer.deadlines
    assert remaining is not None and 64 < remaining <= 66


async def test_a_result_without_data_is_none(
    tools: tuple[ControlPlaneClient, ScriptedTools],
) -> None:
    client, servicer = tools
    servicer.scripts["slack.archive"] = [
        accepted(),
        tool_pb2.ExecuteToolResponse(result=tool_pb2.ToolResult(upstream_status=204)),
    ]
    got = await client.execute_tool("slack.archive")
    assert (got.data, got.upstream_status, got.retries) == (None, 204, ())


async def test_a_string_body_and_an_async_callback(
    tools: tuple[ControlPlaneClient, ScriptedTools],
) -> None:
    client, servicer = tools
    body = struct_pb2.Value(string_value="<html>hi</html>")
    servicer.scripts["web.fetch"] = [
        accepted(),
        tool_pb2.ExecuteToolResponse(
            result=tool_pb2.ToolResult(data=body, upstream_status=203, content_type="text/html")
        ),
    ]
    seen = []

    async def on_event(msg: tool_pb2.ExecuteToolResponse) -> None:
        await asyncio.sleep(0)
        seen.append(msg.WhichOneof("event"))

    got = await client.execute_tool("web.fetch", {"url": "https://x.example"}, on_event=on_event)
    assert (got.data, got.upstream_status, got.content_type) == ("<html>hi</html>", 203, "text/html")
    assert seen == ["accepted", "result"]


async def test_chunked_output_is_joined_and_parsed(
    tools: tuple[ControlPlaneClient, ScriptedTools],
) -> None:
    client, servicer = tools
    text = json.dumps({"items": list(range(50)), "name": "caf\u00e9"}).encode()
    cut = text.index(b"caf") + 3  # inside a multi-byte character
    servicer.scripts["drive.export"] = [
        accepted(),
        tool_pb2.ExecuteToolResponse(output_chunk=tool_pb2.OutputChunk(data=text[:cut])),
        tool_pb2.ExecuteToolResponse(output_chunk=tool_pb2.OutputChunk(data=text[cut:cut + 1])),
        tool_pb2.ExecuteToolResponse(output_chunk=tool_pb2.OutputChunk(data=text[cut + 1:])),
        tool_pb2.ExecuteToolResponse(
            result=tool_pb2.ToolResult(upstream_status=200, chunked=True)
        ),
    ]
    got = await client.execute_tool("drive.export")
    assert got.data == {"items": list(range(50)), "name": "caf\u00e9"}


async def test_truncated_chunks_are_incomplete_without_echoing_the_data(
    tools: tuple[ControlPlaneClient, ScriptedTools],
) -> None:
    client, servicer = tools
    servicer.scripts["drive.export"] = [
        accepted(),
        tool_pb2.ExecuteToolResponse(output_chunk=tool_pb2.OutputChunk(data=b'{"secret": "s3')),
        tool_pb2.ExecuteToolResponse(result=tool_pb2.ToolResult(upstream_status=200, chunked=True)),
    ]
    with pytest.raises(ToolStreamIncomplete) as info:
        await client.execute_tool("drive.export")
    assert "s3" not in str(info.value) + repr(info.value)
    assert info.value.__cause__ is None


#: One vector per ToolErrorCode: (code, metadata, class, attribute checks).
ERROR_VECTORS: list[tuple[int, dict[str, str], type[ToolError], dict[str, Any]]] = [
    (
        tool_pb2.TOOL_ERROR_CODE_NOT_CONNECTED,
        {"connectUrl": SECRET_LINK},
        ToolNotConnected,
        {"connect_url": SECRET_LINK},
    ),
    (
        tool_pb2.TOOL_ERROR_CODE_AUTH_REVOKED,
        {"reconnectUrl": SECRET_LINK},
        ToolAuthRevoked,
        {"reconnect_url": SECRET_LINK},
    ),
    (
        tool_pb2.TOOL_ERROR_CODE_SCOPE_INSUFFICIENT,
        {"required": "gmail.send gmail.readonly", "granted": "gmail.readonly",
         "reconnectUrl": SECRET_LINK},
        ToolScopeInsufficient,
        {"required": ("gmail.send", "gmail.readonly"), "granted": ("gmail.readonly",),
         "reconnect_url": SECRET_LINK},
    ),
    (tool_pb2.TOOL_ERROR_CODE_RATE_LIMITED, {}, ToolRateLimited, {"retry_after": 2.5}),
    (tool_pb2.TOOL_ERROR_CODE_UPSTREAM_UNAVAILABLE, {}, ToolUpstreamUnavailable, {}),
    (
        tool_pb2.TOOL_ERROR_CODE_UPSTREAM_ERROR,
        {"status": "404", "providerCode": "notFound"},
        ToolUpstreamError,
        {"status": 404, "provider_code": "notFound"},
    ),
    (
        tool_pb2.TOOL_ERROR_CODE_INVALID_ARGUMENTS,
        {"pointer": "/to/0"},
        ToolInvalidArguments,
        {"pointer": "/to/0"},
    ),
    (
        tool_pb2.TOOL_ERROR_CODE_POLICY_DENIED,
        {"rule": "no-external-mail"},
        ToolPolicyDenied,
        {"rule": "no-external-mail"},
    ),
    (tool_pb2.TOOL_ERROR_CODE_CONFIRMATION_DENIED, {}, ToolConfirmationDenied, {}),
    (tool_pb2.TOOL_ERROR_CODE_TIMEOUT, {}, ToolTimeout, {}),
    (99, {}, ToolError, {"code": "CODE_99"}),  # a code newer than this SDK
]


@pytest.mark.parametrize(
    ("code", "metadata", "cls", "attrs"),
    ERROR_VECTORS,
    ids=[cls.__name__ + str(code) for code, _, cls, _ in ERROR_VECTORS],
)
async def test_each_error_code_raises_its_class(
    tools: tuple[ControlPlaneClient, ScriptedTools],
    code: int,
    metadata: dict[str, str],
    cls: type[ToolError],
    attrs: dict[str, Any],
) -> None:
    client, servicer = tools
    retryable = code in (tool_pb2.TOOL_ERROR_CODE_RATE_LIMITED, 5)
    servicer.scripts["gmail.send_message"] = [
        accepted(),
        error(
            code,
            reason="SOME_REASON",
            message="the developer message",
            retryable=retryable,
            retry_after=seconds(2.5) if "retry_after" in attrs else None,
            metadata=metadata,
        ),
    ]
    with pytest.raises(ToolError) as info:
        await client.execute_tool("gmail.send_message", {"to": ["a@example.com"]})
    err = info.value
    assert type(err) is cls
    assert (err.reason, err.message, err.retryable) == ("SOME_REASON", "the developer message",
                                                         retryable)
    assert err.metadata == metadata and err.action_id == "act-1"
    if code != 99:
        assert err.code == tool_pb2.ToolErrorCode.Name(code).removeprefix("TOOL_ERROR_CODE_")
    for name, value in attrs.items():
        assert getattr(err, name) == value, name
    if "retry_after" not in attrs:
        assert err.retry_after is None
    # Logged or shown to a model, the error carries no links or scope lists.
    assert str(err) == "SOME_REASON: the developer message"
    assert SECRET_LINK not in repr(err) and "gmail.send" not in repr(err)
    # It survives pickling with its subclass and fields (task queues, multiprocessing).
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is cls and again.metadata == metadata and again.code == err.code
    assert again.action_id == "act-1" and again.retry_after == err.retry_after


async def test_a_stream_without_a_terminal_message_is_incomplete(
    tools: tuple[ControlPlaneClient, ScriptedTools],
) -> None:
    client, servicer = tools
    servicer.scripts["gmail.send_message"] = [accepted()]
    with pytest.raises(ToolStreamIncomplete) as info:
        await client.execute_tool("gmail.send_message", request_id="r-9")
    assert info.value.code == "STREAM_INCOMPLETE" and "accepted" in info.value.message
    assert info.value.action_id == "act-1"
    servicer.scripts["gmail.send_message"] = []
    with pytest.raises(ToolStreamIncomplete) as info:
        await client.execute_tool("gmail.send_message")
    assert "accepted" not in info.value.message and info.value.action_id == ""


async def test_a_request_fault_is_a_typed_status_error(
    tools: tuple[ControlPlaneClient, ScriptedTools],
) -> None:
    client, servicer = tools
    servicer.scripts["gmail.send_message"] = [
        Abort(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED", "token expired")
    ]
    with pytest.raises(UnauthenticatedError) as info:
        await client.execute_tool("gmail.send_message", token=AGENT_TOKEN)
    assert info.value.reason == "TOKEN_EXPIRED"
    assert AGENT_TOKEN not in str(info.value) + repr(info.value)


async def test_a_callback_that_raises_ends_the_call(
    tools: tuple[ControlPlaneClient, ScriptedTools],
) -> None:
    client, servicer = tools
    servicer.scripts["gmail.send_message"] = [accepted(), Hang(), result({"ok": True})]

    def stop(msg: tool_pb2.ExecuteToolResponse) -> None:
        raise KeyError("caller's own")

    with pytest.raises(KeyError):
        await client.execute_tool("gmail.send_message", on_event=stop)
    async with asyncio.timeout(5):
        await servicer.cancelled.wait()  # the server saw the call go away


async def test_the_caller_can_cancel_a_hanging_call(
    tools: tuple[ControlPlaneClient, ScriptedTools],
) -> None:
    client, servicer = tools
    servicer.scripts["gmail.send_message"] = [accepted(), Hang()]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await client.execute_tool("gmail.send_message")
    async with asyncio.timeout(5):
        await servicer.cancelled.wait()


@pytest.mark.parametrize(
    ("arguments", "timeout", "exc"),
    [
        ({"when": object()}, None, ValueError),
        (["not", "a", "mapping"], None, TypeError),
        ({}, 0, ValueError),
        ({}, -1, ValueError),
    ],
)
async def test_bad_input_is_refused_before_the_call(
    tools: tuple[ControlPlaneClient, ScriptedTools], arguments: Any, timeout: Any, exc: type
) -> None:
    client, servicer = tools
    with pytest.raises(exc):
        await client.execute_tool("gmail.send_message", arguments, timeout=timeout)
    assert servicer.requests == []


def tool(name: str, **fields: Any) -> tool_pb2.Tool:
    return tool_pb2.Tool(name=name, description=f"does {name}", **fields)


async def test_list_tools_describes_each_tool(
    tools: tuple[ControlPlaneClient, ScriptedTools],
) -> None:
    client, servicer = tools
    schema = {"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]}
    servicer.tools = [
        tool(
            "gmail.send_message",
            input_schema_json=json.dumps(schema),
            provider_scopes=["https://www.googleapis.com/auth/gmail.send"],
            destructive=True,
            output_trust=connection_pb2.OUTPUT_TRUST_TRUSTED,
            connection=tool_pb2.ToolConnection(
                state=tool_pb2.TOOL_CONNECTION_STATE_NOT_CONNECTED, connect_url=SECRET_LINK
            ),
        ),
        tool(
            "slack.list_channels",
            cursor_argument="cursor",
            connection=tool_pb2.ToolConnection(
                state=tool_pb2.TOOL_CONNECTION_STATE_CONNECTED, connected_account=ACCOUNT
            ),
        ),
    ]
    everything = await client.list_tools(token=AGENT_TOKEN)
    assert [t.name for t in everything] == ["gmail.send_message", "slack.list_channels"]
    gmail, slack = everything
    assert gmail.input_schema == schema and gmail.destructive
    assert gmail.provider_scopes == ("https://www.googleapis.com/auth/gmail.send",)
    assert (gmail.output_trust, gmail.connection_state) == ("TRUSTED", "NOT_CONNECTED")
    assert gmail.connect_url == SECRET_LINK and SECRET_LINK not in repr(gmail)
    assert (slack.cursor_argument, slack.connected_account) == ("cursor", ACCOUNT)
    assert slack.input_schema == {} and slack.connection_state == "CONNECTED"
    only = await client.list_tools("slack")
    assert [t.name for t in only] == ["slack.list_channels"]
    assert [r.connector for r in servicer.requests] == ["", "slack"]
    assert servicer.authorization == [f"Bearer {AGENT_TOKEN}", "Bearer k-admin"]


async def test_list_tools_refusal_is_typed(
    tools: tuple[ControlPlaneClient, ScriptedTools],
) -> None:
    client, servicer = tools
    servicer.list_abort = Abort(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
    with pytest.raises(UnauthenticatedError):
        await client.list_tools()
