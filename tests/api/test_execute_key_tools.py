"""Every tool of the key-based connectors runs end to end through ExecuteTool, against
their API-key emulators; and what the stream says when the key or the provider fails.

``stripe`` is BYOK: alice's own restricted key, set on her connected account with
SetApiKey. ``weather`` (OpenWeatherMap) and ``web_search`` (Brave) use the org's
developer secret, set with SetDeveloperSecret; no account is involved.
"""

from __future__ import annotations

from typing import Any

import pytest
from agentauth.v1 import connection_pb2 as cpb

from control_plane.connectors.loader import load_catalog
from control_plane.sandbox.api_key_provider import fingerprint
from control_plane.sandbox.stripe_api import StripeProfile
from tests.api.tool_helpers import ToolWorld, key_world
from tests.sandbox.tool_calls import minimal_arguments

CATALOG = load_catalog()
DEVELOPER_SECRET = sorted(c.id for c in CATALOG if c.auth.type == "developer_secret")
LIST = "stripe.list_customers"
REFUND = "stripe.create_refund"


def test_the_key_connectors_are_covered() -> None:
    assert DEVELOPER_SECRET == ["weather", "web_search"]
    assert CATALOG.connectors["stripe"].auth.type == "api_key"


def _leaks(harness: Any, captured_logs: Any, outcomes: list[Any], key: str) -> bool:
    seen = "\n".join(
        [str(o.messages) for o in outcomes]
        + [repr(e) for e in harness.audit.events]
        + [captured_logs.getvalue()]
    )
    return key in seen


async def _run_every_tool(w: ToolWorld, key: str) -> list[Any]:
    token = await w.delegated()
    outcomes = []
    for tool in CATALOG.connectors[w.connector_id].tools:
        got = await w.run(token, tool.name, minimal_arguments(tool.input_schema))
        assert got.kinds == ["accepted", "result"], (tool.name, got.messages)
        assert 200 <= got.result.upstream_status < 300
        seen = w.provider.requests[-1]
        assert seen.tool == tool.name and seen.authorized, tool.name
        assert seen.credential == fingerprint(key)
        outcomes.append(got)
    assert len(w.provider.requests) == len(CATALOG.connectors[w.connector_id].tools)
    return outcomes


async def test_every_stripe_tool_runs_with_the_users_own_key(
    harness: Any, captured_logs: Any
) -> None:
    async with key_world(harness, "stripe") as w:
        key = w.provider.new_key()
        account = await w.set_api_key(key)
        outcomes = await _run_every_tool(w, key)
        assert {o.accepted.connected_account for o in outcomes} == {account}
        assert not _leaks(harness, captured_logs, outcomes, key)
        assert isinstance(w.provider.profile, StripeProfile)
        [refund] = w.provider.profile.refunds
        assert outcomes[-1].data["id"] == refund["id"]


@pytest.mark.parametrize("cid", DEVELOPER_SECRET)
async def test_every_developer_secret_tool_runs_with_the_orgs_secret(
    harness: Any, captured_logs: Any, cid: str
) -> None:
    async with key_world(harness, cid) as w:
        secret = w.provider.new_key()
        await w.set_developer_secret(secret)
        outcomes = await _run_every_tool(w, secret)
        assert {o.accepted.connected_account for o in outcomes} == {""}
        assert not _leaks(harness, captured_logs, outcomes, secret)


# --- a key that stops working ------------------------------------------------------


async def test_a_byok_key_the_user_deleted_revokes_the_account(
    harness: Any, captured_logs: Any
) -> None:
    """Stripe keys do not expire on their own: a 401 ``Invalid API Key provided`` means
    the key was deleted or rolled. The connector classifies it ``revoked``, so the call
    ends in AUTH_REVOKED (reason API_KEY_INVALID, with a reconnect link), the account
    becomes REVOKED, and later calls stop at agentauth without reaching Stripe until
    the user sets a new key."""
    async with key_world(harness, "stripe") as w:
        key = w.provider.new_key()
        name = await w.set_api_key(key)
        token = await w.delegated()
        assert (await w.run(token, LIST)).kinds == ["accepted", "result"]
        w.provider.valid_keys.discard(key)
        got = await w.run(token, LIST)
        assert got.kinds == ["accepted", "error"] and got.code == "AUTH_REVOKED"
        assert got.error.reason == "API_KEY_INVALID" and not got.error.retryable
        assert w.provider.requests[-1].status == 401
        account = await w.account(name)
        assert account.state == cpb.CONNECTED_ACCOUNT_STATE_REVOKED
        assert account.state_reason == "API_KEY_INVALID"
        again = await w.run(token, LIST)
        assert again.code == "AUTH_REVOKED" and len(w.provider.requests) == 2
        fresh = w.provider.new_key()
        await w.admin.connections.SetApiKey(cpb.SetApiKeyRequest(name=name, api_key=fresh))
        assert (await w.run(token, LIST)).kinds == ["accepted", "result"]
        assert w.provider.requests[-1].credential == fingerprint(fresh)
        assert not _leaks(harness, captured_logs, [got, again], key)


async def test_an_expired_byok_key_revokes_the_account_with_its_own_reason(
    harness: Any,
) -> None:
    """A key rolled with an expiry answers 401 ``api_key_expired``: AUTH_REVOKED too."""
    async with key_world(harness, "stripe") as w:
        key = w.provider.new_key()
        name = await w.set_api_key(key)
        w.provider.expired_keys.add(key)
        got = await w.run(await w.delegated(), LIST)
        assert got.code == "AUTH_REVOKED" and got.error.reason == "API_KEY_EXPIRED"
        assert (await w.account(name)).state == cpb.CONNECTED_ACCOUNT_STATE_REVOKED


async def test_a_restricted_key_without_the_permission_is_scope_insufficient(
    harness: Any,
) -> None:
    """A 403 "does not have the required permissions" is the key owner's setting, not a
    dead key: SCOPE_INSUFFICIENT, and the account stays usable for the other tools."""
    async with key_world(harness, "stripe") as w:
        key = w.provider.new_key()
        name = await w.set_api_key(key)
        w.provider.missing_permissions[key] = {REFUND}
        token = await w.delegated()
        got = await w.run(token, REFUND, {"payment_intent": "pi_123"})
        assert got.code == "SCOPE_INSUFFICIENT" and got.error.reason == "SCOPE_INSUFFICIENT"
        assert (await w.account(name)).state == cpb.CONNECTED_ACCOUNT_STATE_ACTIVE
        assert (await w.run(token, LIST)).kinds == ["accepted", "result"]


@pytest.mark.parametrize(
    ("cid", "reason"),
    [("weather", "API_KEY_INVALID"), ("web_search", "SUBSCRIPTION_TOKEN_INVALID")],
)
async def test_a_wrong_developer_secret_is_the_operators_problem(
    harness: Any, captured_logs: Any, cid: str, reason: str
) -> None:
    """The developer secret is the org's, so the user can do nothing about a rejected
    one: the connectors classify it ``operator_error``, which ExecuteTool reports as
    UPSTREAM_ERROR with the connector's reason - not AUTH_REVOKED, which would send the
    user to reconnect an account that does not exist."""
    async with key_world(harness, cid) as w:
        wrong = w.provider.profile.new_key()  # never made valid
        await w.set_developer_secret(wrong)
        got = await w.run(await w.delegated(), CATALOG.connectors[cid].tools[0].name, _args(cid))
        assert got.kinds == ["accepted", "error"] and got.code == "UPSTREAM_ERROR"
        assert got.error.reason == reason and not got.error.retryable
        assert "reconnectUrl" not in got.error.metadata
        assert not w.provider.requests[-1].authorized
        assert not _leaks(harness, captured_logs, [got], wrong)


def _args(cid: str) -> dict[str, Any]:
    return minimal_arguments(CATALOG.connectors[cid].tools[0].input_schema)


# --- provider rate limits ------------------------------------------------------------


async def test_a_short_brave_rate_limit_is_waited_out(harness: Any) -> None:
    """Brave's 429 carries ``X-RateLimit-Reset: <seconds>, <month>``; the connector's
    rule reads the first window. One second is worth waiting for: retry_scheduled,
    then the result."""
    async with key_world(harness, "web_search") as w:
        await w.set_developer_secret(w.provider.new_key())
        w.provider.faults.next_api_status, w.provider.faults.retry_after = 429, 1
        got = await w.run(await w.delegated(), "web_search.search", {"q": "agentauth"})
        assert got.kinds == ["accepted", "retry_scheduled", "result"], got.messages
        retry = got.messages[1].retry_scheduled
        assert retry.reason == "RATE_LIMITED" and retry.attempt == 2
        assert retry.delay.seconds == 1
        assert [r.status for r in w.provider.requests] == [429, 200]


async def test_a_long_brave_rate_limit_is_reported_with_its_wait(harness: Any) -> None:
    async with key_world(harness, "web_search") as w:
        await w.set_developer_secret(w.provider.new_key())
        w.provider.faults.next_api_status, w.provider.faults.retry_after = 429, 60
        got = await w.run(await w.delegated(), "web_search.search", {"q": "agentauth"})
        assert got.kinds == ["accepted", "error"] and got.code == "RATE_LIMITED"
        assert got.error.reason == "RATE_LIMITED" and got.error.retryable
        assert got.error.retry_after.seconds == 60
        assert len(w.provider.requests) == 1


@pytest.mark.parametrize("cid", ["stripe", "weather"])
async def test_a_rate_limit_without_a_stated_wait_is_reported_at_once(
    harness: Any, cid: str
) -> None:
    """Stripe and OpenWeatherMap send no Retry-After with a 429, so agentauth has no
    wait it could honour within the call: RATE_LIMITED straight away, no retry_after,
    and the provider saw one request (the agent decides when to try again)."""
    async with key_world(harness, cid) as w:
        key = w.provider.new_key()
        if cid == "stripe":
            await w.set_api_key(key)
        else:
            await w.set_developer_secret(key)
        w.provider.faults.next_api_status = 429
        tool = CATALOG.connectors[cid].tools[0].name
        got = await w.run(await w.delegated(), tool, _args(cid))
        assert got.kinds == ["accepted", "error"] and got.code == "RATE_LIMITED"
        assert got.error.reason == "RATE_LIMITED" and not got.error.HasField("retry_after")
        assert len(w.provider.requests) == 1


async def test_a_stripe_lock_timeout_is_retried_only_when_safe(harness: Any) -> None:
    """Stripe's ``lock_timeout`` is a 429 the connector classifies ``transient``: a read
    is retried with backoff and succeeds; a refund (POST) is not repeated blindly - it
    ends UPSTREAM_UNAVAILABLE after one request, and no refund was made."""
    async with key_world(harness, "stripe") as w:
        await w.set_api_key(w.provider.new_key())
        token = await w.delegated()
        w.provider.faults.next_api_error = "lock_timeout"
        got = await w.run(token, LIST)
        assert got.kinds == ["accepted", "retry_scheduled", "result"], got.messages
        assert got.messages[1].retry_scheduled.reason == "UPSTREAM_UNAVAILABLE"
        w.provider.faults.next_api_error = "lock_timeout"
        refund = await w.run(token, REFUND, {"payment_intent": "pi_123"})
        assert refund.kinds == ["accepted", "error"] and refund.code == "UPSTREAM_UNAVAILABLE"
        assert refund.error.reason == "LOCK_TIMEOUT"
        assert [r.tool for r in w.provider.requests][-1:] == [REFUND]
        assert sum(r.tool == REFUND for r in w.provider.requests) == 1
        assert isinstance(w.provider.profile, StripeProfile) and not w.provider.profile.refunds
