"""The hosted connect flow against sandbox providers: OAuth (PKCE, state, iss) and BYOK.

Every refusal is a failure page with a precise code, and loses nothing: a
connected account is only ever changed by a completed, verified exchange.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from agentauth import FailedPreconditionError, NotFoundError
from agentauth.v1 import connection_pb2 as pb
from sqlalchemy import text

from control_plane.storage.db import Database
from tests.api.connect_helpers import (
    CANARY_CLIENT_SECRET,
    Redirect,
    browser,
    connect_world,
    consent,
    finish,
    hidden,
    start,
)


def code_of(page: str) -> str:
    found = re.search(r'data-result=(\w+)(?: data-code="([A-Z_]+)")?', page)
    assert found, page[:300]
    return found.group(2) or found.group(1)


async def sealed_secret(harness: Any, org: str, account: str) -> dict[str, Any]:
    owner = Database(harness.database_url, app_role=None)
    try:
        async with owner.engine.connect() as conn:
            blob = (
                await conn.execute(
                    text("SELECT secret FROM connected_accounts WHERE id = :i"),
                    {"i": account.rsplit("/", 1)[1]},
                )
            ).scalar_one()
    finally:
        await owner.dispose()
    from tests.scopes import scope

    opened = await harness.runtime.barrier.open(
        scope(org.split("/")[1]), "connected_accounts", account.rsplit("/", 1)[1], "secret", blob
    )
    return dict(json.loads(opened))


async def test_oauth_flow_connects_the_account(harness: Any, captured_logs: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        acct = await w.account(label="work")
        link = await w.link(acct)
        assert link.startswith(harness.http + "/connect/")
        async with browser() as b:
            authorize = await start(b, link)
            q = dict(p.split("=", 1) for p in authorize.split("?", 1)[1].split("&"))
            assert q["code_challenge_method"] == "S256" and q["access_type"] == "offline"
            redirect = await consent(b, authorize)
            assert redirect.query["iss"]  # Google sends RFC 9207 iss
            status, page = await finish(b, redirect)
        assert status == 200 and code_of(page) == "success"
        got = await w.get(acct.name)
        assert got.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE and got.state_reason == ""
        expected = {s for t in harness.runtime.catalog.connectors["gmail"].tools for s in t.scopes}
        assert set(got.granted_scopes) == expected
        secret = await sealed_secret(harness, w.org, acct.name)
        issued = {t.value for t in w.provider.issued}
        assert secret["access_token"] in issued and secret["refresh_token"] in issued
        logs = captured_logs.getvalue()
        assert "GetAuthorizationLink" in logs  # the server's log lines are captured here
        for value in (*secret.values(), CANARY_CLIENT_SECRET, redirect.query["code"]):
            assert value not in page and value not in logs
            assert value not in str(got)
        # The same callback again: the state was single-use; nothing changes.
        async with browser() as b2:
            status, page = await finish(b2, redirect)
        assert status == 400 and code_of(page) == "STATE_INVALID"
        assert (await w.get(acct.name)).state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE
        # And the link itself is spent.
        async with browser() as b3, b3.get(link) as resp:
            assert resp.status == 410 and code_of(await resp.text()) == "LINK_USED"


async def test_state_is_bound_to_the_browser_that_started(harness: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        acct = await w.account()
        async with browser() as started, browser() as other:
            redirect = await consent(started, await start(started, await w.link(acct)))
            status, page = await finish(other, redirect)  # no binding cookie
        assert status == 400 and code_of(page) == "BROWSER_MISMATCH"
        assert (await w.get(acct.name)).state == pb.CONNECTED_ACCOUNT_STATE_PENDING


@pytest.mark.parametrize(
    "mangle",
    ["missing", "garbage", "other_org", "flipped", "iss"],
)
async def test_bad_callbacks_are_refused_and_change_nothing(harness: Any, mangle: str) -> None:
    async with connect_world(harness, "gmail") as w:
        acct = await w.account()
        other_org, _, _ = await harness.new_org("Other")
        async with browser() as b:
            redirect = await consent(b, await start(b, await w.link(acct)))
            q = dict(redirect.query)
            state = q["state"]
            if mangle == "missing":
                del q["state"]
            elif mangle == "garbage":
                q["state"] = "not-a-state"
            elif mangle == "other_org":
                q["state"] = other_org.split("/")[1] + "." + state.split(".", 1)[1]
            elif mangle == "flipped":
                q["state"] = state[:-2] + ("AA" if not state.endswith("AA") else "BB")
            else:
                q["iss"] = "https://evil.example"
            from urllib.parse import urlencode

            url = redirect.url.split("?", 1)[0] + "?" + urlencode(q)
            before = await harness.snapshot()
            status, page = await finish(b, Redirect(url, q))
        expected = "ISSUER_MISMATCH" if mangle == "iss" else "STATE_INVALID"
        assert status == 400 and code_of(page) == expected
        after = await harness.snapshot()
        if mangle != "iss":  # an iss mismatch spends the state (one try per state)
            assert after == before
        assert (await w.get(acct.name)).state == pb.CONNECTED_ACCOUNT_STATE_PENDING


async def test_a_connector_that_sends_iss_without_an_issuer_fails_closed(harness: Any) -> None:
    # The loader refuses such a definition (tests/connectors); one built in code
    # must not quietly skip the RFC 9207 comparison either.
    from dataclasses import replace

    async with connect_world(harness, "gmail") as w:
        c = harness.runtime.catalog.connectors["gmail"]
        assert c.auth.sends_iss
        harness.runtime.catalog.connectors["gmail"] = replace(c, auth=replace(c.auth, issuer=""))
        acct = await w.account()
        async with browser() as b:
            redirect = await consent(b, await start(b, await w.link(acct)))
            assert redirect.query["iss"]
            status, page = await finish(b, redirect)
        assert status == 400 and code_of(page) == "ISSUER_MISMATCH"
        assert (await w.get(acct.name)).state == pb.CONNECTED_ACCOUNT_STATE_PENDING


async def test_provider_refusals_leave_the_account_pending(harness: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        acct = await w.account()
        async with browser() as b:
            redirect = await consent(b, await start(b, await w.link(acct)), decision="deny")
            status, page = await finish(b, redirect)
        assert code_of(page) == "PROVIDER_ACCESS_DENIED" and status == 400
        got = await w.get(acct.name)
        assert got.state == pb.CONNECTED_ACCOUNT_STATE_PENDING
        assert got.state_reason == "AUTHORIZATION_ACCESS_DENIED"

        for fault, expected in [
            ("garbage_body", "PROVIDER_UNREADABLE_RESPONSE"),
            ("next_token_status", "PROVIDER_SERVER_ERROR"),
            ("drop_connection", "PROVIDER_PROVIDER_UNREACHABLE"),
        ]:
            async with browser() as b:
                redirect = await consent(b, await start(b, await w.link(acct)))
                setattr(w.provider.faults, fault, 500 if fault == "next_token_status" else True)
                status, page = await finish(b, redirect)
            assert code_of(page) == expected, (fault, page[-300:])
            assert (await w.get(acct.name)).state_reason == "TOKEN_EXCHANGE_FAILED"


async def test_a_replayed_code_is_refused_by_the_provider(harness: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        first = await w.account()
        second = await w.account()
        async with browser() as b:
            done = await consent(b, await start(b, await w.link(first)))
            assert code_of((await finish(b, done))[1]) == "success"
            fresh = await consent(b, await start(b, await w.link(second)))
            q = {**fresh.query, "code": done.query["code"]}  # the spent code, a new state
            from urllib.parse import urlencode

            url = fresh.url.split("?", 1)[0] + "?" + urlencode(q)
            status, page = await finish(b, Redirect(url, q))
        assert code_of(page) == "PROVIDER_INVALID_GRANT"
        assert (await w.get(second.name)).state == pb.CONNECTED_ACCOUNT_STATE_PENDING


@pytest.mark.parametrize("connector_id", ["slack", "salesforce", "github", "notion", "hubspot"])
async def test_provider_shapes_are_read_and_kept_fields_stored(
    harness: Any, connector_id: str
) -> None:
    async with connect_world(harness, connector_id) as w:
        acct = await w.account()
        async with browser() as b:
            redirect = await consent(b, await start(b, await w.link(acct)))
            status, page = await finish(b, redirect)
        assert (status, code_of(page)) == (200, "success"), page[-400:]
        got = await w.get(acct.name)
        keep = harness.runtime.catalog.connectors[connector_id].auth.keep_fields
        assert set(got.provider_metadata) <= set(keep)
        secret = await sealed_secret(harness, w.org, acct.name)
        user_tokens = {t.value for t in w.provider.issued if t.chain in ("default", "user")}
        assert secret["access_token"] in user_tokens
        if connector_id == "salesforce":
            assert "instance_url" in got.provider_metadata
        if connector_id == "slack":
            assert "authed_user.id" in got.provider_metadata


async def test_byok_page_with_csrf(harness: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        await w.admin.connections.UpdateConnectorConfig(pb.UpdateConnectorConfigRequest(
            name=f"{w.org}/connectors/stripe", enabled=True))
        acct = (await w.admin.connections.CreateConnectedAccount(pb.CreateConnectedAccountRequest(
            parent=w.org, connected_account=pb.ConnectedAccount(
                connector="stripe", owner=w.names["user"])))).connected_account
        link = await w.link(acct)
        key = "rk_test_ByokThroughThePage0123"
        async with browser() as b:
            async with b.get(link) as resp:
                page = await resp.text()
                assert 'type=password' in page and resp.headers["Referrer-Policy"] == "no-referrer"
            csrf = hidden(page, "csrf")
            async with b.post(link, data={"api_key": key}) as resp:  # no CSRF token
                assert resp.status == 403 and code_of(await resp.text()) == "CSRF"
            async with b.post(link, data={"csrf": "forged", "api_key": key}) as resp:
                assert resp.status == 403
            async with b.post(link, data={"csrf": csrf, "api_key": "sk_live_wrongformat12345"}) as r:
                body = await r.text()
                assert r.status == 400 and "sk_live_wrongformat12345" not in body
                csrf = hidden(body, "csrf")
            async with b.post(link, data={"csrf": csrf, "api_key": key}) as resp:
                body = await resp.text()
                assert resp.status == 200 and code_of(body) == "success" and key not in body
        got = await w.get(acct.name)
        assert got.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE and got.api_key_hint == "••••0123"
        assert (await sealed_secret(harness, w.org, acct.name)) == {"api_key": key}
        async with browser() as b, b.get(link) as resp:
            assert resp.status == 410  # single use


async def test_links_need_an_enabled_connector_and_an_app(harness: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        acct = await w.account()
        await w.admin.connections.DeleteOAuthApp(
            pb.DeleteOAuthAppRequest(name=f"{w.org}/oauthApps/gmail"))
        with pytest.raises(FailedPreconditionError) as missing:
            await w.link(acct)
        assert missing.value.reason == "OAUTH_APP_MISSING"
        other, other_admin, _ = await harness.new_org("Other")
        with pytest.raises(NotFoundError):
            await other_admin.connections.GetAuthorizationLink(
                pb.GetAuthorizationLinkRequest(name=acct.name))
        async with browser() as b:
            for bad in ("nope", "0" * 32 + ".short", other.split("/")[1] + "." + "a" * 43):
                async with b.get(f"{harness.http}/connect/{bad}") as resp:
                    assert resp.status == 404 and code_of(await resp.text()) == "LINK_INVALID"


async def test_deleting_an_account_revokes_the_grant_then_destroys_the_secret(
    harness: Any, captured_logs: Any
) -> None:
    async with connect_world(harness, "gmail") as w:
        acct = await w.account()
        async with browser() as b:
            done = await consent(b, await start(b, await w.link(acct)))
            assert code_of((await finish(b, done))[1]) == "success"
        secret = await sealed_secret(harness, w.org, acct.name)
        live = [t for t in w.provider.issued if t.value == secret["refresh_token"]]
        assert live and not live[0].revoked
        await w.admin.connections.DeleteConnectedAccount(
            pb.DeleteConnectedAccountRequest(name=acct.name))
        assert live[0].revoked  # the provider no longer honours the grant
        with pytest.raises(NotFoundError):
            await w.get(acct.name)
        out = captured_logs.getvalue()
        assert "provider grant revoked" in out and secret["refresh_token"] not in out
        # A provider that is down does not keep the account alive.
        again = await w.account()
        async with browser() as b:
            done = await consent(b, await start(b, await w.link(again)))
            assert code_of((await finish(b, done))[1]) == "success"
        from dataclasses import replace

        c = harness.runtime.catalog.connectors["gmail"]
        harness.runtime.catalog.connectors["gmail"] = replace(
            c, auth=replace(c.auth, revoke_url="http://127.0.0.1:9/unreachable"))
        await w.admin.connections.DeleteConnectedAccount(
            pb.DeleteConnectedAccountRequest(name=again.name))
        with pytest.raises(NotFoundError):
            await w.get(again.name)


@pytest.mark.parametrize(
    "variant",
    [
        "{base}/oauth/callback/",  # trailing slash
        "{base}/OAuth/callback",  # case
        "{scheme}://good@{host}/oauth/callback",  # userinfo
        "{base}/oauth/callback?next=https://evil.example",  # extra query
        "https://evil.example/oauth/callback",  # another host
    ],
)
async def test_redirect_uri_near_matches_are_refused(harness: Any, variant: str) -> None:
    """The provider only redirects to the exact registered URI (RFC 6749 §3.1.2.3); we
    serve exactly one callback path and never follow a caller's ``next``."""
    from urllib.parse import urlencode, urlsplit

    async with connect_world(harness, "gmail") as w:
        acct = await w.account()
        base = harness.http
        parts = urlsplit(base)
        uri = variant.format(base=base, scheme=parts.scheme, host=parts.netloc)
        async with browser() as b:
            authorize = await start(b, await w.link(acct))
            head, query = authorize.split("?", 1)
            q = dict(p.split("=", 1) for p in query.split("&"))
            q["redirect_uri"] = uri
            from urllib.parse import unquote

            forged = head + "?" + urlencode({k: unquote(v) for k, v in q.items()})
            async with b.get(forged, allow_redirects=False) as resp:
                assert resp.status == 400 and "Location" not in resp.headers
            if variant.startswith("{base}/oauth/callback?"):
                # Our own callback ignores extra parameters and redirects nowhere.
                async with b.get(uri, allow_redirects=False) as resp:
                    assert resp.status == 400 and "Location" not in resp.headers
            elif variant.startswith("{base}"):
                async with b.get(uri, allow_redirects=False) as resp:
                    assert resp.status == 404
        assert (await w.get(acct.name)).state == pb.CONNECTED_ACCOUNT_STATE_PENDING


async def test_an_expired_link_and_its_state_are_refused(harness: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        acct = await w.account()
        link = await w.link(acct)
        async with browser() as b:
            redirect = await consent(b, await start(b, link))
            owner = Database(harness.database_url, app_role=None)
            try:
                async with owner.engine.begin() as conn:
                    await conn.execute(text(
                        "UPDATE connect_links SET expire_time = :t"), {"t": "2000-01-01 00:00:00+00:00"})
            finally:
                await owner.dispose()
            status, page = await finish(b, redirect)
            assert (status, code_of(page)) == (400, "STATE_INVALID")
            async with b.get(link) as resp:
                assert resp.status == 410 and code_of(await resp.text()) == "LINK_EXPIRED"
        assert (await w.get(acct.name)).state == pb.CONNECTED_ACCOUNT_STATE_PENDING


async def test_a_token_response_without_a_refresh_token_is_kept_as_is(harness: Any) -> None:
    async with connect_world(harness, "intercom") as w:  # Intercom issues no refresh token
        acct = await w.account()
        async with browser() as b:
            done = await consent(b, await start(b, await w.link(acct)))
            assert code_of((await finish(b, done))[1]) == "success"
        secret = await sealed_secret(harness, w.org, acct.name)
        assert "access_token" in secret and "refresh_token" not in secret
        assert (await w.get(acct.name)).state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE


async def test_reconnecting_repairs_the_same_account(harness: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        acct = await w.account(label="work")
        tokens = []
        for _ in range(2):  # connect, then reconnect through a new link
            async with browser() as b:
                done = await consent(b, await start(b, await w.link(acct)))
                assert code_of((await finish(b, done))[1]) == "success"
            tokens.append(await sealed_secret(harness, w.org, acct.name))
        listed = await w.admin.connections.ListConnectedAccounts(
            pb.ListConnectedAccountsRequest(parent=w.org, owner=w.names["user"]))
        assert [a.name for a in listed.connected_accounts] == [acct.name]  # same id, no new one
        assert tokens[0]["access_token"] != tokens[1]["access_token"]
        got = await w.get(acct.name)
        assert got.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE and got.label == "work"
        assert got.secret_rotate_time.ToDatetime() >= got.secret_create_time.ToDatetime()


@pytest.mark.parametrize("cid", ["dropbox", "github", "notion"])
async def test_deleting_an_account_revokes_where_the_provider_is_not_rfc7009(
    harness: Any, captured_logs: Any, cid: str
) -> None:
    async with connect_world(harness, cid) as w:
        acct = await w.account()
        async with browser() as b:
            done = await consent(b, await start(b, await w.link(acct)))
            assert code_of((await finish(b, done))[1]) == "success"
        secret = await sealed_secret(harness, w.org, acct.name)
        access = secret["access_token"]
        assert w.provider.token_state(access) == "live"
        await w.admin.connections.DeleteConnectedAccount(
            pb.DeleteConnectedAccountRequest(name=acct.name))
        assert w.provider.token_state(access) == "revoked"
        out = captured_logs.getvalue()
        assert "provider grant revoked" in out and access not in out
