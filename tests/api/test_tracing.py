"""Traces: one span per pipeline stage and per outbound call, recorded with the SDK's
in-memory exporter, and no attribute that carries a token, an org or a principal."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agentauth.v1 import admin_pb2 as apb
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import tool_pb2 as pb
from agentauth.v1 import tool_policy_pb2 as tppb
from google.protobuf import struct_pb2
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from control_plane.api.authz import PUBLIC
from control_plane.api.pipeline import Call, Pipeline
from control_plane.audit.hook import RecordingAuditSink
from control_plane.metrics import Metrics
from control_plane.tracing import Tracing
from tests.api.conftest import Harness, start_harness
from tests.api.connect_helpers import CANARY_CLIENT_SECRET
from tests.api.test_tool_confirmation import CONFIRM, MAIL, SEND, Held, decide
from tests.api.tool_helpers import ToolWorld, rpc_error, tool_world

LIST = "gmail.list_messages"
REVOKE = "/agentauth.v1.TokenService/RevokeToken"
EXECUTE = "/agentauth.v1.ToolService/ExecuteTool"
STREAM = "/agentauth.v1.Test/Stream"
#: No attribute holds a URL (the provider's, or a connect link).
URL_PARTS = ["://", "127.0.0.1"]


@pytest.fixture
async def traced(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Harness, Any]]:
    exporter = InMemorySpanExporter()
    async with start_harness(
        database_url, tmp_path, tracing=Tracing(SimpleSpanProcessor(exporter))
    ) as h:
        yield h, exporter


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    """``parent``'s direct children, in the order they started."""
    return sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id),
        key=lambda s: s.start_time or 0,
    )


def is_below(spans: list[ReadableSpan], span: ReadableSpan, name: str) -> bool:
    """Whether ``span`` descends from a span called ``name``."""
    by_id = {s.context.span_id: s for s in spans}
    parent = by_id.get(span.parent.span_id) if span.parent is not None else None
    while parent is not None:
        if parent.name == name:
            return True
        parent = by_id.get(parent.parent.span_id) if parent.parent is not None else None
    return False


def canaries(w: ToolWorld, token: str) -> list[str]:
    """What a tool call's spans must never carry: its token, the provider's tokens and
    client secret, the org, the user and the agents."""
    issued = [t.value for t in w.provider.issued]
    return [token, *issued, CANARY_CLIENT_SECRET, w.org.split("/")[1], w.user, *w.agents.values()]


def assert_no_attribute_carries(spans: list[ReadableSpan], secrets: list[str]) -> None:
    for span in spans:
        values = [str(v) for v in (span.attributes or {}).values()]
        values += [str(v) for e in span.events for v in (e.attributes or {}).values()]
        for secret in secrets:
            assert secret, "an empty canary matches everything"
            assert all(secret not in v for v in values), (span.name, secret)


async def test_an_audited_rpc_is_a_server_span_with_a_child_per_stage(traced: Any) -> None:
    harness, exporter = traced
    org, admin, key = await harness.new_org()
    exporter.clear()
    await admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token="not-a-token"))
    spans = list(exporter.get_finished_spans())
    [root] = named(spans, REVOKE)
    assert root.kind == SpanKind.SERVER and root.parent is None
    assert root.attributes is not None
    assert root.attributes["agentauth.code"] == "OK"
    assert root.attributes["agentauth.transport"] == "grpc"
    children = sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id),
        key=lambda s: s.start_time or 0,
    )
    stages = [(s.name, (s.attributes or {}).get("agentauth.audit_phase")) for s in children]
    assert stages == [
        ("authenticate", None),
        ("authorize", None),
        ("rate_limit", None),
        ("audit", "attempt"),
        ("handler", None),
        ("audit", "outcome"),
    ]
    assert all(s.context.trace_id == root.context.trace_id for s in children)
    assert_no_attribute_carries(spans, [org.split("/")[1], key])


async def test_a_refused_rpc_records_its_code_and_reason_not_its_message(traced: Any) -> None:
    harness, exporter = traced
    exporter.clear()
    anonymous = harness.client(None)
    with pytest.raises(Exception):  # noqa: B017 - the SDK's typed error; the span is the point
        await anonymous.tokens.RevokeToken(tpb.RevokeTokenRequest(token="x"))
    [root] = named(list(exporter.get_finished_spans()), REVOKE)
    assert root.status.status_code == StatusCode.ERROR
    assert root.attributes is not None
    assert root.attributes["agentauth.code"] == "UNAUTHENTICATED"
    assert root.attributes["agentauth.reason"] == "CREDENTIALS_MISSING"
    assert root.attributes["error.type"] == "Unauthenticated"
    assert not root.events  # no exception event: its message is not ours to export


async def test_execute_tool_is_one_trace_for_the_life_of_its_stream(traced: Any) -> None:
    harness, exporter = traced
    async with tool_world(harness) as w:
        await w.connect()
        w.provider.responses[LIST] = {"messages": [{"id": "m1"}]}
        token = await w.delegated()
        exporter.clear()
        got = await w.run(token, LIST)
        assert got.kinds == ["accepted", "result"]
        spans = list(exporter.get_finished_spans())
    [root] = named(spans, EXECUTE)
    assert root.kind == SpanKind.SERVER and root.parent is None
    assert (root.attributes or {})["agentauth.code"] == "OK"
    assert root.status.status_code != StatusCode.ERROR
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    # The server span ends with the stream: after every stage of the call.
    assert root.end_time == max(s.end_time or 0 for s in spans)
    assert [s.name for s in children(spans, root)] == [
        "authenticate",
        "authorize",
        "rate_limit",
        "handler",
        "prepare",
        "intent",
        "provider",
        "outcome",
    ]
    [prepare] = named(spans, "prepare")
    assert (prepare.attributes or {})["agentauth.tool"] == LIST
    assert (prepare.attributes or {})["agentauth.connector"] == "gmail"
    [provider] = named(spans, "provider")
    assert (provider.attributes or {})["agentauth.tool"] == LIST
    assert (provider.attributes or {})["agentauth.tool_code"] == "OK"
    [call] = children(spans, provider)
    assert call.name == "upstream" and call.kind == SpanKind.CLIENT
    assert (call.attributes or {})["http.response.status_code"] == 200
    [outcome] = named(spans, "outcome")
    assert (outcome.attributes or {})["agentauth.tool_code"] == "OK"
    assert_no_attribute_carries(spans, [*canaries(w, token), *URL_PARTS])


async def test_execute_tool_traces_its_provider_and_token_endpoint_calls(traced: Any) -> None:
    harness, exporter = traced
    now = [time.time()]
    async with tool_world(harness, clock=lambda: now[0]) as w:
        exporter.clear()
        await w.connect()  # the OAuth callback exchanges the code at the token endpoint
        [exchange] = named(list(exporter.get_finished_spans()), "token_endpoint")
        assert exchange.kind == SpanKind.CLIENT
        assert (exchange.attributes or {})["agentauth.grant"] == "authorization_code"
        assert (exchange.attributes or {})["agentauth.connector"] == "gmail"
        connect_spans = list(exporter.get_finished_spans())
        w.provider.responses[LIST] = {"messages": [{"id": "m1"}]}
        now[0] += 2 * 3600  # the access token died: a 401, a refresh, a retry
        token = await w.delegated()
        exporter.clear()
        got = await w.run(token, LIST)
        assert got.kinds == ["accepted", "credential_refreshed", "result"]
        spans = list(exporter.get_finished_spans())
        tokens = [t.value for t in w.provider.issued]
        secrets = canaries(w, token)
    [root] = named(spans, EXECUTE)
    assert (root.attributes or {})["agentauth.code"] == "OK"
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    [provider] = named(spans, "provider")
    assert provider.parent is not None and provider.parent.span_id == root.context.span_id
    # Under the provider call, in order: the rejected request, the refresh, the retry.
    below = children(spans, provider)
    assert [s.name for s in below] == ["upstream", "token_endpoint", "upstream"]
    first, refresh, retry = below
    assert all(s.kind == SpanKind.CLIENT for s in below)
    assert (first.attributes or {})["http.response.status_code"] == 401
    assert (first.attributes or {})["error.type"] == "expired_access"
    assert (retry.attributes or {})["http.response.status_code"] == 200
    for call in (first, retry):
        assert (call.attributes or {})["agentauth.connector"] == "gmail"
        assert (call.attributes or {})["http.request.method"] == "GET"
    assert (refresh.attributes or {})["agentauth.grant"] == "refresh_token"
    assert len(tokens) >= 3  # the first pair and the refreshed access token, at least
    assert_no_attribute_carries(spans + connect_spans, [*tokens, *secrets, *URL_PARTS])


async def test_a_tool_error_ends_the_server_span_with_its_code(traced: Any) -> None:
    harness, exporter = traced
    async with tool_world(harness) as w:
        token = await w.delegated()
        exporter.clear()
        got = await w.run(token, LIST)  # alice has no account yet
        assert got.code == "NOT_CONNECTED"
        connect_url = got.error.metadata["connectUrl"]
        refused = list(exporter.get_finished_spans())
        await w.connect()
        w.provider.faults.next_api_status = 404
        exporter.clear()
        got = await w.run(token, "gmail.get_message", {"id": "abc123"})
        assert got.code == "UPSTREAM_ERROR"
        failed = list(exporter.get_finished_spans())
        secrets = [*canaries(w, token), connect_url]
    [root] = named(refused, EXECUTE)
    assert {s.context.trace_id for s in refused} == {root.context.trace_id}
    assert (root.attributes or {})["agentauth.code"] == "NOT_CONNECTED"
    assert root.status.status_code == StatusCode.ERROR
    assert [s.name for s in children(refused, root)][-2:] == ["prepare", "outcome"]
    [prepare] = named(refused, "prepare")
    assert (prepare.attributes or {})["agentauth.tool_code"] == "NOT_CONNECTED"
    assert not named(refused, "provider") and not named(refused, "upstream")

    [root] = named(failed, EXECUTE)
    assert {s.context.trace_id for s in failed} == {root.context.trace_id}
    assert (root.attributes or {})["agentauth.code"] == "UPSTREAM_ERROR"
    assert root.status.status_code == StatusCode.ERROR
    [provider] = named(failed, "provider")
    assert (provider.attributes or {})["agentauth.tool_code"] == "UPSTREAM_ERROR"
    [call] = children(failed, provider)
    assert (call.attributes or {})["http.response.status_code"] == 404
    assert_no_attribute_carries(refused + failed, [*secrets, *URL_PARTS])


async def test_retries_are_separate_client_spans_with_the_wait_between(traced: Any) -> None:
    harness, exporter = traced
    async with tool_world(harness) as w:
        await w.connect()
        token = await w.delegated()
        w.provider.faults.next_api_status = 503
        w.provider.faults.retry_after = 0
        exporter.clear()
        got = await w.run(token, LIST)
        assert got.kinds == ["accepted", "retry_scheduled", "result"]
        spans = list(exporter.get_finished_spans())
    [root] = named(spans, EXECUTE)
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    [provider] = named(spans, "provider")
    below = children(spans, provider)
    assert [s.name for s in below] == ["upstream", "retry_wait", "upstream"]
    assert [(s.attributes or {}).get("http.response.status_code") for s in below] == [
        503,
        None,
        200,
    ]
    wait = below[1].attributes or {}
    assert wait["agentauth.attempt"] == 2
    assert wait["agentauth.retry_reason"] == "UPSTREAM_UNAVAILABLE"


async def test_a_confirmation_wait_is_a_stage_of_the_calls_trace(traced: Any) -> None:
    harness, exporter = traced
    async with tool_world(harness) as w:
        await w.connect()
        await w.admin.admin.CreateToolPolicyRule(
            apb.CreateToolPolicyRuleRequest(
                parent=w.org, tool_policy_rule=tppb.ToolPolicyRule(tool=SEND, confirm=True)
            )
        )
        token = await w.delegated()
        exporter.clear()
        held = Held(w, token, MAIL)
        asked = await held.confirmation()
        await decide(w.backend, asked.confirmation, w.user, reason="because-7f3a")
        assert (await held.rest()).kinds[-1] == "result"
        spans = list(exporter.get_finished_spans())
        secrets = [*canaries(w, token), "because-7f3a", MAIL["body"]]
    [root] = named(spans, EXECUTE)
    assert (root.attributes or {})["agentauth.code"] == "OK"
    assert [s.name for s in children(spans, root)][-4:] == [
        "intent",
        "confirmation",
        "provider",
        "outcome",
    ]
    assert all(
        s.context.trace_id == root.context.trace_id
        for s in spans
        if s.name != CONFIRM and not is_below(spans, s, CONFIRM)
    )
    [confirmation] = named(spans, "confirmation")
    [approval] = named(spans, CONFIRM)  # the human's decision is a call of its own
    assert approval.context.trace_id != root.context.trace_id
    assert confirmation.start_time < approval.start_time < (confirmation.end_time or 0)
    assert_no_attribute_carries(spans, [*secrets, *URL_PARTS])


async def test_a_stream_whose_audit_fails_ends_with_the_grpc_code(traced: Any) -> None:
    harness, exporter = traced
    async with tool_world(harness) as w:
        await w.connect()
        token = await w.delegated()
        harness.audit.set_next_error(RuntimeError("audit store down"))
        exporter.clear()
        exc = await rpc_error(w.run(token, LIST))
        assert exc.reason == "AUDIT_UNAVAILABLE"
        spans = list(exporter.get_finished_spans())
    [root] = named(spans, EXECUTE)
    assert (root.attributes or {})["agentauth.code"] == "UNAVAILABLE"
    assert (root.attributes or {})["agentauth.reason"] == "AUDIT_UNAVAILABLE"
    assert (root.attributes or {})["error.type"] == "Unavailable"
    assert root.status.status_code == StatusCode.ERROR
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    assert not named(spans, "provider")


async def test_a_caller_that_goes_away_ends_the_server_span_cancelled(traced: Any) -> None:
    """The stream's span ends when the caller leaves; the shielded provider call goes
    on and its spans still join the same trace."""
    harness, exporter = traced
    async with tool_world(harness) as w:
        await w.connect()
        token = await w.delegated()
        w.provider.faults.delay = 1.0
        exporter.clear()
        args = struct_pb2.Struct()
        call = w.stub(token).ExecuteTool(pb.ExecuteToolRequest(tool=LIST, arguments=args))
        first = await call.read()
        assert first.WhichOneof("event") == "accepted"
        call.cancel()
        for _ in range(50):
            spans = list(exporter.get_finished_spans())
            if named(spans, EXECUTE) and named(spans, "outcome"):
                break
            await asyncio.sleep(0.1)
        w.provider.faults.delay = 0
    [root] = named(spans, EXECUTE)
    assert (root.attributes or {})["agentauth.code"] == "CANCELLED"
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    [provider] = named(spans, "provider")
    [outcome] = named(spans, "outcome")
    for span in (provider, outcome):
        assert span.parent is not None and span.parent.span_id == root.context.span_id
    assert (outcome.attributes or {})["agentauth.tool_code"] == "OK"
    assert (root.end_time or 0) < (outcome.end_time or 0)  # the call outlived its stream


class _Unlimited:
    async def check(self, org: Any, principal_key: str, peer: str | None) -> None:
        return None


async def _no_credentials(kind: str, credential: str) -> Any:
    raise AssertionError("a public stream authenticates nobody")


async def _streamed(tracing: Tracing, closed: list[bool]) -> AsyncGenerator[int, None]:
    async def numbers() -> AsyncIterator[int]:
        try:
            for i in range(3):
                yield i
        finally:
            closed.append(True)

    async def open_stream() -> AsyncIterator[int]:
        return numbers()

    key = STREAM
    pipeline = Pipeline(
        {key: PUBLIC}, _no_credentials, _Unlimited(), RecordingAuditSink(), Metrics(), tracing
    )
    # As the gRPC wrapper does: closing it closes the pipeline's stream at once.
    opened = pipeline.run_stream(Call(key, "grpc", None, None), open_stream)
    async with contextlib.aclosing(opened) as messages:
        async for item in messages:
            yield item


async def test_a_stream_closed_between_messages_by_another_task_ends_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A caller gone while its message was being sent: gRPC drops the stream unfinished
    and the event loop closes it later, from a task of its own."""
    exporter = InMemorySpanExporter()
    closed: list[bool] = []
    stream = _streamed(Tracing(SimpleSpanProcessor(exporter)), closed)
    assert await anext(stream) == 0

    async def close() -> None:
        await stream.aclose()

    await asyncio.create_task(close())
    [root] = named(list(exporter.get_finished_spans()), STREAM)
    assert (root.attributes or {})["agentauth.code"] == "CANCELLED"
    assert root.status.status_code == StatusCode.ERROR
    assert closed == [True]  # the handler's stream was closed with it
    assert not [r for r in caplog.records if "detach" in r.getMessage()]


async def test_an_untraced_stream_is_the_plain_loop() -> None:
    closed: list[bool] = []
    assert [i async for i in _streamed(Tracing(), closed)] == [0, 1, 2]
    assert closed == [True]


def test_tracing_is_off_without_an_endpoint() -> None:
    off = Tracing.from_endpoint("")
    assert not off.enabled
    with off.span("anything") as span:
        assert span is None
    on = Tracing.from_endpoint("http://127.0.0.1:4318/v1/traces")
    try:
        assert on.enabled
    finally:
        on.shutdown()
