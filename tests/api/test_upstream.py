"""The vault's outward operation: an authenticated request for an account, the response back.

Against the sandbox provider (OAuth) and a loopback stand-in for a BYOK API.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from agentauth.v1 import connection_pb2 as pb
from aiohttp import web

from control_plane.connectors.sandbox_routing import rewrite_for_sandbox
from control_plane.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from control_plane.vault.upstream import UpstreamRequest
from tests.api.connect_helpers import browser, connect_world, consent, finish, start
from tests.scopes import scope


async def _connected(w: Any) -> str:
    acct = await w.account()
    async with browser() as b:
        done = await consent(b, await start(b, await w.link(acct)))
        status, _ = await finish(b, done)
    assert status == 200
    return str(acct.name.rsplit("/", 1)[1])


def _tool_url(harness: Any, connector: str, tool: str) -> str:
    return str(harness.runtime.catalog.connectors[connector].tool(tool).http.url)


async def test_a_request_carries_the_credential_and_marks_the_account_used(harness: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        account = await _connected(w)
        org = scope(w.org.split("/")[1])
        url = _tool_url(harness, "gmail", "gmail.list_messages")
        got = await harness.servers.vault.upstream.perform(
            org, account, UpstreamRequest("GET", url, {"maxResults": "5"})
        )
        assert got.status == 200 and got.failure is None and not got.refreshed
        [call] = w.provider.requests
        assert call.authorized and call.query == {"maxResults": "5"}
        after = await w.get(f"{w.org}/connectedAccounts/{account}")
        assert after.HasField("last_used_time")


async def test_an_expired_access_token_is_refreshed_once_and_the_call_retried(
    harness: Any,
) -> None:
    now = [time.time()]
    async with connect_world(harness, "gmail", clock=lambda: now[0]) as w:
        account = await _connected(w)
        org = scope(w.org.split("/")[1])
        now[0] += 2 * 3600  # the provider's access token died; our record says it lives
        url = _tool_url(harness, "gmail", "gmail.list_messages")
        got = await harness.servers.vault.upstream.perform(org, account, UpstreamRequest("GET", url))
        assert got.status == 200 and got.refreshed
        assert [r.status for r in w.provider.requests] == [401, 200]
        assert sum(1 for t in w.provider.issued if t.kind == "access") == 2


async def test_the_credential_never_goes_to_a_host_the_caller_chose(harness: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        account = await _connected(w)
        org = scope(w.org.split("/")[1])
        upstream = harness.servers.vault.upstream
        for url in (
            "https://attacker.example/steal",
            "http://127.0.0.1:1/x",
            "https://gmail.googleapis.com.attacker.example/gmail/v1/users/me/messages",
            "file:///etc/passwd",
        ):
            with pytest.raises(InvalidArgument) as info:
                await upstream.perform(org, account, UpstreamRequest("GET", url))
            assert info.value.reason == "UPSTREAM_URL_NOT_ALLOWED"
        url = _tool_url(harness, "gmail", "gmail.list_messages")
        with pytest.raises(InvalidArgument) as info:
            await upstream.perform(
                org, account, UpstreamRequest("GET", url, headers={"Authorization": "Bearer x"})
            )
        assert info.value.reason == "UPSTREAM_HEADER"
        assert w.provider.requests == []  # nothing was sent anywhere


async def test_another_orgs_account_is_not_found_and_a_pending_one_is_refused(
    harness: Any,
) -> None:
    async with connect_world(harness, "gmail") as w:
        account = await _connected(w)
        url = _tool_url(harness, "gmail", "gmail.list_messages")
        other, _, _ = await harness.new_org("Other")
        with pytest.raises(NotFound):
            await harness.servers.vault.upstream.perform(
                scope(other.split("/")[1]), account, UpstreamRequest("GET", url)
            )
        pending = (await w.account(label="later")).name.rsplit("/", 1)[1]
        with pytest.raises(FailedPrecondition) as info:
            await harness.servers.vault.upstream.perform(
                scope(w.org.split("/")[1]), pending, UpstreamRequest("GET", url)
            )
        assert info.value.reason == "ACCOUNT_PENDING"
        assert w.provider.requests == []


async def test_a_byok_key_goes_where_the_connector_says(harness: Any) -> None:
    from tests.api.test_connections import enable, new_account

    seen: list[dict[str, str]] = []

    async def customers(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"data": []})

    app = web.Application()
    app.router.add_get("/api.stripe.com/v1/customers", customers)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    catalog = harness.runtime.catalog.connectors
    real = catalog["stripe"]
    catalog["stripe"] = rewrite_for_sandbox(real, f"http://127.0.0.1:{port}")
    try:
        org, admin, _ = await harness.new_org()
        names = await harness.populate(org, admin)
        await enable(admin, org, "stripe")
        acct = await new_account(admin, org, names["user"], "stripe")
        key = "rk_test_UpstreamKey0123456789ab"
        await admin.connections.SetApiKey(pb.SetApiKeyRequest(name=acct.name, api_key=key))
        got = await harness.servers.vault.upstream.perform(
            scope(org.split("/")[1]),
            acct.name.rsplit("/", 1)[1],
            UpstreamRequest("GET", f"http://127.0.0.1:{port}/api.stripe.com/v1/customers"),
        )
        assert got.status == 200
        placement = real.auth.api_key
        assert placement is not None
        [headers] = seen
        assert headers[placement.name] == placement.prefix + key
    finally:
        catalog["stripe"] = real
        await runner.cleanup()



async def test_shopify_gets_its_token_in_x_shopify_access_token(harness: Any) -> None:
    async with connect_world(harness, "shopify") as w:
        acct = await w.account(connection_params={"shop": "acme-store"})
        async with browser() as b:
            done = await consent(b, await start(b, await w.link(acct)))
            status, _ = await finish(b, done)
        assert status == 200
        account = str(acct.name.rsplit("/", 1)[1])
        org = scope(w.org.split("/")[1])
        url = _tool_url(harness, "shopify", "shopify.list_products").replace(
            "{connection.shop}", "acme-store"
        )
        got = await harness.servers.vault.upstream.perform(org, account, UpstreamRequest("GET", url))
        assert got.status == 200 and got.failure is None
        [call] = w.provider.requests
        assert call.authorized and call.headers["X-Shopify-Access-Token"] == "[redacted]"
        assert "Authorization" not in call.headers


async def test_salesforce_calls_go_to_the_kept_instance_url_host(harness: Any) -> None:
    from control_plane.connectors.authorize import fill_connection

    async with connect_world(harness, "salesforce") as w:
        account = await _connected(w)
        org = scope(w.org.split("/")[1])
        kept = dict((await w.get(f"{w.org}/connectedAccounts/{account}")).provider_metadata)
        template = _tool_url(harness, "salesforce", "salesforce.query")
        url = fill_connection(template, kept)
        got = await harness.servers.vault.upstream.perform(
            org, account, UpstreamRequest("GET", url, {"q": "SELECT Id FROM Account"})
        )
        assert got.status == 200 and got.failure is None
        [call] = w.provider.requests
        assert call.authorized and call.tool == "salesforce.query"
        host = kept["instance_url"].removeprefix("https://")
        assert call.url.startswith(f"https://{host}/services/data/v62.0/query")
