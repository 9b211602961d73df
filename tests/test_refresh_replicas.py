"""Refresh across real replicas: three `serve` processes on one PostgreSQL, in sandbox
mode against a loopback Slack (single-use rotating refresh tokens) or Gmail."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from agentauth import ControlPlaneClient
from agentauth.v1 import admin_pb2 as apb
from agentauth.v1 import connection_pb2 as pb

from bench._harness import Replica, cluster_on_postgres
from control_plane.connectors.loader import load_catalog
from control_plane.sandbox.oauth_provider import SandboxProvider
from tests.api.connect_helpers import browser, consent, finish, start
from tests.conftest import PG_ADMIN_URL, REQUIRE_PG, _pg_reachable

pytestmark = pytest.mark.slow
LEASE_SECONDS = 3


def _need_pg() -> None:
    problem = _pg_reachable()
    if problem is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL required but unreachable: {problem}")
        pytest.skip("needs PostgreSQL")


class World:
    def __init__(self, replicas: list[Replica], key: str, provider: SandboxProvider) -> None:
        self.replicas = replicas
        self.key = key
        self.provider = provider
        self.clients: list[ControlPlaneClient] = []

    def client(self, i: int, key: str | None = None) -> ControlPlaneClient:
        c = ControlPlaneClient(self.replicas[i].target, key or self.key, timeout=60)
        self.clients.append(c)
        return c

    def sql(self, statement: str, *params: Any) -> Any:
        url = self.replicas[0].database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    async def connected_account(self, connector: str) -> tuple[str, ControlPlaneClient]:
        plat = self.client(0)
        org = (await plat.admin.CreateOrganization(apb.CreateOrganizationRequest(
            organization=apb.Organization(display_name="Refresh")))).organization.name
        key = (await plat.admin.CreateApiKey(apb.CreateApiKeyRequest(
            parent=org, api_key=apb.ApiKey(display_name="admin")))).secret
        admin = self.client(0, key)
        user = (await admin.admin.CreateUser(apb.CreateUserRequest(
            parent=org, user=apb.User(external_id="u")))).user.name
        await admin.connections.UpdateConnectorConfig(pb.UpdateConnectorConfigRequest(
            name=f"{org}/connectors/{connector}", enabled=True))
        await admin.connections.SetOAuthApp(pb.SetOAuthAppRequest(oauth_app=pb.OAuthApp(
            name=f"{org}/oauthApps/{connector}", client_id=self.provider.client_id,
            client_secret=self.provider.client_secret)))
        acct = (await admin.connections.CreateConnectedAccount(pb.CreateConnectedAccountRequest(
            parent=org, connected_account=pb.ConnectedAccount(
                connector=connector, owner=user)))).connected_account
        link = (await admin.connections.GetAuthorizationLink(
            pb.GetAuthorizationLinkRequest(name=acct.name))).url
        async with browser() as b:
            done = await consent(b, await start(b, link))
            status, _ = await finish(b, done)
        assert status == 200
        return acct.name, admin

    def expire(self) -> None:
        self.sql("UPDATE connected_accounts SET access_expire_time = %s",
                 dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))

    def access_tokens(self) -> int:
        return len([t for t in self.provider.issued if t.kind == "access"])


async def _world(connector: str) -> AsyncIterator[World]:
    _need_pg()
    real = load_catalog().connectors[connector]
    async with SandboxProvider(real, client_id="replica-client",
                               client_secret="replica-secret-0123456789") as provider:
        env = {"AGENTAUTH_SANDBOX_URL": provider.base_url,
               "AGENTAUTH_REFRESH_LEASE_SECONDS": str(LEASE_SECONDS)}
        with cluster_on_postgres(PG_ADMIN_URL, replicas=3, extra_env=env) as (replicas, key):
            w = World(replicas, key, provider)
            try:
                yield w
            finally:
                for c in w.clients:
                    await c.close()


@pytest.fixture
async def slack() -> AsyncIterator[World]:
    async for w in _world("slack"):
        yield w


@pytest.fixture
async def gmail() -> AsyncIterator[World]:
    async for w in _world("gmail"):
        yield w


async def test_500_callers_on_3_replicas_cause_exactly_one_refresh(slack: World) -> None:
    name, _ = await slack.connected_account("slack")
    key = slack.key
    org_admins = [slack.client(i, key) for i in range(3)]
    # The org's admin key works on every replica; use the platform key for simplicity.
    slack.expire()
    before = slack.access_tokens()

    async def call(i: int) -> Any:
        return (await org_admins[i % 3].connections.RefreshConnectedAccount(
            pb.RefreshConnectedAccountRequest(name=name))).connected_account

    results = await asyncio.gather(*(call(i) for i in range(500)))
    assert slack.access_tokens() == before + 1  # exactly one refresh reached Slack
    assert {r.access_expire_time.ToSeconds() for r in results} == {
        results[0].access_expire_time.ToSeconds()}
    assert all(r.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE for r in results)
    [(version,)] = slack.sql("SELECT secret_version FROM connected_accounts")
    assert version == 2
    # Slack's refresh tokens are single use: had anyone reused one, the grant would
    # be revoked and the next refresh refused.
    forced = await org_admins[1].connections.RefreshConnectedAccount(
        pb.RefreshConnectedAccountRequest(name=name, force=True))
    assert forced.connected_account.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE
    assert slack.access_tokens() == before + 2


async def test_a_replica_killed_holding_the_lease_does_not_lock_out(gmail: World) -> None:
    name, _ = await gmail.connected_account("gmail")
    gmail.expire()
    gmail.provider.faults.delay = 2.0  # the refresh hangs while replica 0 holds the lease
    doomed = gmail.client(0)
    pending = asyncio.ensure_future(doomed.connections.RefreshConnectedAccount(
        pb.RefreshConnectedAccountRequest(name=name)))
    for _ in range(100):
        [(lease,)] = gmail.sql("SELECT refresh_lease_until FROM connected_accounts")
        if lease is not None:
            break
        await asyncio.sleep(0.05)
    assert lease is not None
    proc = gmail.replicas[0].proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    gmail.provider.faults.delay = 0.0
    with pytest.raises(Exception):  # the caller of the dead replica sees the connection drop
        await pending
    survivor = gmail.client(1)
    got = await asyncio.wait_for(survivor.connections.RefreshConnectedAccount(
        pb.RefreshConnectedAccountRequest(name=name)), LEASE_SECONDS + 30)
    assert got.connected_account.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE
    [(version, lease)] = gmail.sql(
        "SELECT secret_version, refresh_lease_until FROM connected_accounts")
    assert version == 2 and lease is None
