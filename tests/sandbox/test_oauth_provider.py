"""The OAuth 2.0 provider sandbox, driven the way agentauth drives a real provider.

Every ``oauth2`` connector of the catalog goes through a whole authorization-code
flow with PKCE on the wire (consent page, redirect, token exchange with its own
client authentication and body format, refresh per its rotation policy, a tool
call), and the sandbox's refusals must be classified by the connector's own
``errors`` rules. Provider shapes are then pinned one by one, on small connectors
built here so that they do not move when a catalog file changes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urljoin, urlsplit

import aiohttp
import pytest

from control_plane.vault.classify import _matches, parse_body

from control_plane.connectors.authorize import authorization_url, fill_connection
from control_plane.connectors.credentials import place_credential
from control_plane.connectors.loader import load_catalog
from control_plane.connectors.model import (
    AuthSpec,
    Connector,
    ErrorRule,
    HttpMapping,
    RefreshPolicy,
    Tool,
)
from control_plane.sandbox import SandboxProvider
from control_plane.sandbox.oauth_provider import PROFILES, profile_for

CATALOG = load_catalog()  # the catalog grows: every oauth2 connector is picked up
OAUTH = sorted(cid for cid, c in CATALOG.connectors.items() if c.auth.type == "oauth2")
REDIRECT = "https://cp.example/oauth/callback"
CONNECTION = {
    "subdomain": "acme",
    "shop": "acme-store",
    "cloud_id": "11111111-2222-3333-4444-555555555555",
}
T0 = 1_795_000_000.0
REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _basic(client_id: str, secret: str) -> str:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def _get(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return KeyError
        doc = doc[part]
    return doc


def _contains(actual: Any, expected: Any) -> bool:
    """``expected`` is a sub-structure of ``actual`` (dict keys, list positions)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and _contains(actual[k], v) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) >= len(expected)
            and all(_contains(a, e) for a, e in zip(actual, expected, strict=False))
        )
    return bool(actual == expected)


def _tokens(body: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Access and refresh token of a reply: top level, else Slack's ``authed_user``."""
    if "access_token" in body:
        return body["access_token"], body.get("refresh_token")
    user = body.get("authed_user") or {}
    return user.get("access_token"), user.get("refresh_token")


@dataclass
class Reply:
    status: int
    body: Any
    text: str
    headers: Mapping[str, str]
    content_type: str


# --- the connector's own error rules, applied like the runtime would ---------------------


def _classify(rules: tuple[ErrorRule, ...], phase: str, reply: Reply) -> str | None:
    """The class of the first of the connector's rules that matches: the runtime's own
    classifier, with the generic fallback left out (it always answers something)."""
    connector = _RulesOnly(rules)
    doc, text = parse_body(reply.text.encode())
    for rule in connector.errors:
        if _matches(rule, phase, reply.status, doc, text, reply.headers):
            return rule.error_class
    return None


@dataclass(frozen=True)
class _RulesOnly:
    errors: tuple[ErrorRule, ...]


# --- a small OAuth client, as agentauth's connect flow behaves ---------------------------


class Client:
    def __init__(self, provider: SandboxProvider, http: aiohttp.ClientSession) -> None:
        self.provider, self.http = provider, http
        self.connector = provider.connector_for_sandbox()
        self.connection = {
            p.name: CONNECTION.get(p.name, "acme") for p in self.connector.auth.connection_params
        }

    def authorize_url(self, *, state: str = "st-1", challenge: str | None = None,
                      redirect: str = REDIRECT, client_id: str | None = None) -> str:  # fmt: skip
        return authorization_url(
            self.connector, client_id=client_id or self.provider.client_id, redirect_uri=redirect,
            state=state, code_challenge=challenge, connection=self.connection,
        )  # fmt: skip

    async def consent(self, url: str, decision: str = "allow") -> dict[str, str]:
        """GET the consent page, submit it, read the redirect back to us."""
        async with self.http.get(url) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.content_type == "text/html"
            page = await resp.text()
        assert "<script" not in page
        action = re.search(r'<form method="post" action="([^"]+)"', page)
        assert action is not None
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)"', page))
        target = urljoin(url, html.unescape(action.group(1)))
        data = {**fields, "decision": decision}
        async with self.http.post(target, data=data, allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()
            location = resp.headers["Location"]
        assert location.startswith(REDIRECT + "?")
        return dict(parse_qsl(urlsplit(location).query))

    async def token(self, params: Mapping[str, str], *, auth: str | None = None,
                    fmt: str | None = None, secret: str | None = None,
                    accept_json: bool = True) -> Reply:  # fmt: skip
        body = dict(params)
        headers = {"Accept": "application/json"} if accept_json else {}
        secret = secret or self.provider.client_secret
        method = auth or self.connector.auth.client_auth
        if method in ("client_secret_basic", "both"):
            headers["Authorization"] = _basic(self.provider.client_id, secret)
        if method in ("client_secret_post", "both"):
            body |= {"client_id": self.provider.client_id, "client_secret": secret}
        fmt = fmt or self.connector.auth.token_request_format
        kwargs: dict[str, Any] = {"json": body} if fmt == "json" else {"data": body}
        url = fill_connection(self.connector.auth.token_url, self.connection)
        async with self.http.post(url, headers=headers, **kwargs) as resp:
            return await _reply(resp)

    async def exchange(self, code: str, verifier: str | None, **kw: Any) -> Reply:
        params = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
        if verifier is not None:
            params["code_verifier"] = verifier
        return await self.token(params, **kw)

    async def refresh(self, refresh_token: str, **kw: Any) -> Reply:
        return await self.token(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}, **kw
        )

    async def connect(self) -> Reply:
        """Authorize (with PKCE when the connector uses it) and exchange the code."""
        verifier, challenge = _pkce() if self.connector.auth.pkce else (None, None)
        reply = await self.consent(self.authorize_url(challenge=challenge))
        result = await self.exchange(reply["code"], verifier)
        assert result.status == 200, result.body
        return result

    async def call(self, tool: Tool, token: str, kept: Mapping[str, str] | None = None,
                   connection: Mapping[str, str] | None = None) -> Reply:  # fmt: skip
        values = {**self.connection, **(kept or {}), **(connection or {})}
        url = fill_connection(tool.http.url, values)
        url = re.sub(r"\{[A-Za-z][A-Za-z0-9_]*\}", "abc123", url)
        headers, _ = place_credential(self.connector.auth, token, tool.http.headers, {})
        kwargs: dict[str, Any] = {}
        if tool.http.body == "json":
            kwargs["json"] = {}
        elif tool.http.body == "form":
            kwargs["data"] = {"x": "1"}
        async with self.http.request(tool.http.method, url, headers=headers, **kwargs) as resp:
            return await _reply(resp)


async def _reply(resp: aiohttp.ClientResponse) -> Reply:
    text = await resp.text()
    if resp.content_type == "application/json":
        body: Any = json.loads(text)
    elif resp.content_type == "application/x-www-form-urlencoded":
        body = dict(parse_qsl(text))
    else:
        body = text
    return Reply(resp.status, body, text, dict(resp.headers), resp.content_type)


def _kept(connector: Connector, body: Mapping[str, Any]) -> dict[str, str]:
    """Kept token fields as the vault stores them (a URL's host is taken by ``|host``)."""
    out = {}
    for path in connector.auth.keep_fields:
        value = _get(body, path)
        if isinstance(value, str | int) and value is not KeyError:
            out[path] = str(value)
    return out


def _probe_tool(connector: Connector) -> Tool:
    return next((t for t in connector.tools if t.http.method == "GET"), connector.tools[0])


# Independent fixtures of what each provider sends (provider_quirks.md §2), by profile.
REFRESH_REFUSED: dict[str, tuple[int, Any]] = {
    "slack": (200, {"ok": False, "error": "invalid_refresh_token"}),
    "github": (200, {"error": "bad_refresh_token"}),
    "atlassian": (
        403,
        {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."},
    ),
    "zoom": (400, {"error": "invalid_request", "reason": "Invalid Token!"}),
    "hubspot": (400, {"error": "invalid_grant", "status": "BAD_REFRESH_TOKEN"}),
    "microsoft": (400, {"error": "invalid_grant", "error_codes": [9002313]}),
    "salesforce": (
        400,
        {"error": "invalid_grant", "error_description": "expired access/refresh token"},
    ),
    "google": (
        400,
        {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
    ),
}
BAD_TOKEN: dict[str, tuple[int, Any]] = {
    "google": (401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}),
    "slack": (200, {"ok": False, "error": "invalid_auth"}),
    "microsoft": (401, {"error": {"code": "InvalidAuthenticationToken"}}),
    "hubspot": (401, {"status": "error", "category": "INVALID_AUTHENTICATION"}),
    "salesforce": (
        401,
        [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
    ),
    "github": (401, {"message": "Bad credentials", "status": "401"}),
    "notion": (
        401,
        {
            "object": "error",
            "status": 401,
            "code": "unauthorized",
            "message": "API token is invalid.",
        },
    ),
    "linear": (401, {"errors": [{"extensions": {"code": "AUTHENTICATION_ERROR"}}]}),
    "atlassian": (401, {"code": 401, "message": "Unauthorized"}),
    "zendesk": (401, {"error": "invalid_token"}),
    "dropbox": (401, {"error": {".tag": "invalid_access_token"}}),
    "zoom": (401, {"code": 124, "message": "Invalid access token."}),
    "asana": (401, {"errors": [{"message": "Not Authorized"}]}),
    "figma": (403, {"status": 403, "err": "Invalid token"}),
    "intercom": (
        401,
        {
            "type": "error.list",
            "errors": [{"code": "unauthorized", "message": "Access Token Invalid"}],
        },
    ),
    "shopify": (
        401,
        {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"},
    ),
}


@pytest.fixture
def clock() -> Clock:
    return Clock()


# --- every oauth2 connector of the catalog ------------------------------------------------


@pytest.mark.parametrize("cid", OAUTH)
async def test_full_authorization_code_flow(
    cid: str, http: aiohttp.ClientSession, clock: Clock
) -> None:
    connector = CATALOG.connectors[cid]
    policy = connector.auth.refresh
    async with SandboxProvider(connector, clock=clock) as provider:
        client = Client(provider, http)
        profile = provider.profile.name
        # authorization request -> consent page -> redirect with code, state (+ iss)
        verifier, challenge = _pkce() if connector.auth.pkce else (None, None)
        redirect = await client.consent(client.authorize_url(state="st-42", challenge=challenge))
        assert redirect["state"] == "st-42" and redirect["code"]
        if connector.auth.sends_iss:  # RFC 9207
            assert redirect["iss"] == provider.issuer == client.connector.auth.issuer
        else:
            assert "iss" not in redirect
        # code exchange with the connector's client authentication and body format
        first = await client.exchange(redirect["code"], verifier)
        assert first.status == 200, first.body
        assert first.headers["Cache-Control"] == "no-store"  # RFC 6749 §5.1
        if profile == "slack":
            assert first.body["ok"] is True
        access, refresh = _tokens(first.body)
        assert access
        for path in connector.auth.keep_fields:  # what the connector keeps is sent
            parent = path.rsplit(".", 1)[0]
            assert _get(first.body, path) is not KeyError or _get(first.body, parent) is None, path
        kept = _kept(connector, first.body)
        tool = _probe_tool(client.connector)
        called = await client.call(tool, access, kept)
        assert called.status == 200, called.body
        # refresh per the connector's policy
        if not policy.supported:
            assert refresh is None
        else:
            assert refresh, first.body
            second = await client.refresh(refresh)
            assert second.status == 200, second.body
            new_access, new_refresh = _tokens(second.body)
            assert new_access and new_access != access
            if policy.rotating:
                assert new_refresh and new_refresh != refresh
            elif provider.profile.echo_refresh_token:
                assert new_refresh == refresh
            else:
                assert new_refresh is None  # keep the stored one (Nango #298)
            access = new_access
            called = await client.call(tool, access, kept)
            assert called.status == 200, called.body
            clock.now += policy.reuse_leeway_seconds + 1
            again = await client.refresh(refresh)
            if policy.single_use:
                status, shape = REFRESH_REFUSED.get(profile, (400, {"error": "invalid_grant"}))
                assert again.status == status and _contains(again.body, shape), again.body
                verdict = _classify(connector.errors, "token", again)
                assert verdict in ("refresh_race", "revoked"), (verdict, again.body)
            else:
                assert again.status == 200, again.body  # the old refresh token still works
        # the tool call: recorded, credentials redacted; then a bad token
        if profile == "slack":
            assert called.body["ok"] is True
        seen = provider.requests[-1]
        assert seen.status == 200 and seen.authorized and seen.method == tool.http.method
        assert seen.headers[connector.auth.token_header.name] == "[redacted]"
        assert access not in repr(seen) and access not in repr(provider.issued)
        bad = await client.call(tool, "not-a-token-" + secrets.token_hex(4), kept)
        status, shape = BAD_TOKEN.get(profile, (401, {"error": "invalid_token"}))
        assert bad.status == status and _contains(bad.body, shape), bad.body
        assert not provider.requests[-1].authorized
        verdict = _classify(connector.errors, "api", bad)
        assert verdict in ("expired_access", "revoked"), (verdict, bad.body)


@pytest.mark.parametrize("cid", OAUTH)
async def test_connector_copy_points_at_the_sandbox(cid: str) -> None:
    connector = CATALOG.connectors[cid]
    async with SandboxProvider(connector) as provider:
        copy = provider.connector_for_sandbox()
        base = provider.base_url + "/"
        urls = [copy.auth.authorize_url, copy.auth.token_url] + [t.http.url for t in copy.tools]
        assert all(u.startswith(base) for u in urls), urls
        assert copy.auth.token_url == base + connector.auth.token_url.removeprefix("https://")
        assert bool(copy.auth.revoke_url) == bool(connector.auth.revoke_url)
        assert copy.tool_names == connector.tool_names
        assert copy.auth.refresh == connector.auth.refresh


@pytest.mark.parametrize("cid", sorted(set(OAUTH) & set(PROFILES)))
def test_catalog_connector_uses_its_provider_profile(cid: str) -> None:
    assert profile_for(CATALOG.connectors[cid]) is PROFILES[cid]


# --- small connectors built here: provider shapes -----------------------------------------


def _connector(cid: str, host: str, *, token_path: str = "/oauth/token", tool_url: str = "",
               scopes: tuple[str, ...] = ("read",), refresh: RefreshPolicy | None = None,
               **auth: Any) -> Connector:  # fmt: skip
    tool = Tool(
        name=f"{cid}.get_thing", description="Get one thing, for the sandbox tests.",
        input_schema={"type": "object", "additionalProperties": False}, scopes=scopes,
        destructive=False, output_trust="trusted",
        http=HttpMapping(method="GET", url=tool_url or f"https://api.{host}/v1/things/{{id}}"),
    )  # fmt: skip
    spec = AuthSpec(
        type="oauth2", authorize_url=f"https://{host}/oauth/authorize",
        token_url=f"https://{host}{token_path}", revoke_url=f"https://{host}/oauth/revoke",
        refresh=refresh or RefreshPolicy(supported=True), **auth,
    )  # fmt: skip
    return Connector(id=cid, display_name=cid.title(), auth=spec, tools=(tool,))


ROTATING = RefreshPolicy(supported=True, rotating=True, single_use=True)
SLACK = _connector(
    "slack", "slack.com", token_path="/api/oauth.v2.access", refresh=ROTATING,
    tool_url="https://slack.com/api/conversations.list", client_auth="client_secret_basic",
    scope_param="user_scope", scope_separator=",", scopes=("channels:read",),
)  # fmt: skip
GITHUB = _connector(
    "github", "github.com", token_path="/login/oauth/access_token", refresh=ROTATING,
    tool_url="https://api.github.com/repos/{owner}/{repo}/issues", pkce=True,
    scopes=("repo", "gist"),
)  # fmt: skip
SALESFORCE = _connector(
    "salesforce", "login.salesforce.com", token_path="/services/oauth2/token",
    tool_url="https://{connection.instance_url|host}/services/data/v62.0/query",
    refresh_scopes=("refresh_token",), keep_fields=("instance_url", "id"), scopes=("api",),
)  # fmt: skip
PLAIN = _connector("acme", "auth.acme.example", pkce=True)  # no profile: plain RFC 6749
NO_PKCE = replace(PLAIN, auth=replace(PLAIN.auth, pkce=False))
BASIC = _connector("acme", "auth.acme.example", client_auth="client_secret_basic")
JSON_BODY = _connector("acme", "auth.acme.example", token_request_format="json")


@pytest.fixture
async def plain(clock: Clock) -> AsyncIterator[SandboxProvider]:
    async with SandboxProvider(PLAIN, clock=clock) as provider:
        yield provider


async def test_slack_answers_every_error_in_a_200_body(
    http: aiohttp.ClientSession, clock: Clock
) -> None:
    async with SandboxProvider(SLACK, clock=clock) as slack:
        client = Client(slack, http)
        code = (await client.consent(client.authorize_url()))["code"]
        refusals = [
            (await client.exchange(code, None, secret="wrong"), "bad_client_secret"),
            (await client.exchange(code, None, auth="client_secret_post"), "bad_client_secret"),
            (await client.exchange("no-such-code", None), "invalid_code"),
            (await client.token({"grant_type": "password"}), "invalid_grant_type"),
            (await client.refresh("xoxe-1-unknown"), "invalid_refresh_token"),
        ]
        for reply, error in refusals:
            assert (reply.status, reply.body) == (200, {"ok": False, "error": error})
        done = await client.exchange(code, None)
        body = done.body
        assert done.status == 200 and body["ok"] is True
        assert "access_token" not in body  # user_scope only: no bot token
        user = body["authed_user"]
        assert user["token_type"] == "user" and user["scope"] == "channels:read"
        assert user["access_token"].startswith("xoxe.xoxp-") and user["expires_in"] == 43200
        assert user["refresh_token"].startswith("xoxe-1-") and body["team"]["id"].startswith("T")
        assert body["enterprise"] is None and body["is_enterprise_install"] is False
        refreshed = await client.refresh(user["refresh_token"])
        assert refreshed.body["ok"] is True and refreshed.body["token_type"] == "user"  # flat reply
        again = await client.refresh(user["refresh_token"])
        assert (again.status, again.body) == (200, {"ok": False, "error": "invalid_refresh_token"})
        tool = client.connector.tools[0]
        ok = await client.call(tool, refreshed.body["access_token"])
        assert (ok.status, ok.body["ok"]) == (200, True)
        assert (await client.call(tool, user["access_token"])).status == 200  # not killed
        clock.now += 43200
        expired = await client.call(tool, refreshed.body["access_token"])
        assert (expired.status, expired.body) == (200, {"ok": False, "error": "token_expired"})


async def test_github_token_replies_are_form_encoded_unless_json_is_accepted(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxProvider(GITHUB) as github:
        client = Client(github, http)
        verifier, challenge = _pkce()
        code = (await client.consent(client.authorize_url(challenge=challenge)))["code"]
        bad = await client.exchange("nope", verifier, accept_json=False)
        assert bad.status == 200 and bad.content_type == "application/x-www-form-urlencoded"
        assert bad.body["error"] == "bad_verification_code" and "error_uri" in bad.body
        form = await client.exchange(code, verifier, accept_json=False)
        assert form.status == 200 and form.content_type == "application/x-www-form-urlencoded"
        assert form.body["access_token"].startswith("ghu_") and form.body["token_type"] == "bearer"
        assert form.body["scope"] == "gist,repo"  # comma-separated in replies [GH1]
        assert form.body["expires_in"] == "28800"
        assert form.body["refresh_token_expires_in"] == "15897600"
        refreshed = await client.refresh(form.body["refresh_token"])
        assert refreshed.content_type == "application/json"
        assert refreshed.body["refresh_token"].startswith("ghr_")
        # "that refresh token and the old user access token will no longer work" [GH2]
        old = await client.call(client.connector.tools[0], form.body["access_token"])
        assert (old.status, old.body["message"]) == (401, "Bad credentials")
        reused = await client.refresh(form.body["refresh_token"])
        assert reused.status == 200 and reused.body["error"] == "bad_refresh_token"


async def test_github_oauth_app_tokens_never_expire_and_have_no_refresh_token(
    http: aiohttp.ClientSession,
) -> None:
    oauth_app = replace(GITHUB, auth=replace(GITHUB.auth, refresh=RefreshPolicy()))
    async with SandboxProvider(oauth_app) as github:
        body = (await Client(github, http).connect()).body
        assert body["access_token"].startswith("gho_")
        assert set(body) == {"access_token", "scope", "token_type"}


async def test_salesforce_reply_has_instance_url_and_no_expires_in(
    http: aiohttp.ClientSession, clock: Clock
) -> None:
    async with SandboxProvider(SALESFORCE, clock=clock) as sf:
        client = Client(sf, http)
        client.connection = {}
        url = client.authorize_url()
        body = (await client.exchange((await client.consent(url))["code"], None)).body
        assert "expires_in" not in body and body["refresh_token"]
        assert re.fullmatch(r"https://[a-z0-9-]+\.my\.salesforce\.com", body["instance_url"])
        assert re.fullmatch(r"https://login\.salesforce\.com/id/00D\w+/005\w+", body["id"])
        assert body["issued_at"] == str(int(T0 * 1000)) and body["token_type"] == "Bearer"
        mac = hmac.new(
            sf.client_secret.encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256
        )
        assert base64.b64decode(body["signature"]) == mac.digest()
        refreshed = (await client.refresh(body["refresh_token"])).body
        assert "refresh_token" not in refreshed and "expires_in" not in refreshed
        assert refreshed["instance_url"] == body["instance_url"]  # never dropped [X-n8n-34916]
        kept = {"instance_url": body["instance_url"]}
        tool = client.connector.tools[0]
        assert (await client.call(tool, refreshed["access_token"], kept)).status == 200
        clock.now += 7200  # the session timeout (no expires_in to tell)
        expired = await client.call(tool, refreshed["access_token"], kept)
        assert expired.status == 401 and expired.body[0]["errorCode"] == "INVALID_SESSION_ID"


async def test_salesforce_issues_no_refresh_token_without_the_refresh_token_scope(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxProvider(SALESFORCE, withhold_scopes=["refresh_token"]) as sf:
        client = Client(sf, http)
        body = (await client.connect()).body
        assert "refresh_token" not in body and body["scope"] == "api"


@pytest.mark.parametrize(
    ("cid", "fields"),
    [
        ("hubspot", {"hub_id", "scopes"}),
        ("notion", {"workspace_id", "workspace_name", "bot_id", "owner", "duplicated_template_id"}),
        ("dropbox", {"account_id", "uid"}),
        ("asana", {"data"}),
        ("figma", {"user_id", "user_id_string"}),
        ("outlook", {"ext_expires_in"}),
        ("intercom", {"token"}),
        ("zendesk", {"refresh_token_expires_in"}),
        ("shopify", {"refresh_token_expires_in"}),
    ],
)
async def test_provider_specific_token_fields(
    cid: str, fields: set[str], http: aiohttp.ClientSession
) -> None:
    if cid not in CATALOG.connectors:
        pytest.skip(f"{cid} is not in the catalog")
    async with SandboxProvider(CATALOG.connectors[cid]) as provider:
        body = (await Client(provider, http).connect()).body
        assert fields <= set(body), body
        if cid == "outlook":
            assert 3600 <= body["expires_in"] <= 5400  # randomised 60-90 min [M2]
        if cid == "shopify":
            assert "token_type" not in body and body["access_token"].startswith("shpat_")


async def test_hubspot_expired_token_says_how_long_ago(
    http: aiohttp.ClientSession, clock: Clock
) -> None:
    hubspot = _connector("hubspot", "api.hubapi.com", token_path="/oauth/v1/token")
    async with SandboxProvider(hubspot, clock=clock) as provider:
        client = Client(provider, http)
        body = (await client.connect()).body
        assert body["expires_in"] == 1800 and isinstance(body["hub_id"], int)
        assert "scopes" not in body  # only the dated (2026-03) endpoints send it
        clock.now += 1800 + 42
        expired = await client.call(client.connector.tools[0], body["access_token"])
        assert expired.status == 401 and expired.body["category"] == "EXPIRED_AUTHENTICATION"
        assert "expired 42 second(s) ago" in expired.body["message"]


# --- RFC 6749 / RFC 7636 refusals -----------------------------------------------------------


async def _code(client: Client, challenge: str | None = None) -> str:
    return (await client.consent(client.authorize_url(challenge=challenge)))["code"]


@pytest.mark.parametrize(
    ("connector", "auth"),
    [
        (BASIC, "client_secret_post"),  # credentials in the body of a Basic client
        (NO_PKCE, "client_secret_basic"),  # Basic for a client_secret_post client
        (NO_PKCE, "both"),  # RFC 6749 §2.3: "MUST NOT use more than one authentication method"
        (BASIC, "both"),
        (NO_PKCE, "none"),
    ],
)
async def test_wrong_client_authentication_method_is_refused(
    connector: Connector, auth: str, http: aiohttp.ClientSession
) -> None:
    async with SandboxProvider(connector) as provider:
        client = Client(provider, http)
        code = await _code(client)
        refused = await client.exchange(code, None, auth=auth)
        assert refused.status == 401 and refused.body["error"] == "invalid_client"
        assert (await client.exchange(code, None)).status == 200  # the code was not spent


async def test_wrong_client_secret_is_invalid_client(http: aiohttp.ClientSession) -> None:
    async with SandboxProvider(BASIC) as provider:
        client = Client(provider, http)
        refused = await client.exchange(await _code(client), None, secret="not-the-secret")
        assert (refused.status, refused.body["error"]) == (401, "invalid_client")


async def test_rfc7636_4_6_verifier_mismatch_is_invalid_grant(
    plain: SandboxProvider, http: aiohttp.ClientSession
) -> None:
    client = Client(plain, http)
    verifier, challenge = _pkce()
    code = await _code(client, challenge)
    for wrong in (_pkce()[0], None, verifier[:-1] + ("A" if verifier[-1] != "A" else "B")):
        refused = await client.exchange(code, wrong)
        assert (refused.status, refused.body["error"]) == (400, "invalid_grant"), wrong
    assert (await client.exchange(code, verifier)).status == 200


async def test_pkce_downgrade_verifier_without_challenge_is_refused(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxProvider(NO_PKCE) as provider:
        client = Client(provider, http)
        refused = await client.exchange(await _code(client), _pkce()[0])
        assert (refused.status, refused.body["error"]) == (400, "invalid_grant")


async def test_pkce_required_and_s256_only(
    plain: SandboxProvider, http: aiohttp.ClientSession
) -> None:
    client = Client(plain, http)
    with_pkce = client.authorize_url(challenge="x" * 43)
    without = re.sub(r"&code_challenge(_method)?=[^&]*", "", with_pkce)
    for url in (without, with_pkce.replace("S256", "plain")):
        async with http.get(url, allow_redirects=False) as resp:
            assert resp.status == 302
            reply = dict(parse_qsl(urlsplit(resp.headers["Location"]).query))
        assert reply["error"] == "invalid_request" and reply["state"] == "st-1"


async def test_rfc6749_4_1_2_code_replay_is_invalid_grant_and_revokes_its_tokens(
    plain: SandboxProvider, http: aiohttp.ClientSession
) -> None:
    client = Client(plain, http)
    verifier, challenge = _pkce()
    code = await _code(client, challenge)
    first = await client.exchange(code, verifier)
    assert first.status == 200
    replay = await client.exchange(code, verifier)
    assert (replay.status, replay.body["error"]) == (400, "invalid_grant")
    assert plain.token_state(first.body["access_token"]) == "revoked"
    assert (await client.refresh(first.body["refresh_token"])).body["error"] == "invalid_grant"


async def test_rfc6749_4_1_3_redirect_uri_mismatch_is_invalid_grant(
    plain: SandboxProvider, http: aiohttp.ClientSession
) -> None:
    client = Client(plain, http)
    verifier, challenge = _pkce()
    code = await _code(client, challenge)
    for redirect in ("https://cp.example/oauth/other", None):
        params = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
        if redirect:
            params["redirect_uri"] = redirect
        refused = await client.token(params)
        assert (refused.status, refused.body["error"]) == (400, "invalid_grant")
    assert (await client.exchange(code, verifier)).status == 200


async def test_expired_code_is_invalid_grant(
    plain: SandboxProvider, http: aiohttp.ClientSession, clock: Clock
) -> None:
    client = Client(plain, http)
    verifier, challenge = _pkce()
    code = await _code(client, challenge)
    clock.now += 600
    assert (await client.exchange(code, verifier)).body["error"] == "invalid_grant"


async def test_deny_redirects_with_access_denied_and_iss(http: aiohttp.ClientSession) -> None:
    gmail = _connector(
        "gmail", "accounts.google.com", sends_iss=True, issuer="https://accounts.google.com"
    )
    async with SandboxProvider(gmail) as provider:
        client = Client(provider, http)
        reply = await client.consent(client.authorize_url(state="s/1 2"), decision="deny")
        assert reply["error"] == "access_denied" and reply["state"] == "s/1 2"
        assert reply["iss"] == provider.base_url + "/accounts.google.com"
        assert reply["iss"] == client.connector.auth.issuer
        assert "code" not in reply


@pytest.mark.parametrize("problem", ["client_id", "redirect_uri"])
async def test_rfc6749_4_1_2_1_bad_client_or_redirect_is_not_redirected(
    problem: str, http: aiohttp.ClientSession
) -> None:
    async with SandboxProvider(PLAIN, redirect_uris=[REDIRECT]) as provider:
        client = Client(provider, http)
        kw = (
            {"client_id": "someone-else"}
            if problem == "client_id"
            else {"redirect": "https://evil.example/cb"}
        )
        async with http.get(
            client.authorize_url(challenge=_pkce()[1], **kw), allow_redirects=False
        ) as resp:
            assert resp.status == 400 and "Location" not in resp.headers
            assert resp.content_type == "text/html"


async def test_consent_ticket_is_single_use(
    plain: SandboxProvider, http: aiohttp.ClientSession
) -> None:
    client = Client(plain, http)
    url = client.authorize_url(challenge=_pkce()[1])
    async with http.get(url) as resp:
        ticket = re.search(r'name="consent" value="([^"]+)"', await resp.text())
    assert ticket is not None
    action = urljoin(url, urlsplit(url).path)
    for expected in (302, 400):
        data = {"consent": ticket.group(1), "decision": "allow"}
        async with http.post(action, data=data, allow_redirects=False) as resp:
            assert resp.status == expected


async def test_token_request_format_is_enforced(http: aiohttp.ClientSession) -> None:
    async with SandboxProvider(JSON_BODY) as provider:
        client = Client(provider, http)
        code = await _code(client)
        refused = await client.exchange(code, None, fmt="form")
        assert (refused.status, refused.body["error"]) == (400, "invalid_request")
        assert (await client.exchange(code, None)).status == 200


# --- refresh-token policies ----------------------------------------------------------------


def _with_refresh(connector: Connector, **policy: Any) -> Connector:
    return replace(
        connector, auth=replace(connector.auth, refresh=RefreshPolicy(supported=True, **policy))
    )


async def test_rotating_but_not_single_use_keeps_old_refresh_tokens(
    http: aiohttp.ClientSession,
) -> None:
    outlook = _with_refresh(_connector("outlook", "login.microsoftonline.com"), rotating=True)
    async with SandboxProvider(outlook) as provider:
        client = Client(provider, http)
        first = (await client.connect()).body["refresh_token"]
        second = (await client.refresh(first)).body["refresh_token"]
        assert second != first
        # "The Microsoft identity platform doesn't revoke old refresh tokens" [M1]
        assert (await client.refresh(first)).status == 200


async def test_microsoft_access_tokens_live_a_random_60_to_90_minutes(
    http: aiohttp.ClientSession, clock: Clock
) -> None:
    outlook = _with_refresh(_connector("outlook", "login.microsoftonline.com"), rotating=True)
    async with SandboxProvider(outlook, clock=clock) as provider:
        client = Client(provider, http)
        body = (await client.connect()).body
        lifetimes, refresh_tokens = set(), {body["refresh_token"]}
        for _ in range(20):
            body = (await client.refresh(body["refresh_token"])).body
            assert 3600 <= body["expires_in"] <= 5400  # [M2]
            assert body["ext_expires_in"] == body["expires_in"]
            lifetimes.add(body["expires_in"])
            refresh_tokens.add(body["refresh_token"])
        assert len(lifetimes) > 1  # random, not a fixed 75 min
        assert len(refresh_tokens) == 21  # a new one on every use [M1]
        tool = client.connector.tools[0]
        clock.now += body["expires_in"] - 1
        assert (await client.call(tool, body["access_token"])).status == 200
        clock.now += 1
        expired = await client.call(tool, body["access_token"])
        assert expired.status == 401
        assert expired.body["error"]["code"] == "InvalidAuthenticationToken"


async def test_single_use_reuse_within_the_leeway_is_accepted(
    http: aiohttp.ClientSession, clock: Clock
) -> None:
    connector = _with_refresh(PLAIN, rotating=True, single_use=True, reuse_leeway_seconds=600)
    async with SandboxProvider(connector, clock=clock) as provider:
        client = Client(provider, http)
        first = (await client.connect()).body["refresh_token"]
        assert (await client.refresh(first)).status == 200
        clock.now += 599
        assert (await client.refresh(first)).status == 200
        clock.now += 1
        assert (await client.refresh(first)).body["error"] == "invalid_grant"


async def test_atlassian_reuse_outside_the_leeway_revokes_the_family(
    http: aiohttp.ClientSession, clock: Clock
) -> None:
    jira = _with_refresh(_connector("jira", "auth.atlassian.com"), rotating=True, single_use=True,
                         reuse_leeway_seconds=600)  # fmt: skip
    async with SandboxProvider(jira, clock=clock) as provider:
        client = Client(provider, http)
        first = (await client.connect()).body["refresh_token"]
        newest = (await client.refresh(first)).body
        clock.now += 601
        reused = await client.refresh(first)
        assert (reused.status, reused.body["error"]) == (403, "invalid_grant")
        assert provider.token_state(newest["access_token"]) == "revoked"
        family = await client.refresh(newest["refresh_token"])
        assert family.status == 403  # the whole family is gone [A2]


@pytest.mark.parametrize("cid", ["zendesk", "zoom"])
async def test_zendesk_and_zoom_refresh_tokens_are_single_use_without_grace(
    cid: str, http: aiohttp.ClientSession
) -> None:
    connector = CATALOG.connectors.get(cid) or pytest.skip(f"no {cid} connector")
    policy = connector.auth.refresh
    assert policy.rotating and policy.single_use and policy.reuse_leeway_seconds == 0  # [Z2][ZM2]
    async with SandboxProvider(connector) as provider:
        client = Client(provider, http)
        first = (await client.connect()).body
        second = await client.refresh(first["refresh_token"])
        assert second.status == 200 and second.body["refresh_token"] != first["refresh_token"]
        reused = await client.refresh(first["refresh_token"])  # at once: no leeway
        default = (400, {"error": "invalid_grant"})
        status, shape = REFRESH_REFUSED.get(provider.profile.name, default)
        assert reused.status == status and _contains(reused.body, shape), reused.body
        if cid == "zendesk":  # "...and deletes the previous access and refresh token" [Z2]
            assert provider.token_state(first["access_token"]) == "revoked"


async def test_refresh_token_inactivity_expiry(http: aiohttp.ClientSession, clock: Clock) -> None:
    gmail = _with_refresh(_connector("gmail", "oauth2.googleapis.com"), inactivity_expiry_days=180)
    async with SandboxProvider(gmail, clock=clock) as provider:
        client = Client(provider, http)
        url = client.authorize_url() + "&access_type=offline"
        body = (await client.exchange((await client.consent(url))["code"], None)).body
        clock.now += 180 * 86400 + 1
        refused = await client.refresh(body["refresh_token"])
        assert refused.body == {
            "error": "invalid_grant",
            "error_description": "Token has been expired or revoked.",
        }


async def test_google_issues_no_refresh_token_without_access_type_offline(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxProvider(_connector("gmail", "oauth2.googleapis.com")) as provider:
        body = (await Client(provider, http).connect()).body
        assert "refresh_token" not in body and body["expires_in"] == 3599


GMAIL_READ = "https://www.googleapis.com/auth/gmail.readonly"
GOOGLE_REFRESH_REFUSED = {
    "error": "invalid_grant",
    "error_description": "Token has been expired or revoked.",
}


def _google(*scopes: str) -> Connector:
    return _connector(
        "gmail", "oauth2.googleapis.com", scopes=scopes, authorize_params={"access_type": "offline"}
    )


def test_google_caps_live_refresh_tokens_at_100_by_default() -> None:
    assert PROFILES["gmail"].refresh_token_cap == 100  # [G1]
    assert SandboxProvider(_google(GMAIL_READ)).refresh_token_cap == 100
    assert SandboxProvider(_google(GMAIL_READ), refresh_token_cap=3).refresh_token_cap == 3
    assert SandboxProvider(PLAIN).refresh_token_cap is None


async def test_google_refresh_token_over_the_cap_silently_revokes_the_oldest(
    http: aiohttp.ClientSession,
) -> None:
    """[G1] "creating a new refresh token automatically invalidates the oldest refresh
    token without warning" (100 per account and client; 3 here)."""
    async with SandboxProvider(_google(GMAIL_READ), refresh_token_cap=3) as google:
        client = Client(google, http)
        rts = [(await client.connect()).body["refresh_token"] for _ in range(3)]
        for rt in rts:  # a Google refresh issues no refresh token: nobody is pushed out
            assert (await client.refresh(rt)).status == 200
        fourth = await client.connect()
        assert fourth.status == 200  # without warning
        rts.append(fourth.body["refresh_token"])
        assert [google.token_state(rt) for rt in rts] == ["revoked", "live", "live", "live"]
        refused = await client.refresh(rts[0])
        assert (refused.status, refused.body) == (400, GOOGLE_REFRESH_REFUSED)
        # only live tokens count: after a revocation the next one pushes nobody out
        async with http.post(client.connector.auth.revoke_url, data={"token": rts[1]}) as resp:
            assert resp.status == 200
        rts.append((await client.connect()).body["refresh_token"])
        states = [google.token_state(rt) for rt in rts]
        assert states == ["revoked", "revoked", "live", "live", "live"]


USERINFO = (
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
)


@pytest.mark.parametrize(
    ("scopes", "testing_mode", "expires"),
    [
        ((GMAIL_READ,), True, True),
        (("openid", "email", GMAIL_READ), True, True),
        (("openid", "email", "profile"), True, False),  # sign-in scopes only
        (("openid", *USERINFO), True, False),
        ((GMAIL_READ,), False, False),  # in production
    ],
)
async def test_google_testing_mode_refresh_tokens_expire_in_7_days(
    scopes: tuple[str, ...], testing_mode: bool, expires: bool,
    http: aiohttp.ClientSession, clock: Clock,
) -> None:  # fmt: skip
    """[G1] Testing publishing status + External user type: a refresh token "expiring in
    7 days, unless the only OAuth scopes requested are a subset of name, email address,
    and user profile"."""
    async with SandboxProvider(_google(*scopes), clock=clock, testing_mode=testing_mode) as google:
        client = Client(google, http)
        rt = (await client.connect()).body["refresh_token"]
        clock.now += 7 * 86400 - 1
        assert (await client.refresh(rt)).status == 200
        clock.now += 1
        reply = await client.refresh(rt)
        if expires:
            assert (reply.status, reply.body) == (400, GOOGLE_REFRESH_REFUSED)
        else:
            assert reply.status == 200, reply.body


async def test_refresh_may_narrow_but_not_widen_the_scope(http: aiohttp.ClientSession) -> None:
    wide = replace(PLAIN, tools=(replace(PLAIN.tools[0], scopes=("read", "write")),))
    async with SandboxProvider(wide) as provider:
        client = Client(provider, http)
        rt = (await client.connect()).body["refresh_token"]
        params = {"grant_type": "refresh_token", "refresh_token": rt}
        narrowed = await client.token({**params, "scope": "read"})
        assert narrowed.status == 200 and narrowed.body["scope"] == "read"
        widened = await client.token({**params, "scope": "read admin"})
        assert (widened.status, widened.body["error"]) == (400, "invalid_scope")


# --- resource API, revocation, connection binding -------------------------------------------


async def test_withheld_scope_gets_the_providers_insufficient_scope_reply(
    http: aiohttp.ClientSession,
) -> None:
    gmail = CATALOG.connectors["gmail"]
    async with SandboxProvider(
        gmail, withhold_scopes=["https://www.googleapis.com/auth/gmail.send"]
    ) as provider:
        client = Client(provider, http)
        access, _ = _tokens((await client.connect()).body)
        assert access
        send = client.connector.tool("gmail.send_message")
        assert send is not None
        refused = await client.call(send, access)
        assert refused.status == 403 and "insufficient_scope" in refused.headers["WWW-Authenticate"]
        verdict = _classify(gmail.errors, "api", refused)
        assert verdict == "insufficient_scope"


async def test_revocation_ends_the_grant(
    plain: SandboxProvider, http: aiohttp.ClientSession
) -> None:
    client = Client(plain, http)
    body = (await client.connect()).body
    async with http.post(
        client.connector.auth.revoke_url, data={"token": body["refresh_token"]}
    ) as resp:
        assert resp.status == 200  # RFC 7009 §2.2
    tool = client.connector.tools[0]
    refused = await client.call(tool, body["access_token"])
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"].endswith('error="invalid_token"')
    assert (await client.refresh(body["refresh_token"])).body["error"] == "invalid_grant"


async def test_revoke_all_is_an_uninstall(
    plain: SandboxProvider, http: aiohttp.ClientSession
) -> None:
    client = Client(plain, http)
    body = (await client.connect()).body
    plain.revoke_all()
    assert {plain.token_state(t.value) for t in plain.issued} == {"revoked"}
    assert (await client.call(client.connector.tools[0], body["access_token"])).status == 401


async def test_tokens_are_bound_to_the_connection_host(http: aiohttp.ClientSession) -> None:
    zendesk = CATALOG.connectors.get("zendesk") or pytest.skip("no zendesk connector")
    async with SandboxProvider(zendesk) as provider:
        client = Client(provider, http)
        verifier, challenge = _pkce() if zendesk.auth.pkce else (None, None)
        code = await _code(client, challenge)
        client.connection = {"subdomain": "other"}
        refused = await client.exchange(code, verifier)
        assert (refused.status, refused.body["error"]) == (400, "invalid_grant")
        client.connection = {"subdomain": "acme"}
        access, _ = _tokens((await client.exchange(code, verifier)).body)
        assert access
        tool = _probe_tool(client.connector)
        assert (await client.call(tool, access)).status == 200
        elsewhere = await client.call(tool, access, connection={"subdomain": "other"})
        assert (elsewhere.status, elsewhere.body["error"]) == (401, "invalid_token")


async def test_unknown_path_is_404_and_wrong_method_405(
    plain: SandboxProvider, http: aiohttp.ClientSession
) -> None:
    async with http.get(plain.base_url + "/api.auth.acme.example/v2/nothing") as resp:
        assert resp.status == 404
    async with http.delete(plain.base_url + "/api.auth.acme.example/v1/things/1") as resp:
        assert resp.status == 405
    async with http.get(plain.sandbox_url(PLAIN.auth.token_url)) as resp:
        assert resp.status == 405


async def test_responses_override_the_default_body(
    plain: SandboxProvider, http: aiohttp.ClientSession
) -> None:
    client = Client(plain, http)
    access = (await client.connect()).body["access_token"]
    plain.responses["acme.get_thing"] = lambda query, body: {"query": dict(query)}
    tool = client.connector.tools[0]
    tool = replace(tool, http=replace(tool.http, url=tool.http.url + "?x=1"))
    assert (await client.call(tool, access)).body == {"query": {"x": "1"}}
    assert plain.requests[-1].url == "https://api.auth.acme.example/v1/things/abc123?x=1"


async def test_sandbox_url_mapping(plain: SandboxProvider) -> None:
    base = plain.base_url
    assert base.startswith("http://127.0.0.1:")
    assert plain.sandbox_url("https://a.example/x/y?z=1") == base + "/a.example/x/y?z=1"
    assert plain.sandbox_url("https://{connection.shop}.myshopify.com/admin") == (
        base + "/{connection.shop}.myshopify.com/admin"
    )
    assert plain.sandbox_url("{connection.instance_url}/x") == "{connection.instance_url}/x"
    with pytest.raises(ValueError, match="not an https URL"):
        plain.sandbox_url("http://a.example/")


def test_only_oauth2_connectors_and_no_url_before_start() -> None:
    with pytest.raises(ValueError, match="not an OAuth 2.0 connector"):
        SandboxProvider(replace(PLAIN, auth=AuthSpec(type="api_key")))
    with pytest.raises(RuntimeError):
        SandboxProvider(PLAIN).sandbox_url("https://a.example/")


# --- faults -------------------------------------------------------------------------------


async def test_fault_next_token_status_and_garbage_body(
    plain: SandboxProvider, http: aiohttp.ClientSession
) -> None:
    client = Client(plain, http)
    rt = (await client.connect()).body["refresh_token"]
    plain.faults.next_token_status = 503
    plain.faults.retry_after = 7
    unavailable = await client.refresh(rt)
    assert unavailable.status == 503 and unavailable.body == {"error": "temporarily_unavailable"}
    assert unavailable.headers["Retry-After"] == "7"
    plain.faults.garbage_body = True
    garbage = await client.refresh(rt)
    assert garbage.status == 200 and garbage.content_type == "text/html"
    assert (await client.refresh(rt)).status == 200  # both were one-shot


async def test_fault_drop_connection_changes_nothing(
    plain: SandboxProvider, http: aiohttp.ClientSession
) -> None:
    client = Client(plain, http)
    verifier, challenge = _pkce()
    code = await _code(client, challenge)
    plain.faults.drop_connection = True
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.exchange(code, verifier)
    assert (await client.exchange(code, verifier)).status == 200


async def test_fault_lose_response_after_rotating(http: aiohttp.ClientSession) -> None:
    """The lost reply still rotated the token: the client must re-read, not retry blindly."""
    connector = _with_refresh(PLAIN, rotating=True, single_use=True)
    async with SandboxProvider(connector) as provider:
        client = Client(provider, http)
        rt = (await client.connect()).body["refresh_token"]
        provider.faults.lose_response = True
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await client.refresh(rt)
        assert provider.issued[-1].kind == "refresh" and provider.issued[-1].value != rt
        assert (await client.refresh(rt)).body["error"] == "invalid_grant"


async def test_fault_delay_and_api_rate_limit(http: aiohttp.ClientSession) -> None:
    async with SandboxProvider(SLACK) as slack:
        client = Client(slack, http)
        access, _ = _tokens((await client.connect()).body)
        assert access
        slack.faults.next_api_status = 429
        slack.faults.retry_after = 30
        limited = await client.call(client.connector.tools[0], access)
        assert (limited.status, limited.body) == (429, {"ok": False, "error": "ratelimited"})
        assert limited.headers["Retry-After"] == "30"
        slack.faults.delay = 0.3
        started = asyncio.get_running_loop().time()
        assert (await client.call(client.connector.tools[0], access)).status == 200
        assert asyncio.get_running_loop().time() - started >= 0.3


# --- the CLI --------------------------------------------------------------------------------


@pytest.mark.slow
async def test_cli_serves_a_connector_and_prints_its_client(http: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "control_plane.sandbox", "oauth", "gmail", "--port", "0",
        "--client-id", "cli-client", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        lines: dict[str, str] = {}
        while "client_secret" not in lines:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
            assert line, "the sandbox exited early"
            name, _, value = line.decode().strip().partition(": ")
            lines[name] = value
        assert lines["connector"] == "gmail" and lines["client_id"] == "cli-client"
        assert lines["token"] == lines["base_url"] + "/oauth2.googleapis.com/token"
        async with http.get(lines["authorize"] + "?client_id=cli-client") as resp:
            assert resp.status == 400  # no redirect_uri: an error page, served
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), timeout=20)
        assert proc.returncode == 0 and b"test emulator" in err
        assert lines["client_secret"].encode() not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


def test_cli_refuses_a_non_oauth_connector(capsys: pytest.CaptureFixture[str]) -> None:
    from control_plane.sandbox.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["oauth", "no_such_connector", "--port", "0"])
    assert exited.value.code == 2 and "unknown OAuth 2.0 connector" in capsys.readouterr().err


async def test_shopify_reads_the_token_from_its_own_header_only(
    http: aiohttp.ClientSession,
) -> None:
    shopify = CATALOG.connectors["shopify"]
    async with SandboxProvider(shopify) as provider:
        client = Client(provider, http)
        access, _ = _tokens((await client.connect()).body)
        assert access
        tool = client.connector.tool("shopify.get_product")
        assert tool is not None
        url = fill_connection(tool.http.url, client.connection).replace("{product_id}", "1")
        async with http.get(url, headers={"X-Shopify-Access-Token": access}) as resp:
            assert resp.status == 200
        assert provider.requests[-1].headers["X-Shopify-Access-Token"] == "[redacted]"
        async with http.get(url, headers={"Authorization": f"Bearer {access}"}) as resp:
            assert resp.status == 401  # not where Shopify reads it
            assert "Invalid API key or access token" in (await resp.json())["errors"]


async def test_salesforce_api_host_is_the_kept_instance_url_host(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxProvider(CATALOG.connectors["salesforce"]) as sf:
        client = Client(sf, http)
        body = (await client.connect()).body
        tool = client.connector.tool("salesforce.query")
        assert tool is not None
        url = fill_connection(tool.http.url, {"instance_url": body["instance_url"]})
        host = urlsplit(body["instance_url"]).netloc
        assert url == f"{sf.base_url}/{host}/services/data/v62.0/query"
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        async with http.get(url, params={"q": "SELECT Id FROM Account"}, headers=headers) as resp:
            assert resp.status == 200
        assert sf.requests[-1].tool == "salesforce.query"
        assert sf.requests[-1].url.startswith(f"https://{host}/services/data/v62.0/query")
        # the token is bound to its org's instance: another host is refused
        other = url.replace(host, "other-org.my.salesforce.com")
        async with http.get(other, headers=headers) as resp:
            assert resp.status == 401


async def test_linear_graphql_document_names_the_tool(http: aiohttp.ClientSession) -> None:
    async with SandboxProvider(CATALOG.connectors["linear"]) as linear:
        client = Client(linear, http)
        access, _ = _tokens((await client.connect()).body)
        headers = {"Authorization": f"Bearer {access}"}
        for tool in client.connector.tools:
            assert tool.http.graphql is not None
            doc = {"query": tool.http.graphql.query, "variables": {}}
            async with http.post(tool.http.url, json=doc, headers=headers) as resp:
                assert resp.status == 200
                assert (await resp.json())["data"]["tool"] == tool.name
            assert linear.requests[-1].tool == tool.name


@pytest.mark.parametrize("cid", ["dropbox", "github", "notion", "zoom"])
async def test_provider_specific_revocation_ends_the_grant(
    cid: str, http: aiohttp.ClientSession
) -> None:
    """The vault's own revocation call, as each connector describes it, against the emulator."""
    from control_plane.vault.oauth_client import revoke_token

    connector = CATALOG.connectors[cid]
    how = connector.auth.revocation
    assert how.explicit
    async with SandboxProvider(connector) as provider:
        client = Client(provider, http)
        access, refresh = _tokens((await client.connect()).body)
        assert access
        url = fill_connection(client.connector.auth.revoke_url, client.connection)
        token, hint = (access, "access_token")
        if how.token == "refresh_first" and refresh:
            token, hint = refresh, "refresh_token"
        if how.auth != "bearer":  # a wrong client secret changes nothing
            status = await revoke_token(
                http, client.connector, url, provider.client_id, "wrong", token, hint
            )
            assert status == 401 and provider.token_state(access) == "live"
        status = await revoke_token(
            http, client.connector, url, provider.client_id, provider.client_secret, token, hint
        )
        assert status is not None and 200 <= status < 300
        assert provider.token_state(access) == "revoked"
        if refresh:
            assert provider.token_state(refresh) == "revoked"
        tool = _probe_tool(client.connector)
        assert (await client.call(tool, access)).status in (401, 403)


async def test_github_revocation_is_a_delete_under_the_apps_own_client_id(
    http: aiohttp.ClientSession,
) -> None:
    async with SandboxProvider(CATALOG.connectors["github"]) as gh:
        client = Client(gh, http)
        access, _ = _tokens((await client.connect()).body)
        url = client.connector.auth.revoke_url
        auth = {"Authorization": _basic(gh.client_id, gh.client_secret)}
        async with http.post(url.replace("{client_id}", gh.client_id), headers=auth,
                             json={"access_token": access}) as resp:  # fmt: skip
            assert resp.status == 405
        async with http.delete(url.replace("{client_id}", "someone-else"), headers=auth,
                               json={"access_token": access}) as resp:  # fmt: skip
            assert resp.status == 404
        assert gh.token_state(access or "") == "live"
        async with http.delete(url.replace("{client_id}", gh.client_id), headers=auth,
                               json={"access_token": access}) as resp:  # fmt: skip
            assert resp.status == 204
        assert gh.token_state(access or "") == "revoked"
