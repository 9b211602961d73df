"""Scaffolding for connect-flow tests: an org whose connector points at a sandbox provider."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from agentauth.v1 import connection_pb2 as pb

from control_plane.sandbox.oauth_provider import SandboxProvider

CANARY_CLIENT_SECRET = "canary-oauth-client-secret-0b9e7d"


@dataclass
class ConnectWorld:
    harness: Any
    org: str
    admin: Any
    names: dict[str, str]
    provider: SandboxProvider
    connector_id: str

    async def account(self, **kw: Any) -> Any:
        return (
            await self.admin.connections.CreateConnectedAccount(
                pb.CreateConnectedAccountRequest(
                    parent=self.org,
                    connected_account=pb.ConnectedAccount(
                        connector=self.connector_id, owner=self.names["user"], **kw
                    ),
                )
            )
        ).connected_account

    async def link(self, account: Any) -> str:
        resp = await self.admin.connections.GetAuthorizationLink(
            pb.GetAuthorizationLinkRequest(name=account.name)
        )
        return str(resp.url)

    async def get(self, name: str) -> Any:
        return (
            await self.admin.connections.GetConnectedAccount(
                pb.GetConnectedAccountRequest(name=name)
            )
        ).connected_account


@contextlib.asynccontextmanager
async def connect_world(
    harness: Any, connector_id: str = "gmail", **provider_options: Any
) -> AsyncIterator[ConnectWorld]:
    org, admin, _ = await harness.new_org()
    names = await harness.populate(org, admin)
    real = harness.runtime.catalog.connectors[connector_id]
    async with SandboxProvider(
        real,
        client_id="sandbox-client",
        client_secret=CANARY_CLIENT_SECRET,
        redirect_uris=[harness.http + "/oauth/callback"],
        **provider_options,
    ) as provider:
        # This runtime's catalog only (each runtime gets its own mapping).
        harness.runtime.catalog.connectors[connector_id] = provider.connector_for_sandbox()
        await admin.connections.UpdateConnectorConfig(
            pb.UpdateConnectorConfigRequest(
                name=f"{org}/connectors/{connector_id}", enabled=True
            )
        )
        await admin.connections.SetOAuthApp(
            pb.SetOAuthAppRequest(
                oauth_app=pb.OAuthApp(
                    name=f"{org}/oauthApps/{connector_id}",
                    client_id="sandbox-client",
                    client_secret=CANARY_CLIENT_SECRET,
                )
            )
        )
        yield ConnectWorld(harness, org, admin, names, provider, connector_id)


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="?{name}"? value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def browser() -> aiohttp.ClientSession:
    """A cookie-keeping client that follows no redirects by itself."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


@dataclass
class Redirect:
    url: str
    query: dict[str, str]


async def start(session: aiohttp.ClientSession, link: str) -> str:
    """Open the link and press Continue: the provider's authorization URL."""
    async with session.get(link) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        page = await resp.text()
    async with session.post(link, data={"csrf": hidden(page, "csrf")}, allow_redirects=False) as r:
        assert r.status == 303, await r.text()
        return str(r.headers["Location"])


async def consent(session: aiohttp.ClientSession, authorize_url: str, decision: str = "allow") -> Redirect:
    """At the sandbox provider: see the consent page, decide; where it sends the browser."""
    async with session.get(authorize_url) as resp:
        assert resp.status == 200, await resp.text()
        page = await resp.text()
    action = re.search(r'<form method="post" action="([^"]+)"', page)
    assert action
    base = urlsplit(authorize_url)
    target = f"{base.scheme}://{base.netloc}{action.group(1)}"
    form = {"consent": hidden(page, "consent"), "decision": decision}
    async with session.post(target, data=form, allow_redirects=False) as r:
        assert r.status == 302
        location = str(r.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    return Redirect(location, query)


async def finish(session: aiohttp.ClientSession, redirect: Redirect) -> tuple[int, str]:
    async with session.get(redirect.url, allow_redirects=False) as resp:
        for header in ("Referrer-Policy", "Cache-Control", "Content-Security-Policy"):
            assert header in resp.headers
        return resp.status, await resp.text()
