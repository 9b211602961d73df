"""Refresh under SIGTERM and SIGKILL of real ``serve`` replicas (PostgreSQL, sandbox
Slack: single-use rotating refresh tokens).

- SIGTERM while a slow provider refresh is in flight: the replica drains, the
  exchange and its commit finish, the caller gets its answer, the account stays
  usable (the old grace of 2 s used to cut it, and the account died).
- SIGKILL after the provider rotated: nothing can save that rotation, but the
  intent recorded before sending names it: the account ends REVOKED
  ROTATED_RESPONSE_LOST (not INVALID_REFRESH_TOKEN), no lease is left behind, and
  after the user reconnects the first refresh does not wait out a dead lease.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest
from agentauth import FailedPreconditionError, UnavailableError
from agentauth.v1 import connection_pb2 as pb

from tests.api.connect_helpers import browser, consent, finish, start
from tests.test_refresh_replicas import LEASE_SECONDS, World, gmail, slack  # noqa: F401

pytestmark = pytest.mark.slow


async def _until(predicate: Any, seconds: float = 20.0) -> None:
    async with asyncio.timeout(seconds):
        while not predicate():
            await asyncio.sleep(0.02)


def _row(w: World) -> tuple[Any, ...]:
    [row] = w.sql(
        "SELECT state, state_reason, secret_version, refresh_lease_until, "
        "refresh_sent_version FROM connected_accounts"
    )
    return tuple(row)


async def test_sigterm_during_a_slow_rotating_refresh_keeps_the_account(slack: World) -> None:
    name, admin = await slack.connected_account("slack")
    slack.expire()
    slack.provider.faults.delay = 3.0  # longer than the old 2 s shutdown grace
    issued = slack.access_tokens()
    doomed = slack.client(0)
    pending = asyncio.ensure_future(
        doomed.connections.RefreshConnectedAccount(pb.RefreshConnectedAccountRequest(name=name))
    )
    await _until(lambda: _row(slack)[4] is not None)  # the request is leaving
    proc = slack.replicas[0].proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGTERM)
    got = await asyncio.wait_for(pending, 30)  # the draining replica still answers
    assert got.connected_account.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE
    assert await asyncio.to_thread(proc.wait, 30) == 0
    state, reason, version, lease, sent = _row(slack)
    assert (state, reason, version, lease, sent) == ("ACTIVE", "", 2, None, None)
    assert slack.access_tokens() == issued + 1
    slack.provider.faults.delay = 0.0
    forced = await slack.client(1).connections.RefreshConnectedAccount(
        pb.RefreshConnectedAccountRequest(name=name, force=True)
    )  # the rotated refresh token was stored: the next rotation works
    assert forced.connected_account.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE


async def test_sigkill_after_the_provider_rotated_is_named_and_recovers(slack: World) -> None:
    name, _ = await slack.connected_account("slack")
    slack.expire()
    slack.provider.faults.reply_delay = 2.0  # rotated at once, answered 2 s later
    issued = slack.access_tokens()
    pending = asyncio.ensure_future(
        slack.client(1).connections.RefreshConnectedAccount(
            pb.RefreshConnectedAccountRequest(name=name)
        )
    )  # replica 0 serves the cluster's issuer URL (the connect pages): it stays up
    await _until(lambda: slack.access_tokens() == issued + 1)  # Slack has rotated
    proc = slack.replicas[1].proc
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    with pytest.raises(UnavailableError):  # the caller of the dead replica loses its connection
        await pending
    slack.provider.faults.reply_delay = 0.0
    state, _, version, lease, sent = _row(slack)
    assert (state, version, sent) == ("ACTIVE", 1, 1) and lease is not None
    # The next caller waits out the dead replica's lease (bounded), then learns the
    # truth from the provider: the rotation was lost.
    with pytest.raises(FailedPreconditionError) as dead:
        await asyncio.wait_for(
            slack.client(2).connections.RefreshConnectedAccount(
                pb.RefreshConnectedAccountRequest(name=name)
            ),
            LEASE_SECONDS + 20,
        )
    assert dead.value.reason == "ACCOUNT_REVOKED", dead.value
    state, reason, _, lease, sent = _row(slack)
    assert (state, reason, lease, sent) == ("REVOKED", "ROTATED_RESPONSE_LOST", None, None)
    # The user reconnects; the first refresh afterwards does not stall.
    link = (
        await slack.client(0).connections.GetAuthorizationLink(
            pb.GetAuthorizationLinkRequest(name=name)
        )
    ).url
    async with browser() as b:
        done = await consent(b, await start(b, link))
        status, _ = await finish(b, done)
    assert status == 200
    slack.expire()
    began = time.monotonic()
    got = await slack.client(2).connections.RefreshConnectedAccount(
        pb.RefreshConnectedAccountRequest(name=name)
    )
    assert got.connected_account.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE
    assert time.monotonic() - began < LEASE_SECONDS
