"""The API-key emulator: the key read only where each connector puts it, each provider's
refusals and documented errors (classified by the connector's own ``errors:`` rules),
realistic success bodies, and its faults."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from control_plane.connectors.credentials import place_credential
from control_plane.connectors.loader import load_catalog
from control_plane.connectors.requests import build_request
from control_plane.sandbox.api_key_profiles import PROFILES, BraveProfile, StripeProfile
from control_plane.sandbox.api_key_provider import SandboxApiKeyProvider, fingerprint
from control_plane.sandbox.stripe_api import stripe_mask
from control_plane.vault.classify import Failure, classify_response
from tests.sandbox.tool_calls import minimal_arguments, send

CATALOG = load_catalog()
KEYED = sorted(c.id for c in CATALOG if c.auth.type in ("api_key", "developer_secret"))
#: A call each connector answers, for the tests that only need one.
FIRST = {"stripe": "stripe.list_customers", "weather": "weather.current"}
FIRST["web_search"] = "web_search.search"


@pytest.fixture(params=KEYED)
async def provider(request: pytest.FixtureRequest) -> AsyncIterator[SandboxApiKeyProvider]:
    async with SandboxApiKeyProvider(CATALOG.connectors[request.param]) as p:
        yield p


async def call(
    http: aiohttp.ClientSession,
    p: SandboxApiKeyProvider,
    key: str | None,
    tool: str = "",
    arguments: dict[str, Any] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """One tool call with ``key`` placed as the vault places it (None: no key)."""
    connector = p.connector_for_sandbox()
    t = connector.tool(tool or FIRST[connector.id])
    assert t is not None
    built = build_request(t, arguments or minimal_arguments(t.input_schema), {})
    headers, query = dict(built.headers), dict(built.query)
    if key is not None:
        headers, query = place_credential(connector.auth, key, headers, query)
    async with http.request(
        built.method, built.url, params=query or None, headers=headers, data=built.form
    ) as resp:
        return resp.status, await resp.json(content_type=None), dict(resp.headers)


def test_every_key_connector_has_an_emulator() -> None:
    assert KEYED == ["stripe", "weather", "web_search"]


async def test_every_tool_answers_with_minimal_arguments(
    provider: SandboxApiKeyProvider, http: aiohttp.ClientSession
) -> None:
    key = provider.new_key()
    connector = provider.connector_for_sandbox()
    for tool in connector.tools:
        request = build_request(tool, minimal_arguments(tool.input_schema), {})
        status, body = await send(http, connector, request, key)
        assert status == 200, (tool.name, body)
        seen = provider.requests[-1]
        assert seen.tool == tool.name and seen.authorized and seen.credential == fingerprint(key)
    assert len(provider.requests) == len(connector.tools)


# --- where the key goes ----------------------------------------------------------------


async def test_the_key_is_read_where_the_connector_puts_it_and_nowhere_else(
    provider: SandboxApiKeyProvider, http: aiohttp.ClientSession
) -> None:
    key = provider.new_key()
    assert (await call(http, provider, key))[0] == 200
    spec = provider.placement
    tool = provider.connector_for_sandbox().tool(FIRST[provider.connector.id])
    assert tool is not None
    args = minimal_arguments(tool.input_schema)
    built = build_request(tool, args, {})
    elsewhere: list[tuple[dict[str, str], dict[str, str]]] = [
        ({}, {spec.name: key}) if spec.location == "header" else ({spec.name: key}, {}),
        ({"Authorization": f"Bearer {key}"}, {}),
    ]
    if spec.prefix:  # the right header without its prefix
        elsewhere.append(({spec.name: key}, {}))
    refusal = provider.profile.missing_key(0)
    for headers, query in elsewhere:
        if headers.get("Authorization") == spec.prefix + key:
            continue  # that is the right place
        async with http.request(
            built.method,
            built.url,
            params={**built.query, **query},
            headers={**built.headers, **headers},
        ) as resp:
            body = await resp.json(content_type=None)
            assert resp.status == refusal[0], (headers, query, body)
            assert _shape(body) == _shape(refusal[1])
    assert not any(r.authorized for r in provider.requests[1:])


def _shape(body: Any) -> Any:
    """The keys of a body, recursively (ids and times differ between replies)."""
    if isinstance(body, dict):
        return {k: _shape(v) for k, v in body.items() if k not in ("id", "time")}
    return type(body).__name__


async def test_the_key_is_redacted_from_every_record(
    provider: SandboxApiKeyProvider, http: aiohttp.ClientSession
) -> None:
    key = provider.new_key()
    await call(http, provider, key)
    await call(http, provider, key + "x")
    for seen in provider.requests:
        assert key not in repr(seen)
    assert provider.requests[0].credential != provider.requests[1].credential


@pytest.mark.parametrize(
    ("cid", "status", "fragment"),
    [
        ("stripe", 401, "Invalid API Key provided: rk_test_****"),
        ("weather", 401, "Invalid API key. Please see https://openweathermap.org/faq#error401"),
        ("web_search", 422, '"code":"SUBSCRIPTION_TOKEN_INVALID"'),
    ],
)
async def test_a_wrong_key_gets_the_providers_refusal_and_never_the_key_back(
    http: aiohttp.ClientSession, cid: str, status: int, fragment: str
) -> None:
    async with SandboxApiKeyProvider(CATALOG.connectors[cid]) as p:
        p.new_key()
        wrong = p.profile.new_key()
        got, body, _ = await call(http, p, wrong)
        text = json.dumps(body, separators=(",", ":"))
        assert got == status and fragment in text, text
        assert wrong not in text
        assert not p.requests[-1].authorized


def test_stripe_masks_a_key_as_stripe_does() -> None:
    assert stripe_mask("rk_test_abcdefghijklmnopWXYZ") == "rk_test_" + "*" * 16 + "WXYZ"
    assert stripe_mask("short") == "*****"


async def test_brave_may_refuse_a_wrong_token_with_401(http: aiohttp.ClientSession) -> None:
    profile = BraveProfile(invalid_status=401)
    async with SandboxApiKeyProvider(CATALOG.connectors["web_search"], profile=profile) as p:
        status, body, _ = await call(http, p, "BSAwrong")
        assert status == 401 and body["error"]["code"] == "SUBSCRIPTION_TOKEN_INVALID"
        assert classify_response(p.connector, status, {}, _raw(body)) == Failure(
            "operator_error", "SUBSCRIPTION_TOKEN_INVALID"
        )


def _raw(body: Any) -> bytes:
    return json.dumps(body).encode()


# --- every documented error, as the connector's rules classify it -----------------------

CLASSIFIED = [
    ("stripe", "invalid_key", 401, "revoked", "API_KEY_INVALID", None),
    ("stripe", "expired_key", 401, "revoked", "API_KEY_EXPIRED", None),
    ("stripe", "permission", 403, "insufficient_scope", "KEY_PERMISSION_MISSING", None),
    ("stripe", "rate_limit", 429, "rate_limited", "RATE_LIMITED", None),
    ("stripe", "lock_timeout", 429, "transient", "LOCK_TIMEOUT", None),
    ("stripe", "api_error", 500, "transient", "SERVER_ERROR", None),
    ("stripe", "idempotency_key_in_use", 409, "transient", "PROVIDER_SAYS_RETRY", None),
    ("stripe", "resource_missing", 404, "caller_error", "HTTP_404", None),
    ("weather", "invalid_key", 401, "operator_error", "API_KEY_INVALID", None),
    ("weather", "rate_limit", 429, "rate_limited", "RATE_LIMITED", None),
    ("weather", "rate_limit_string_cod", 429, "rate_limited", "RATE_LIMITED", None),
    ("web_search", "invalid_token", 422, "operator_error", "SUBSCRIPTION_TOKEN_INVALID", None),
    ("web_search", "rate_limit", 429, "rate_limited", "RATE_LIMITED", 7.0),
]


@pytest.mark.parametrize(
    ("cid", "error", "status", "error_class", "reason", "retry_after"),
    CLASSIFIED,
    ids=[f"{c[0]}-{c[1]}" for c in CLASSIFIED],
)
async def test_each_documented_error_is_what_the_connectors_rules_classify(
    http: aiohttp.ClientSession,
    cid: str,
    error: str,
    status: int,
    error_class: str,
    reason: str,
    retry_after: float | None,
) -> None:
    async with SandboxApiKeyProvider(CATALOG.connectors[cid]) as p:
        key = p.new_key()
        p.faults.next_api_error, p.faults.retry_after = error, 7
        got, body, headers = await call(http, p, key)
        assert got == status
        assert key not in _raw(body).decode()
        failure = classify_response(p.connector, got, headers, _raw(body))
        assert failure == Failure(error_class, reason, retry_after)
        # one-shot: the next call succeeds
        assert (await call(http, p, key))[0] == 200


def test_the_named_errors_are_all_covered() -> None:
    for cid, make in PROFILES.items():
        covered = {e for c, e, *_ in CLASSIFIED if c == cid}
        assert covered == set(make().errors), cid


async def test_a_missing_key_is_each_providers_own_refusal(
    provider: SandboxApiKeyProvider, http: aiohttp.ClientSession
) -> None:
    status, body, headers = await call(http, provider, None)
    failure = classify_response(provider.connector, status, headers, _raw(body))
    expected = {
        # Stripe's "You did not provide an API key" is no rule's: the generic 401.
        "stripe": (401, Failure("expired_access", "ACCESS_TOKEN_REJECTED")),
        "weather": (401, Failure("operator_error", "API_KEY_INVALID")),
        # Brave: a request validation error naming the missing header.
        "web_search": (422, Failure("caller_error", "HTTP_422")),
    }
    assert (status, failure) == expected[provider.connector.id]


# --- key lifecycle ------------------------------------------------------------------


async def test_a_deleted_key_stops_working(http: aiohttp.ClientSession) -> None:
    async with SandboxApiKeyProvider(CATALOG.connectors["stripe"]) as p:
        key = p.new_key()
        assert (await call(http, p, key))[0] == 200
        p.valid_keys.discard(key)
        status, body, _ = await call(http, p, key)
        assert status == 401 and body["error"]["message"].startswith("Invalid API Key provided")


async def test_an_expired_stripe_key_says_so(http: aiohttp.ClientSession) -> None:
    async with SandboxApiKeyProvider(CATALOG.connectors["stripe"]) as p:
        key = p.new_key()
        p.expired_keys.add(key)
        status, body, _ = await call(http, p, key)
        assert status == 401 and body["error"]["code"] == "api_key_expired"
        assert not p.requests[-1].authorized


async def test_a_restricted_key_without_the_permission_gets_403(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxApiKeyProvider(CATALOG.connectors["stripe"]) as p:
        key = p.new_key()
        p.missing_permissions[key] = {"stripe.create_refund"}
        assert (await call(http, p, key))[0] == 200
        status, body, _ = await call(
            http, p, key, "stripe.create_refund", {"payment_intent": "pi_123"}
        )
        assert status == 403 and "'rak_refund_write' permission" in body["error"]["message"]
        assert key not in body["error"]["message"] and isinstance(p.profile, StripeProfile)
        assert not p.profile.refunds


# --- success bodies -----------------------------------------------------------------


async def test_stripe_lists_are_list_objects_newest_first_and_paged(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxApiKeyProvider(CATALOG.connectors["stripe"]) as p:
        key = p.new_key()
        _, page, headers = await call(http, p, key, "stripe.list_customers", {"limit": 2})
        assert set(page) == {"object", "data", "has_more", "url"}
        assert page["object"] == "list" and page["url"] == "/v1/customers" and page["has_more"]
        assert [c["object"] for c in page["data"]] == ["customer", "customer"]
        created = [c["created"] for c in page["data"]]
        assert created == sorted(created, reverse=True)
        assert headers["Request-Id"].startswith("req_")
        args = {"limit": 2, "starting_after": page["data"][-1]["id"]}
        _, rest, _ = await call(http, p, key, "stripe.list_customers", args)
        assert len(rest["data"]) == 1 and not rest["has_more"]
        _, one, _ = await call(
            http, p, key, "stripe.list_customers", {"email": "rahul@example.com"}
        )
        assert [c["name"] for c in one["data"]] == ["Rahul Nair"]
        customer = one["data"][0]["id"]
        _, intents, _ = await call(
            http, p, key, "stripe.list_payment_intents", {"customer": customer}
        )
        assert [i["customer"] for i in intents["data"]] == [customer]
        assert intents["url"] == "/v1/payment_intents"


async def test_stripe_customers_and_refunds(http: aiohttp.ClientSession) -> None:
    async with SandboxApiKeyProvider(CATALOG.connectors["stripe"]) as p:
        key = p.new_key()
        assert isinstance(p.profile, StripeProfile)
        status, customer, _ = await call(
            http, p, key, "stripe.get_customer", {"customer": "cus_A1"}
        )
        assert status == 200 and customer["id"] == "cus_A1" and customer["object"] == "customer"
        p.profile.missing_ids.add("cus_gone")
        status, body, _ = await call(http, p, key, "stripe.get_customer", {"customer": "cus_gone"})
        assert status == 404 and body["error"]["code"] == "resource_missing"
        intent = p.profile.payment_intents[0]
        status, refund, _ = await call(
            http, p, key, "stripe.create_refund", {"payment_intent": intent["id"], "amount": 500}
        )
        assert status == 200 and refund["object"] == "refund" and refund["status"] == "succeeded"
        assert refund["amount"] == 500 and refund["payment_intent"] == intent["id"]
        assert p.profile.refunds == [refund]
        assert p.requests[-1].body == {"payment_intent": intent["id"], "amount": "500"}


@pytest.mark.parametrize(
    ("units", "temp"), [("standard", 280.0), ("metric", 6.85), ("imperial", 44.33)]
)
async def test_openweathermap_current_in_each_unit(
    http: aiohttp.ClientSession, units: str, temp: float
) -> None:
    async with SandboxApiKeyProvider(CATALOG.connectors["weather"]) as p:
        key = p.new_key()
        status, doc, _ = await call(
            http, p, key, "weather.current", {"lat": 50, "lon": 2.35, "units": units}
        )
        assert status == 200 and doc["cod"] == 200
        assert doc["coord"] == {"lat": 50, "lon": 2.35} and doc["main"]["temp"] == temp
        assert {"weather", "main", "wind", "clouds", "sys", "dt", "name"} <= set(doc)
        assert p.requests[-1].query["appid"] == "[redacted]"


async def test_openweathermap_forecast_and_geocoding(http: aiohttp.ClientSession) -> None:
    async with SandboxApiKeyProvider(CATALOG.connectors["weather"], clock=lambda: 1767225600) as p:
        key = p.new_key()
        _, doc, _ = await call(http, p, key, "weather.forecast", {"lat": 1, "lon": 2, "cnt": 3})
        assert doc["cod"] == "200" and doc["cnt"] == 3 and len(doc["list"]) == 3
        assert [s["dt"] - doc["list"][0]["dt"] for s in doc["list"]] == [0, 10800, 21600]
        assert doc["list"][0]["dt_txt"] == "2026-01-01 03:00:00"
        assert doc["city"]["coord"] == {"lat": 1, "lon": 2}
        _, places, _ = await call(http, p, key, "weather.geocode", {"q": "paris,fr"})
        assert [(x["name"], x["country"]) for x in places] == [("Paris", "FR")]
        assert {"lat", "lon", "local_names"} <= set(places[0])


async def test_brave_results_and_rate_limit_headers(http: aiohttp.ClientSession) -> None:
    async with SandboxApiKeyProvider(CATALOG.connectors["web_search"]) as p:
        key = p.new_key()
        status, doc, headers = await call(http, p, key, "web_search.search", {"q": "agent auth"})
        assert status == 200 and doc["type"] == "search"
        assert doc["query"]["original"] == "agent auth"
        [first, *_] = doc["web"]["results"]
        assert {"title", "url", "description", "meta_url"} <= set(first)
        assert headers["X-RateLimit-Limit"] == "1, 2000"
        assert headers["X-RateLimit-Remaining"] == "0, 1999"
        assert headers["X-RateLimit-Policy"] == "1;w=1, 2000;w=2592000"
        _, news, _ = await call(http, p, key, "web_search.news", {"q": "x"})
        assert news["type"] == "news" and news["results"][0]["type"] == "news_result"
        _, images, _ = await call(http, p, key, "web_search.images", {"q": "x"})
        assert images["results"][0]["properties"]["url"].endswith(".jpg")
        assert p.requests[-1].headers["X-Subscription-Token"] == "[redacted]"


# --- faults ---------------------------------------------------------------------------


async def test_injected_statuses_are_one_shot_and_in_the_providers_envelope(
    provider: SandboxApiKeyProvider, http: aiohttp.ClientSession
) -> None:
    key = provider.new_key()
    provider.faults.next_api_status = 429
    status, body, _ = await call(http, provider, key)
    assert status == 429 and _shape(body) == _shape(provider.profile.rate_limited(1, 0)[1])
    provider.faults.next_api_status = 503
    assert (await call(http, provider, key))[0] == 503
    provider.faults.next_api_reply = (418, {"teapot": True}, {"X-Odd": "1"})
    status, body, headers = await call(http, provider, key)
    assert (status, body, headers["X-Odd"]) == (418, {"teapot": True}, "1")
    assert (await call(http, provider, key))[0] == 200


async def test_brave_advertises_the_injected_wait_in_its_reset_header(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxApiKeyProvider(CATALOG.connectors["web_search"]) as p:
        key = p.new_key()
        p.faults.next_api_status, p.faults.retry_after = 429, 30
        status, body, headers = await call(http, p, key)
        assert status == 429 and body["error"]["code"] == "RATE_LIMITED"
        assert headers["X-RateLimit-Reset"].startswith("30, ")
        assert headers["X-RateLimit-Remaining"].startswith("0, ")


async def test_stripe_and_openweathermap_advertise_no_wait(http: aiohttp.ClientSession) -> None:
    for cid in ("stripe", "weather"):
        async with SandboxApiKeyProvider(CATALOG.connectors[cid]) as p:
            key = p.new_key()
            p.faults.next_api_status, p.faults.retry_after = 429, 30
            status, _, headers = await call(http, p, key)
            assert status == 429 and "Retry-After" not in headers, cid


async def test_a_delay_holds_every_answer(http: aiohttp.ClientSession) -> None:
    async with SandboxApiKeyProvider(CATALOG.connectors["weather"]) as p:
        key = p.new_key()
        p.faults.delay = 0.3
        started = time.monotonic()
        assert (await call(http, p, key))[0] == 200
        assert time.monotonic() - started >= 0.3


async def test_canned_responses_replace_the_default(http: aiohttp.ClientSession) -> None:
    async with SandboxApiKeyProvider(CATALOG.connectors["weather"]) as p:
        key = p.new_key()
        p.responses["weather.current"] = lambda query, body: {"echo": query["lat"]}
        assert (await call(http, p, key, "weather.current", {"lat": 3, "lon": 4}))[1] == {
            "echo": "3"
        }


def test_an_oauth_connector_is_refused() -> None:
    with pytest.raises(ValueError, match="not an API-key connector"):
        SandboxApiKeyProvider(CATALOG.connectors["gmail"])
