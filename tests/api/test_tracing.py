"""Traces: one span per pipeline stage and per outbound call, recorded with the SDK's
in-memory exporter, and no attribute that carries a token, an org or a principal."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agentauth.v1 import token_pb2 as tpb
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from control_plane.tracing import Tracing
from tests.api.conftest import Harness, start_harness
from tests.api.connect_helpers import CANARY_CLIENT_SECRET
from tests.api.tool_helpers import tool_world

LIST = "gmail.list_messages"
REVOKE = "/agentauth.v1.TokenService/RevokeToken"


@pytest.fixture
async def traced(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Harness, Any]]:
    exporter = InMemorySpanExporter()
    async with start_harness(
        database_url, tmp_path, tracing=Tracing(SimpleSpanProcessor(exporter))
    ) as h:
        yield h, exporter


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


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
        exporter.clear()
        assert (await w.run(await w.delegated(), LIST)).kinds[-1] == "result"
        spans = list(exporter.get_finished_spans())
        tokens = [t.value for t in w.provider.issued]
    [tool] = named(spans, "execute_tool")
    assert tool.attributes is not None
    assert tool.attributes["agentauth.tool"] == LIST
    assert tool.attributes["agentauth.connector"] == "gmail"
    assert tool.attributes["agentauth.tool_code"] == "OK"
    calls = named(spans, "upstream")
    assert [(s.attributes or {}).get("http.response.status_code") for s in calls] == [401, 200]
    for call in calls:
        assert call.kind == SpanKind.CLIENT
        assert call.parent is not None and call.parent.span_id == tool.context.span_id
        assert (call.attributes or {})["agentauth.connector"] == "gmail"
        assert (call.attributes or {})["http.request.method"] == "GET"
    assert (calls[0].attributes or {})["error.type"] == "expired_access"
    [refresh] = named(spans, "token_endpoint")
    assert refresh.kind == SpanKind.CLIENT and refresh.context.trace_id == tool.context.trace_id
    assert (refresh.attributes or {})["agentauth.grant"] == "refresh_token"
    assert len(tokens) >= 3  # the first pair and the refreshed access token, at least
    canaries = [*tokens, CANARY_CLIENT_SECRET, w.org.split("/")[1], w.user]
    assert_no_attribute_carries(spans + connect_spans, canaries)


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
