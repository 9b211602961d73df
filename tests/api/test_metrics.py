"""``/metrics``: the series each part of the server reports, scraped after real calls,
and that no label value is an org, a principal or a credential."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from agentauth import ResourceExhaustedError
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import token_pb2 as tpb
from google.protobuf import field_mask_pb2
from prometheus_client.parser import text_string_to_metric_families

from tests.api.chain_helpers import open_chain
from tests.api.test_revocation_feed import read, until_synced, watch
from tests.api.tool_helpers import tool_world

LIST = "gmail.list_messages"
INTROSPECT = "/agentauth.v1.TokenService/IntrospectToken"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(harness: Any) -> Samples:
    async with aiohttp.ClientSession() as http:
        async with http.get(harness.http + "/metrics") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            text = await r.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def assert_no_label_carries(samples: Samples, secrets: list[str]) -> None:
    for _, labels in samples:
        for _, v in labels:
            for secret in secrets:
                assert secret not in v, (v, secret)


async def test_rpc_latency_histogram_and_rate_limit_refusals(harness: Any) -> None:
    org, admin, key = await harness.new_org()
    await harness.platform.admin.UpdateOrganization(
        pb.UpdateOrganizationRequest(
            organization=pb.Organization(
                name=org,
                rate_limits=pb.RateLimits(principal_requests_per_second=0.002, principal_burst=2),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["rate_limits"]),
        )
    )
    before = await scrape(harness)
    request = tpb.IntrospectTokenRequest(token="x")
    await admin.tokens.IntrospectToken(request)
    await admin.tokens.IntrospectToken(request)
    with pytest.raises(ResourceExhaustedError):
        await admin.tokens.IntrospectToken(request)
    after = await scrape(harness)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("agentauth_rpc_total", method=INTROSPECT, code="OK") == 2
    assert delta("agentauth_rpc_total", method=INTROSPECT, code="RESOURCE_EXHAUSTED") == 1
    assert delta("agentauth_rpc_duration_seconds_count", method=INTROSPECT, code="OK") == 2
    # Cumulative buckets: every call is at most 30 s, and +Inf counts them all.
    for le in ("30.0", "+Inf"):
        bucket = delta("agentauth_rpc_duration_seconds_bucket", method=INTROSPECT, code="OK", le=le)
        assert bucket == 2
    assert delta("agentauth_rate_limited_total", method=INTROSPECT) == 1
    assert_no_label_carries(after, [org.split("/")[1], key])


async def test_tool_outcomes_provider_errors_and_refresh_outcomes(harness: Any) -> None:
    now = [time.time()]
    async with tool_world(harness, clock=lambda: now[0]) as w:
        await w.connect()
        w.provider.responses[LIST] = {"messages": []}
        before = await scrape(harness)
        now[0] += 2 * 3600  # the provider's access token died: a 401, then a refresh
        assert (await w.run(await w.delegated(), LIST)).kinds[-1] == "result"
        w.provider.revoke_all()  # now the refresh itself is refused: revoked
        assert (await w.run(await w.delegated(), LIST)).code == "AUTH_REVOKED"
        after = await scrape(harness)
        tokens = [t.value for t in w.provider.issued]

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    tool = {"connector": "gmail", "tool": LIST}
    assert delta("agentauth_tool_executions_total", code="OK", **tool) == 1
    assert delta("agentauth_tool_executions_total", code="AUTH_REVOKED", **tool) == 1
    assert delta("agentauth_refresh_total", connector="gmail", outcome="refreshed") == 1
    assert delta("agentauth_refresh_total", connector="gmail", outcome="revoked") == 1
    errors = {
        dict(labels)["error_class"]: n - value(before, name, **dict(labels))
        for (name, labels), n in after.items()
        if name == "agentauth_provider_errors_total" and dict(labels)["connector"] == "gmail"
    }
    assert errors.get("expired_access", 0) >= 1, errors
    assert tokens and all(tokens)
    assert_no_label_carries(after, [w.org.split("/")[1], w.user, *w.agents.values(), *tokens])


async def test_revocation_feed_lag_is_observed_for_live_events(harness: Any) -> None:
    async with open_chain(harness) as chain:
        token = (await chain.delegate()).access_token
        call = watch(chain.admin, chain.org)
        try:
            await until_synced(call)
            before = await scrape(harness)
            await chain.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=token))
            await read(call)
            after = await scrape(harness)
        finally:
            call.cancel()
    name = "agentauth_revocation_feed_lag_seconds_count"
    assert value(after, name) - value(before, name) == 1
    # The revocation was committed and delivered within this test's seconds.
    lag = value(after, "agentauth_revocation_feed_lag_seconds_sum") - value(
        before, "agentauth_revocation_feed_lag_seconds_sum"
    )
    assert 0 <= lag < 30
