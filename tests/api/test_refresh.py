"""The refresh coordinator against sandbox providers, on each database backend.

Replicas are modelled as coordinators with their own database engine and HTTP
session on the same database (the cross-process test comes with ExecuteTool).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import aiohttp
import pytest
from sqlalchemy import text

from control_plane.clock import Clock
from control_plane.connectors.loader import load_catalog
from control_plane.domain.errors import FailedPrecondition, Unavailable
from control_plane.storage.db import Database
from control_plane.tracing import Tracing
from control_plane.vault.credentials import OAuthApps
from control_plane.vault.refresh import RefreshCoordinator, RefreshEvent
from tests.api.connect_helpers import browser, connect_world, consent, finish, start
from tests.scopes import scope


async def _connect(w: Any) -> str:
    acct = await w.account()
    async with browser() as b:
        done = await consent(b, await start(b, await w.link(acct)))
        status, _ = await finish(b, done)
    assert status == 200
    return str(acct.name.rsplit("/", 1)[1])


async def _sql(harness: Any, statement: str, **params: Any) -> Any:
    owner = Database(harness.database_url, app_role=None)
    try:
        async with owner.engine.begin() as conn:
            result = await conn.execute(text(statement), params)
            return result.all() if result.returns_rows else []
    finally:
        await owner.dispose()


async def _expire(harness: Any) -> None:
    await _sql(harness, "UPDATE connected_accounts SET access_expire_time = :t",
               t=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))


class Replica:
    """A coordinator with its own engine and HTTP session (one per replica)."""

    def __init__(self, harness: Any, clock: Clock | None = None) -> None:
        rt = harness.runtime
        self.db = Database(harness.database_url)
        self.clock = clock or rt.clock
        self.http = aiohttp.ClientSession()
        self.events: list[RefreshEvent] = []
        self.coordinator = RefreshCoordinator(
            self.db, rt.barrier, self.clock, rt.catalog, OAuthApps(self.db, rt.barrier),
            self.http, listeners=[self.events.append], tracing=Tracing())

    def keep_alive(self, catalog: Any) -> Any:
        from control_plane.vault.keepalive import KeepAlive

        return KeepAlive(self.db, self.clock, catalog, self.coordinator)

    async def close(self) -> None:
        await self.http.close()
        await self.db.dispose()


def _access_tokens(w: Any) -> list[str]:
    return [t.value for t in w.provider.issued if t.kind == "access"]


@pytest.fixture
async def replicas(harness: Any) -> Any:
    made: list[Replica] = []

    def make(clock: Clock | None = None) -> Replica:
        made.append(Replica(harness, clock))
        return made[-1]

    yield make
    for r in made:
        await r.coordinator.drain(20)
        await r.close()
    # Every attempt got exactly one outcome, in every test that used replicas.
    outcomes = {"refreshed", "reused", "revoked", "error", "transient", "cancelled", "gone"}
    for r in made:
        kinds = [e.outcome for e in r.events if e.outcome != "waited"]
        attempts = kinds.count("attempt")
        assert attempts == sum(k in outcomes for k in kinds), kinds
        assert all(k == "attempt" or k in outcomes for k in kinds), kinds


async def test_a_due_token_is_refreshed_once_then_reused(harness: Any, replicas: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        r = replicas()
        first = await r.coordinator.access_token(org, account)
        assert first == _access_tokens(w)[-1] and len(_access_tokens(w)) == 1  # not due yet
        await _expire(harness)
        fresh = await r.coordinator.access_token(org, account)
        assert fresh != first and fresh == _access_tokens(w)[-1]
        assert await r.coordinator.access_token(org, account) == fresh  # durable, not due
        [(version, refreshed)] = await _sql(
            harness, "SELECT secret_version, last_refreshed_time FROM connected_accounts")
        assert version == 2 and refreshed is not None
        assert [e.outcome for e in r.events] == ["attempt", "refreshed"]


async def test_single_flight_in_a_process_and_across_replicas(harness: Any, replicas: Any) -> None:
    async with connect_world(harness, "slack") as w:  # single-use rotating refresh tokens
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        a, b = replicas(), replicas()
        await _expire(harness)
        before = len(_access_tokens(w))
        got = await asyncio.gather(*(
            (a if i % 2 else b).coordinator.access_token(org, account) for i in range(40)
        ))
        assert len(_access_tokens(w)) == before + 1  # exactly one refresh reached Slack
        assert len(set(got)) == 1 and got[0] == _access_tokens(w)[-1]
        refreshed = [e for e in a.events + b.events if e.outcome == "refreshed"]
        assert len(refreshed) == 1
        # The rotated refresh token was stored before use: the next refresh uses it.
        await _expire(harness)
        again = await a.coordinator.access_token(org, account)
        assert again == _access_tokens(w)[-1] != got[0]


async def test_a_refresh_without_refresh_token_or_kept_fields_keeps_the_stored_ones(
    harness: Any, replicas: Any
) -> None:
    async with connect_world(harness, "salesforce") as w:
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        import json

        def as_dict(value: Any) -> dict[str, str]:
            return json.loads(value) if isinstance(value, str) else dict(value)

        [(meta_before,)] = await _sql(harness, "SELECT provider_metadata FROM connected_accounts")
        r = replicas()
        await r.coordinator.access_token(org, account, force=True)
        [(meta_after, expires)] = await _sql(
            harness, "SELECT provider_metadata, access_expire_time FROM connected_accounts")
        before, after = as_dict(meta_before), as_dict(meta_after)
        assert "instance_url" in before and before.items() <= after.items()
        assert expires is not None  # no expires_in from Salesforce: the connector's default
        secret_doc = await harness.runtime.barrier.open(
            org, "connected_accounts", account, "secret",
            (await _sql(harness, "SELECT secret FROM connected_accounts"))[0][0])
        assert b"refresh_token" in secret_doc  # Salesforce does not rotate: the old one stays


async def test_revoked_at_the_provider_marks_the_account_revoked(harness: Any, replicas: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        w.provider.revoke_all()
        r = replicas()
        with pytest.raises(FailedPrecondition) as info:
            await r.coordinator.access_token(org, account, force=True)
        assert info.value.reason == "ACCOUNT_REVOKED"
        [(state, reason)] = await _sql(harness, "SELECT state, state_reason FROM connected_accounts")
        assert state == "REVOKED" and reason
        assert r.events[-1].outcome == "revoked"


async def test_broken_client_credentials_are_an_operator_error_not_a_reconnect(
    harness: Any, replicas: Any
) -> None:
    from agentauth.v1 import connection_pb2 as pb

    async with connect_world(harness, "gmail") as w:
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        await w.admin.connections.SetOAuthApp(pb.SetOAuthAppRequest(oauth_app=pb.OAuthApp(
            name=f"{w.org}/oauthApps/gmail", client_id="sandbox-client",
            client_secret="wrong-secret")))
        r = replicas()
        with pytest.raises(FailedPrecondition) as info:
            await r.coordinator.access_token(org, account, force=True)
        assert info.value.reason == "OPERATOR_ERROR"
        [(state,)] = await _sql(harness, "SELECT state FROM connected_accounts")
        assert state == "ERROR"


async def test_transient_failures_keep_the_token_and_cool_down(harness: Any, replicas: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        w.provider.faults.retry_after = 5
        w.provider.faults.next_token_status = 503
        r = replicas()
        with pytest.raises(Unavailable) as info:
            await r.coordinator.access_token(org, account, force=True)
        assert info.value.metadata["retryAfterSeconds"] == "5"
        [(state, version)] = await _sql(harness, "SELECT state, secret_version FROM connected_accounts")
        assert (state, version) == ("ACTIVE", 1)
        issued = len(w.provider.issued)
        with pytest.raises(Unavailable) as again:  # within the cooldown: no new request
            await r.coordinator.access_token(org, account, force=True)
        assert again.value.reason == "REFRESH_COOLDOWN"
        assert 1 <= int(again.value.metadata["retryAfterSeconds"]) <= 5
        assert len(w.provider.issued) == issued


async def test_a_crashed_lease_holder_delays_but_never_locks_out(harness: Any, replicas: Any) -> None:
    async with connect_world(harness, "gmail") as w:
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        await _expire(harness)
        # A replica took the lease and died: it lapses in a second.
        await _sql(harness, "UPDATE connected_accounts SET refresh_lease_until = :t",
                   t=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
        r = replicas()
        token = await asyncio.wait_for(r.coordinator.access_token(org, account), 10)
        assert token == _access_tokens(w)[-1]
        [(lease,)] = await _sql(harness, "SELECT refresh_lease_until FROM connected_accounts")
        assert lease is None


async def test_refresh_connected_account_rpc_errors_are_precise(harness: Any) -> None:
    from agentauth import FailedPreconditionError, NotFoundError, UnavailableError
    from agentauth.v1 import connection_pb2 as pb

    async with connect_world(harness, "gmail") as w:
        pending = await w.account()
        with pytest.raises(FailedPreconditionError) as not_connected:
            await w.admin.connections.RefreshConnectedAccount(
                pb.RefreshConnectedAccountRequest(name=pending.name))
        assert not_connected.value.reason == "ACCOUNT_PENDING"
        account = await _connect(w)
        name = f"{w.org}/connectedAccounts/{account}"
        got = (await w.admin.connections.RefreshConnectedAccount(
            pb.RefreshConnectedAccountRequest(name=name, force=True))).connected_account
        assert got.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE and got.last_refreshed_time.seconds
        w.provider.faults.next_token_status = 503
        with pytest.raises(UnavailableError) as down:
            await w.admin.connections.RefreshConnectedAccount(
                pb.RefreshConnectedAccountRequest(name=name, force=True))
        assert "retryAfterSeconds" in down.value.metadata
        _, other, _ = await harness.new_org("Other")
        with pytest.raises(NotFoundError):
            await other.connections.RefreshConnectedAccount(
                pb.RefreshConnectedAccountRequest(name=name))
        await w.admin.connections.UpdateConnectorConfig(pb.UpdateConnectorConfigRequest(
            name=f"{w.org}/connectors/stripe", enabled=True))
        byok = (await w.admin.connections.CreateConnectedAccount(pb.CreateConnectedAccountRequest(
            parent=w.org, connected_account=pb.ConnectedAccount(
                connector="stripe", owner=w.names["user"])))).connected_account
        await w.admin.connections.SetApiKey(
            pb.SetApiKeyRequest(name=byok.name, api_key="rk_test_NotRefreshable0123"))
        with pytest.raises(FailedPreconditionError):
            await w.admin.connections.RefreshConnectedAccount(
                pb.RefreshConnectedAccountRequest(name=byok.name, force=True))


async def test_keep_alive_refreshes_idle_accounts_once_across_replicas(
    harness: Any, replicas: Any
) -> None:

    async with connect_world(harness, "gmail") as w:  # Google: 180 days of inactivity
        account = await _connect(w)
        a, b = replicas(), replicas()
        keep = [r.keep_alive(harness.runtime.catalog) for r in (a, b)]
        assert [await k.run_once() for k in keep] == [0, 0]  # just connected: not due
        await _sql(harness, "UPDATE connected_accounts SET secret_create_time = :t",
                   t=dt.datetime.now(dt.UTC) - dt.timedelta(days=61))
        before = len(_access_tokens(w))
        done = await asyncio.gather(*(k.run_once() for k in keep))
        assert sum(done) >= 1 and len(_access_tokens(w)) == before + 1  # one refresh, not two
        [(refreshed,)] = await _sql(harness, "SELECT last_refreshed_time FROM connected_accounts")
        assert refreshed is not None
        assert [await k.run_once() for k in keep] == [0, 0]  # and not again
        assert account


@pytest.mark.parametrize("connector", ["slack", "gmail"])
async def test_a_lost_refresh_response_ends_in_a_defined_state(
    harness: Any, replicas: Any, connector: str
) -> None:
    async with connect_world(harness, connector) as w:
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        r = replicas()
        w.provider.faults.lose_response = True  # the provider rotates, the answer is lost
        with pytest.raises(Unavailable) as first:
            await r.coordinator.access_token(org, account, force=True)
        assert first.value.reason == "REFRESH_OUTCOME_UNKNOWN"
        [(state, reason)] = await _sql(harness, "SELECT state, state_reason FROM connected_accounts")
        assert (state, reason) == ("ACTIVE", "REFRESH_OUTCOME_UNKNOWN")
        await asyncio.sleep(1.1)  # the cooldown
        if connector == "gmail":  # Google does not rotate: the old refresh token still works
            await r.coordinator.access_token(org, account, force=True)
            [(state, reason)] = await _sql(
                harness, "SELECT state, state_reason FROM connected_accounts")
            assert (state, reason) == ("ACTIVE", "")
            return
        with pytest.raises(FailedPrecondition) as second:  # Slack's token was single use
            await r.coordinator.access_token(org, account, force=True)
        assert second.value.reason == "ACCOUNT_REVOKED"
        [(state, reason)] = await _sql(harness, "SELECT state, state_reason FROM connected_accounts")
        assert (state, reason) == ("REVOKED", "ROTATED_RESPONSE_LOST")
        issued = len(w.provider.issued)
        with pytest.raises(FailedPrecondition):  # no loop: nothing more is sent
            await r.coordinator.access_token(org, account, force=True)
        assert len(w.provider.issued) == issued


async def test_keep_alive_with_a_clock_before_and_past_googles_six_months(
    harness: Any, replicas: Any
) -> None:
    from control_plane.clock import FakeClock

    fake = FakeClock(dt.datetime.now(dt.UTC))
    async with connect_world(harness, "gmail", clock=lambda: fake.now().timestamp()) as w:
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        r = replicas(fake)
        keep = r.keep_alive(harness.runtime.catalog)
        fake.advance(dt.timedelta(days=61))
        assert await keep.run_once() == 1  # exercised well before six months
        [(state,)] = await _sql(harness, "SELECT state FROM connected_accounts")
        assert state == "ACTIVE"
        fake.advance(dt.timedelta(days=200))  # idle past Google's deadline
        with pytest.raises(FailedPrecondition):
            await r.coordinator.access_token(org, account, force=True)
        [(state, reason)] = await _sql(harness, "SELECT state, state_reason FROM connected_accounts")
        assert (state, reason) == ("REVOKED", "INACTIVITY")


REFRESHABLE = sorted(
    c.id for c in load_catalog() if c.auth.type == "oauth2" and c.auth.refresh.supported
)


@pytest.mark.parametrize("connector", REFRESHABLE)
async def test_each_providers_signals_are_classified(
    harness: Any, replicas: Any, connector: str
) -> None:
    """Transient and rate-limit signals never revoke; operator errors mark ERROR (the
    user is not sent to reconnect); the provider's revoked signal marks REVOKED."""
    from agentauth.v1 import connection_pb2 as pb

    async with connect_world(harness, connector) as w:
        params = {p.name: "acme" if p.name != "cloud_id" else
                  "11111111-2222-3333-4444-555555555555"
                  for p in harness.runtime.catalog.connectors[connector].auth.connection_params}
        acct = await w.account(connection_params=params)
        async with browser() as b:
            done = await consent(b, await start(b, await w.link(acct)))
            status, page = await finish(b, done)
        assert status == 200, page[-300:]
        account = acct.name.rsplit("/", 1)[1]
        org = scope(w.org.split("/")[1])
        r = replicas()

        async def reset() -> None:
            await _sql(harness, "UPDATE connected_accounts SET state = 'ACTIVE', "
                       "state_reason = '', refresh_blocked_until = NULL")

        for status_code in (503, 429):
            w.provider.faults.next_token_status = status_code
            with pytest.raises(Unavailable):
                await r.coordinator.access_token(org, account, force=True)
            [(state,)] = await _sql(harness, "SELECT state FROM connected_accounts")
            assert state == "ACTIVE", (connector, status_code)
            await reset()

        await w.admin.connections.SetOAuthApp(pb.SetOAuthAppRequest(oauth_app=pb.OAuthApp(
            name=f"{w.org}/oauthApps/{connector}", client_id="sandbox-client",
            client_secret="not-the-secret")))
        with pytest.raises(FailedPrecondition) as operator:
            await r.coordinator.access_token(org, account, force=True)
        assert operator.value.reason == "OPERATOR_ERROR", connector
        [(state,)] = await _sql(harness, "SELECT state FROM connected_accounts")
        assert state == "ERROR"
        await w.admin.connections.SetOAuthApp(pb.SetOAuthAppRequest(oauth_app=pb.OAuthApp(
            name=f"{w.org}/oauthApps/{connector}", client_id="sandbox-client",
            client_secret=w.provider.client_secret)))
        await reset()

        w.provider.revoke_all()
        with pytest.raises(FailedPrecondition) as revoked:
            await r.coordinator.access_token(org, account, force=True)
        assert revoked.value.reason == "ACCOUNT_REVOKED", connector
        [(state, reason)] = await _sql(harness, "SELECT state, state_reason FROM connected_accounts")
        assert state == "REVOKED" and reason, connector


async def test_an_expired_token_that_cannot_be_refreshed_is_expired_then_recovers(
    harness: Any, replicas: Any
) -> None:
    async with connect_world(harness, "gmail") as w:
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        r = replicas()
        await _expire(harness)
        w.provider.faults.next_token_status = 503
        with pytest.raises(Unavailable):
            await r.coordinator.access_token(org, account)
        [(state, reason)] = await _sql(harness, "SELECT state, state_reason FROM connected_accounts")
        assert state == "EXPIRED" and reason and reason != "REFRESH_FAILING"
        await _sql(harness, "UPDATE connected_accounts SET refresh_blocked_until = NULL")
        await r.coordinator.access_token(org, account)  # the provider is back
        [(state, reason)] = await _sql(harness, "SELECT state, state_reason FROM connected_accounts")
        assert (state, reason) == ("ACTIVE", "")
        # A long outage (past the give-up window) is named as such.
        await _sql(harness, "UPDATE connected_accounts SET access_expire_time = :t",
                   t=dt.datetime.now(dt.UTC) - dt.timedelta(hours=7))
        w.provider.faults.next_token_status = 503
        with pytest.raises(Unavailable):
            await r.coordinator.access_token(org, account)
        [(state, reason)] = await _sql(harness, "SELECT state, state_reason FROM connected_accounts")
        assert (state, reason) == ("EXPIRED", "REFRESH_FAILING")
