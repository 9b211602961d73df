"""Regressions of issue 11's refresh faults, reproduced in one process (each fails on
the coordinator before the fix): the lease after REVOKED, ``force`` on a dead
account, keep-alive twice, BYOK, a refused connection, the caller's deadline, and a
refresh that callers and shutdown cannot cut in half.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from control_plane.connectors.sandbox_routing import rewrite_for_sandbox
from control_plane.domain.errors import FailedPrecondition, Unavailable
from tests.api.connect_helpers import browser, connect_world, consent, finish, start
from tests.api.test_refresh import _access_tokens, _connect, _expire, _sql, replicas  # noqa: F401
from tests.scopes import scope


def _token_requests(w: Any) -> int:
    path = urlsplit(w.provider.connector_for_sandbox().auth.token_url).path
    return int(w.provider.server.requests[path])


async def _row(harness: Any) -> tuple[Any, ...]:
    [row] = await _sql(
        harness,
        "SELECT state, state_reason, secret_version, refresh_lease_until, "
        "refresh_sent_version FROM connected_accounts",
    )
    return tuple(row)


async def test_a_waiter_sees_revoked_and_leaks_no_lease(harness: Any, replicas: Any) -> None:
    async with connect_world(harness, "slack") as w:
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        await _expire(harness)
        # Another replica holds the lease for a second more, then the account is revoked
        # (a state change that does not move secret_version).
        held = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        await _sql(harness, "UPDATE connected_accounts SET refresh_lease_until = :t", t=held)
        _, _, _, held_as_stored, _ = await _row(harness)
        r = replicas()
        waiting = asyncio.create_task(r.coordinator.access_token(org, account))
        await _sql(harness, "UPDATE connected_accounts SET state = 'REVOKED', "
                   "state_reason = 'INVALID_REFRESH_TOKEN'")  # fmt: skip
        with pytest.raises(FailedPrecondition) as err:
            await asyncio.wait_for(waiting, 10)
        assert err.value.reason == "ACCOUNT_REVOKED"
        _, _, _, lease, _ = await _row(harness)
        assert lease in (None, held_as_stored)  # the waiter never took (and kept) a lease
        # Reconnecting gives a fresh secret and clears any lease: no wait afterwards.
        await _sql(harness, "UPDATE connected_accounts SET refresh_lease_until = :t",
                   t=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30))  # fmt: skip
        async with browser() as b:  # the user reconnects the revoked account
            url = await w.link(type("Named", (), {"name": f"{w.org}/connectedAccounts/{account}"}))
            done = await consent(b, await start(b, url))
            status, _ = await finish(b, done)
        assert status == 200
        state, _, _, lease, sent = await _row(harness)
        assert (state, lease, sent) == ("ACTIVE", None, None)
        began = time.monotonic()
        await asyncio.wait_for(r.coordinator.access_token(org, account, force=True), 10)
        assert time.monotonic() - began < 5


async def test_force_never_sends_a_dead_refresh_token(harness: Any, replicas: Any) -> None:
    async with connect_world(harness, "slack") as w:
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        await _sql(harness, "UPDATE connected_accounts SET state = 'REVOKED', "
                   "state_reason = 'INVALID_REFRESH_TOKEN'")  # fmt: skip
        before = _token_requests(w)
        with pytest.raises(FailedPrecondition) as err:
            await replicas().coordinator.access_token(org, account, force=True)
        assert err.value.reason == "ACCOUNT_REVOKED"
        assert _token_requests(w) == before  # nothing reached the provider


async def test_keep_alive_after_another_replica_refreshed_does_not_refresh_again(
    harness: Any, replicas: Any
) -> None:
    """The race, made deterministic: B lists the idle account, A refreshes it, then B
    gets to it. B must see it is no longer idle."""
    async with connect_world(harness, "gmail") as w:
        await _connect(w)
        a, b = replicas(), replicas()
        keep_a = a.keep_alive(harness.runtime.catalog)
        keep_b = b.keep_alive(harness.runtime.catalog)
        await _sql(harness, "UPDATE connected_accounts SET secret_create_time = :t",
                   t=dt.datetime.now(dt.UTC) - dt.timedelta(days=61))  # fmt: skip
        ensure = b.coordinator.ensure_fresh

        async def a_gets_there_first(*args: Any, **kwargs: Any) -> None:
            assert await keep_a.run_once() == 1
            await ensure(*args, **kwargs)

        b.coordinator.ensure_fresh = a_gets_there_first  # type: ignore[method-assign]
        before = len(_access_tokens(w))
        await keep_b.run_once()
        assert len(_access_tokens(w)) == before + 1  # A's refresh only
        assert [e.outcome for e in b.events] == []


async def test_refresh_of_a_byok_account_is_a_precise_failed_precondition(harness: Any) -> None:
    from agentauth import FailedPreconditionError
    from agentauth.v1 import connection_pb2 as pb

    async with connect_world(harness, "gmail") as w:
        await w.admin.connections.UpdateConnectorConfig(pb.UpdateConnectorConfigRequest(
            name=f"{w.org}/connectors/stripe", enabled=True))  # fmt: skip
        byok = (await w.admin.connections.CreateConnectedAccount(pb.CreateConnectedAccountRequest(
            parent=w.org, connected_account=pb.ConnectedAccount(
                connector="stripe", owner=w.names["user"])))).connected_account  # fmt: skip
        await w.admin.connections.SetApiKey(
            pb.SetApiKeyRequest(name=byok.name, api_key="rk_test_NotRefreshable0123")
        )
        for force in (False, True):
            with pytest.raises(FailedPreconditionError) as err:
                await w.admin.connections.RefreshConnectedAccount(
                    pb.RefreshConnectedAccountRequest(name=byok.name, force=force)
                )
            assert err.value.reason == "REFRESH_UNSUPPORTED", force


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_refused_connection_is_not_an_unknown_outcome(harness: Any, replicas: Any) -> None:
    async with connect_world(harness, "slack") as w:
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        catalog = harness.runtime.catalog.connectors
        reachable = catalog["slack"]
        catalog["slack"] = rewrite_for_sandbox(
            w.provider.connector, f"http://127.0.0.1:{_closed_port()}"
        )
        r = replicas()
        with pytest.raises(Unavailable) as down:
            await r.coordinator.access_token(org, account, force=True)
        assert down.value.reason == "PROVIDER_UNREACHABLE"
        state, reason, _, lease, sent = await _row(harness)
        assert (state, reason, lease, sent) == ("ACTIVE", "", None, None)
        # The provider comes back having lost its grants: a plain revocation, not a
        # lost rotation (nothing was ever sent).
        catalog["slack"] = reachable
        w.provider.revoke_all()
        await _sql(harness, "UPDATE connected_accounts SET refresh_blocked_until = NULL")
        with pytest.raises(FailedPrecondition):
            await r.coordinator.access_token(org, account, force=True)
        state, reason, _, _, _ = await _row(harness)
        assert state == "REVOKED" and reason != "ROTATED_RESPONSE_LOST"


async def test_a_wait_for_another_replica_answers_before_the_callers_deadline(
    harness: Any,
) -> None:
    from agentauth import UnavailableError
    from agentauth.v1 import connection_pb2 as pb

    async with connect_world(harness, "gmail") as w:
        account = await _connect(w)
        await _expire(harness)
        await _sql(harness, "UPDATE connected_accounts SET refresh_lease_until = :t",
                   t=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30))  # fmt: skip
        began = time.monotonic()
        with pytest.raises(UnavailableError) as busy:
            await w.admin.connections.RefreshConnectedAccount(
                pb.RefreshConnectedAccountRequest(name=f"{w.org}/connectedAccounts/{account}"),
                timeout=3.0,
            )
        took = time.monotonic() - began
        assert busy.value.reason == "REFRESH_IN_PROGRESS" and took < 3.0, took
        assert int(busy.value.metadata["retryAfterSeconds"]) >= 1


async def test_a_caller_that_leaves_does_not_cut_the_refresh_in_half(
    harness: Any, replicas: Any
) -> None:
    async with connect_world(harness, "slack") as w:  # single-use rotating refresh tokens
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        r = replicas()
        w.provider.faults.delay = 0.5
        before = _token_requests(w)
        caller = asyncio.create_task(r.coordinator.access_token(org, account, force=True))
        while _token_requests(w) == before:  # the request has left
            await asyncio.sleep(0.01)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert await r.coordinator.drain(10) == 0  # shutdown waits for the exchange
        state, reason, version, lease, sent = await _row(harness)
        assert (state, reason, version, lease, sent) == ("ACTIVE", "", 2, None, None)
        assert [e.outcome for e in r.events] == ["attempt", "refreshed"]
        w.provider.faults.delay = 0
        await r.coordinator.access_token(org, account, force=True)  # the stored token works


async def test_a_refresh_cut_by_shutdown_is_recorded_and_then_named(
    harness: Any, replicas: Any
) -> None:
    """Past the drain timeout the exchange is cancelled: its outcome is recorded as
    cancelled, the intent stays, the lease goes; the provider did rotate, so the next
    attempt ends ROTATED_RESPONSE_LOST at once instead of INVALID_REFRESH_TOKEN (the
    lease is not waited out)."""
    async with connect_world(harness, "slack") as w:
        account = await _connect(w)
        org = scope(w.org.split("/")[1])
        r = replicas()
        w.provider.faults.delay = 1.0
        issued = len(w.provider.issued)
        before = _token_requests(w)
        caller = asyncio.create_task(r.coordinator.access_token(org, account, force=True))
        while _token_requests(w) == before:
            await asyncio.sleep(0.01)
        assert await r.coordinator.drain(0.05) == 1
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert [e.outcome for e in r.events] == ["attempt", "cancelled"]
        state, _, version, lease, sent = await _row(harness)
        assert (state, version, lease, sent) == ("ACTIVE", 1, None, 1)
        # The sandbox drops a request whose client went away; a real provider may
        # have rotated already. Either way the old refresh token is dead now:
        w.provider.revoke_all()
        assert len(w.provider.issued) == issued
        w.provider.faults.delay = 0
        again = replicas()
        began = time.monotonic()
        with pytest.raises(FailedPrecondition):
            await again.coordinator.access_token(org, account, force=True)
        assert time.monotonic() - began < 5
        state, reason, _, lease, sent = await _row(harness)
        assert (state, reason, lease, sent) == ("REVOKED", "ROTATED_RESPONSE_LOST", None, None)
