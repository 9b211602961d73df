"""ExecuteTool: org policy evaluated by the runtime, secrets that never surface,
Pattern-1 developer secrets with their per-user limit, and calls that outlive
their caller."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from agentauth.v1 import admin_pb2 as apb
from agentauth.v1 import connection_pb2 as cpb
from agentauth.v1 import tool_pb2 as tpb
from agentauth.v1 import tool_policy_pb2 as tppb
from aiohttp import web
from google.protobuf import duration_pb2, json_format, struct_pb2

from control_plane.connectors.sandbox_routing import rewrite_for_sandbox
from tests.api.tool_helpers import tool_world

CREATE = "github.create_issue"
ISSUE = {"owner": "acme", "repo": "api", "title": "Bug"}


async def _rule(w: Any, **fields: Any) -> str:
    created = await w.admin.admin.CreateToolPolicyRule(
        apb.CreateToolPolicyRuleRequest(
            parent=w.org, tool_policy_rule=tppb.ToolPolicyRule(**fields)
        )
    )
    return str(created.tool_policy_rule.name)


async def test_the_model_cannot_file_an_issue_in_the_wrong_repository(harness: Any) -> None:
    """The seed case: a poisoned issue tells the model to file into evil/exfil; the
    org allows acme/api only. The arguments never widen privilege."""
    async with tool_world(harness, "github") as w:
        await w.connect()
        rule = await _rule(
            w,
            tool=CREATE,
            constraints=[tppb.ArgumentConstraint(value="{/owner}/{/repo}", allow=["acme/api"])],
        )
        token = await w.delegated("tools:github.*")
        got = await w.run(token, CREATE, {**ISSUE, "owner": "evil", "repo": "exfil"})
        assert got.kinds == ["error"] and got.code == "POLICY_DENIED"
        assert got.error.reason == "POLICY_RULE"
        assert got.error.metadata["rule"] == rule.rsplit("/", 1)[1]
        assert "evil" not in str(got.messages) and "exfil" not in str(got.messages)
        assert not w.provider.requests
        ok = await w.run(token, CREATE, ISSUE)
        assert ok.kinds == ["accepted", "result"]
        [seen] = w.provider.requests
        assert seen.url.endswith("/repos/acme/api/issues") and seen.body == {"title": "Bug"}


async def test_a_rule_for_other_agents_refuses_this_one(harness: Any) -> None:
    async with tool_world(harness, "github") as w:
        await w.connect()
        await _rule(w, tool="github.*", agents=[w.agents["S"]])
        got = await w.run(await w.delegated("tools:github.*"), CREATE, ISSUE)
        assert got.code == "POLICY_DENIED" and got.error.reason == "POLICY_RULE"
        assert await w.list_tools(await w.delegated("tools:github.*")) == []


async def test_a_rule_for_a_group_applies_to_its_members_only(harness: Any) -> None:
    async with tool_world(harness, "github") as w:
        await w.connect()
        await _rule(
            w,
            tool=CREATE,
            groups=["contractors"],
            constraints=[tppb.ArgumentConstraint(value="{/owner}/{/repo}", allow=["acme/docs"])],
        )
        token = await w.delegated("tools:github.*")
        assert (await w.run(token, CREATE, ISSUE)).kinds == ["accepted", "result"]
        await w.admin.admin.UpdateUserGroups(
            apb.UpdateUserGroupsRequest(name=w.user, groups=["contractors"])
        )
        got = await w.run(token, CREATE, ISSUE)
        assert got.code == "POLICY_DENIED"


async def test_a_call_that_needs_confirmation_waits_and_lapses_without_one(
    harness: Any,
) -> None:
    """Nobody decides: the call waits no longer than its own deadline, never runs,
    and may be made again (tests/api/test_tool_confirmation.py has the decisions)."""
    async with tool_world(harness) as w:
        await w.connect()
        await _rule(w, tool="gmail.send_message", confirm=True)
        got = await w.run(
            await w.delegated(),
            "gmail.send_message",
            {"to": ["bob@example.com"], "subject": "Hi", "body": "x"},
            timeout=duration_pb2.Duration(seconds=1),
        )
        assert got.kinds == ["accepted", "confirmation_required", "error"]
        assert got.code == "CONFIRMATION_DENIED"
        assert got.error.reason == "CONFIRMATION_EXPIRED" and got.error.retryable
        assert not w.provider.requests


async def test_provider_tokens_never_reach_the_stream_the_logs_or_the_audit(
    harness: Any, captured_logs: Any
) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        token = await w.delegated()
        w.provider.responses["gmail.list_messages"] = {"messages": []}
        outcomes = [await w.run(token, "gmail.list_messages")]
        w.provider.faults.next_api_status = 400
        outcomes.append(await w.run(token, "gmail.get_message", {"id": "abc"}))
        w.provider.revoke_all()
        outcomes.append(await w.run(token, "gmail.list_messages"))
        assert [o.kinds[-1] for o in outcomes] == ["result", "error", "error"]
        secrets = [t.value for t in w.provider.issued] + ["canary-oauth-client-secret-0b9e7d"]
        assert len(secrets) >= 3
        seen = "\n".join(
            [str(o.messages) for o in outcomes]
            + [repr(e) for e in harness.audit.events]
            + [captured_logs.getvalue()]
        )
        for secret in secrets:
            assert secret not in seen


@pytest.fixture
async def weather_api(harness: Any) -> Any:
    """A loopback stand-in for OpenWeatherMap, and the catalog pointed at it."""
    seen: list[dict[str, str]] = []

    async def current(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        return web.json_response({"name": "Paris", "main": {"temp": 280.3}})

    app = web.Application()
    app.router.add_get("/api.openweathermap.org/data/2.5/weather", current)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    catalog = harness.runtime.catalog.connectors
    real = catalog["weather"]
    catalog["weather"] = rewrite_for_sandbox(real, f"http://127.0.0.1:{port}")
    try:
        yield seen
    finally:
        catalog["weather"] = real
        await runner.cleanup()


async def test_a_developer_secret_tool_runs_within_its_per_user_limit(
    harness: Any, weather_api: Any
) -> None:
    async with tool_world(harness) as w:
        await w.enable(connector="weather")
        secret = "owm-canary-key-4f1c2b"
        await w.admin.connections.SetDeveloperSecret(
            cpb.SetDeveloperSecretRequest(
                developer_secret=cpb.DeveloperSecret(
                    name=f"{w.org}/developerSecrets/weather",
                    secret=secret,
                    per_user_rate_limit=cpb.RateLimit(
                        requests=2, period=duration_pb2.Duration(seconds=3600)
                    ),
                )
            )
        )
        token = await w.delegated()
        [listed] = [t for t in await w.list_tools(token, "weather") if t.name == "weather.current"]
        assert listed.connection.state == 4  # NOT_REQUIRED
        args = {"lat": 48.85, "lon": 2.35}
        first = await w.run(token, "weather.current", args)
        assert first.kinds == ["accepted", "result"], first.messages
        assert first.kinds == ["accepted", "result"] and first.data["name"] == "Paris"
        assert first.accepted.connected_account == ""
        assert weather_api[0]["appid"] == secret
        assert (await w.run(token, "weather.current", args)).kinds[-1] == "result"
        third = await w.run(token, "weather.current", args)
        assert third.code == "RATE_LIMITED" and third.error.reason == "DEVELOPER_SECRET_LIMIT"
        assert third.error.retry_after.seconds > 0
        assert len(weather_api) == 2
        # The limit is per user: another user of the org still has theirs.
        bob = await w.new_user("bob")
        assert (await w.run(await w.delegated(user=bob), "weather.current", args)).kinds[
            -1
        ] == "result"
        assert secret not in str(first.messages) + str(third.messages)


async def test_an_unreachable_provider_is_retried_then_reported(harness: Any) -> None:
    async with tool_world(harness) as w:
        await w.connect()
        token = await w.delegated()
        await w.provider.stop()
        got = await w.run(token, "gmail.list_messages")
        assert got.kinds.count("retry_scheduled") == 2
        assert got.code == "UPSTREAM_UNAVAILABLE" and got.error.retryable


async def test_a_caller_that_goes_away_does_not_cut_the_call_short(harness: Any) -> None:
    """The provider call and the record of its outcome are one unit: cancelling the
    stream leaves neither half done."""
    async with tool_world(harness) as w:
        await w.connect()
        token = await w.delegated()
        w.provider.faults.delay = 1.0
        call = w.stub(token).ExecuteTool(
            tpb.ExecuteToolRequest(
                tool="gmail.send_message",
                arguments=_struct({"to": ["bob@example.com"], "subject": "S", "body": "B"}),
                request_id="cancel-me",
            )
        )
        first = await call.read()
        action = first.accepted.action_id
        call.cancel()
        for _ in range(50):
            outcomes = [
                e for e in harness.audit.events if e.action_id == action and e.phase == "outcome"
            ]
            if outcomes:
                break
            await asyncio.sleep(0.1)
        assert [e.outcome for e in outcomes] == ["OK"]
        assert [r.tool for r in w.provider.requests] == ["gmail.send_message"]
        w.provider.faults.delay = 0
        replay = await w.run(
            token,
            "gmail.send_message",
            {"to": ["bob@example.com"], "subject": "S", "body": "B"},
            request_id="cancel-me",
        )
        assert replay.accepted.replayed and replay.kinds[-1] == "result"
        assert len(w.provider.requests) == 1


def _struct(doc: dict[str, Any]) -> Any:
    return json_format.Parse(json.dumps(doc), struct_pb2.Struct())


async def test_a_slow_drip_answer_is_cut_at_the_calls_deadline(harness: Any) -> None:
    """The provider sends its headers at once, then one byte every 0.2 s: the whole
    call is bounded by its own timeout, not by the socket's idle time."""

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for _ in range(100):
            await response.write(b" ")
            await asyncio.sleep(0.2)
        await response.write(b"{}")
        return response

    app = web.Application()
    app.router.add_get("/api.openweathermap.org/data/2.5/weather", drip)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    catalog = harness.runtime.catalog.connectors
    real = catalog["weather"]
    catalog["weather"] = rewrite_for_sandbox(real, f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        async with tool_world(harness) as w:
            await w.enable(connector="weather")
            await w.admin.connections.SetDeveloperSecret(
                cpb.SetDeveloperSecretRequest(
                    developer_secret=cpb.DeveloperSecret(
                        name=f"{w.org}/developerSecrets/weather", secret="owm-key-drip"
                    )
                )
            )
            started = asyncio.get_running_loop().time()
            got = await w.run(
                await w.delegated(),
                "weather.current",
                {"lat": 1, "lon": 2},
                timeout=duration_pb2.Duration(seconds=1),
            )
            elapsed = asyncio.get_running_loop().time() - started
            assert got.code == "TIMEOUT" and got.error.reason == "DEADLINE_EXCEEDED"
            assert elapsed < 2.5
    finally:
        catalog["weather"] = real
        await runner.cleanup()
