"""A database that hangs or vanishes: bounded latency, honest errors, one readiness.

Issue 11 item 7 and "a database that hangs instead of refusing": the server talks
to the real PostgreSQL through :class:`~tests.faults.tcp_proxy.TcpProxy`, which
stalls (bytes held, sockets open) or cuts (RST) the path on demand.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import pytest
from agentauth import AgentAuthError
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import token_pb2 as tpb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from control_plane.app import SERVICE_NAMES
from control_plane.sandbox import KubernetesIssuer
from control_plane.services.rate_limiter import RateLimiter
from control_plane.storage.db import Database
from control_plane.storage.deadline import BACKSTOP_SECONDS
from tests.api.exchange_helpers import (
    AUDIENCE,
    JWT_TYPE,
    NAMESPACE,
    SA_NAME,
    TOKEN_EXCHANGE,
    k8s_policy,
    setup_agent,
)
from tests.faults.harness import STATEMENT_TIMEOUT, FaultHarness

pytestmark = pytest.mark.postgres_only

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# The longest an RPC may take while the database hangs: one unit of work runs out
# (statement bound + backstop), after the rate limiter's own bounded wait for its
# lease; SLACK absorbs scheduling on a shared 2-core machine.
LEASE_TIMEOUT = RateLimiter.__init__.__kwdefaults__["lease_timeout"]  # type: ignore[index]
SLACK = 1.0
RPC_BOUND = STATEMENT_TIMEOUT + BACKSTOP_SECONDS + LEASE_TIMEOUT + SLACK
# A guard against a test that would otherwise hang; never a timing assertion.
GUARD = 15.0


# ----------------------------------------------------------------------- helpers


class HealthWatch:
    """Follows one gRPC health name through the Watch stream (the server pushes changes)."""

    def __init__(self, target: str, service: str = "") -> None:
        self._channel = grpc.aio.insecure_channel(target)
        self._call = health_pb2_grpc.HealthStub(self._channel).Watch(
            health_pb2.HealthCheckRequest(service=service)
        )

    async def until(self, status: int) -> None:
        async with asyncio.timeout(GUARD):
            async for resp in self._call:
                if resp.status == status:
                    return
        raise AssertionError("the health stream ended")

    async def close(self) -> None:
        self._call.cancel()
        await self._channel.close()


@pytest.fixture
async def health(faulty: FaultHarness) -> AsyncIterator[HealthWatch]:
    watch = HealthWatch(faulty.target)
    await watch.until(SERVING)
    yield watch
    await watch.close()


async def probe(h: FaultHarness) -> dict[str, Any]:
    """gRPC Check of every name, /readyz and /healthz, as a load balancer sees them."""
    async with grpc.aio.insecure_channel(h.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        grpc_status = {
            name: (await stub.Check(health_pb2.HealthCheckRequest(service=name))).status
            for name in ("", *SERVICE_NAMES)
        }
    async with aiohttp.ClientSession() as http:
        async with http.get(h.http + "/readyz") as r:
            ready = (r.status, await r.json())
        async with http.get(h.http + "/healthz") as r:
            live = r.status
    return {"grpc": set(grpc_status.values()), "readyz": ready, "healthz": live}


@dataclass
class Exchange:
    """An agent that trades a Kubernetes token for ours (mint + durable issued-token row)."""

    org: str
    k8s: KubernetesIssuer
    client: Any

    def request(self) -> tpb.ExchangeTokenRequest:
        subject = self.k8s.issue(
            namespace=NAMESPACE, service_account=SA_NAME, audiences=[AUDIENCE], ttl=600
        )
        return tpb.ExchangeTokenRequest(
            grant_type=TOKEN_EXCHANGE,
            subject_token_type=JWT_TYPE,
            subject_token=subject,
            organization=self.org,
        )

    async def call(self) -> str:
        token = (await self.client.tokens.ExchangeToken(self.request())).access_token
        payload = token.split(".")[1]
        return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


@pytest.fixture
async def k8s() -> AsyncIterator[KubernetesIssuer]:
    async with KubernetesIssuer() as issuer:
        yield issuer


async def world(h: FaultHarness, k8s: KubernetesIssuer) -> tuple[str, Any, Exchange]:
    org, admin = await h.new_org()
    await setup_agent(admin, org, **k8s_policy(k8s))
    exchange = Exchange(org, k8s, h.client(None))
    await exchange.call()  # warms the issuer's key cache, so a stall finds only our database
    return org, admin, exchange


@dataclass
class Outcome:
    kind: str
    seconds: float
    code: str
    reason: str = ""
    retry_after: str | None = None
    ack: str | None = None  # what an OK acknowledged: a user's external id, a token's jti


@dataclass
class Load:
    """Workers calling in a loop; events let the test step through phases without sleeping."""

    outcomes: list[Outcome] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    stop: bool = False

    async def worker(self, kind: str, call: Callable[[], Awaitable[str]]) -> None:
        while not self.stop:
            began = time.monotonic()
            try:
                ack = await call()
                out = Outcome(kind, time.monotonic() - began, "OK", ack=ack)
            except AgentAuthError as exc:
                out = Outcome(
                    kind,
                    time.monotonic() - began,
                    exc.code.name,
                    exc.reason,
                    exc.metadata.get("retryAfterSeconds"),
                )
            async with self.changed:
                self.outcomes.append(out)
                self.changed.notify_all()

    async def until(self, predicate: Callable[[list[Outcome]], bool]) -> None:
        async with asyncio.timeout(GUARD), self.changed:
            await self.changed.wait_for(lambda: predicate(self.outcomes))

    def count_since(self, start: int, code: str, kind: str) -> int:
        return sum(1 for o in self.outcomes[start:] if o.code == code and o.kind == kind)


async def stored(database_url: str, sql: str, org_id: str) -> set[str]:
    """Read as the owner straight from PostgreSQL (not through the proxy)."""
    owner = Database(database_url, app_role=None)
    try:
        async with owner.engine.connect() as conn:
            return {r[0] for r in await conn.execute(text(sql), {"org": org_id})}
    finally:
        await owner.dispose()


# ------------------------------------------------------------------------- tests


async def test_a_stall_under_load_bounds_every_rpc_and_loses_nothing_acknowledged(
    faulty: FaultHarness, k8s: KubernetesIssuer
) -> None:
    org, admin, exchange = await world(faulty, k8s)

    async def create_user() -> str:
        external_id = f"u-{secrets.token_hex(6)}"
        await admin.admin.CreateUser(
            pb.CreateUserRequest(parent=org, user=pb.User(external_id=external_id))
        )
        return external_id

    load = Load()
    workers = [asyncio.create_task(load.worker("create", create_user)) for _ in range(4)]
    workers += [asyncio.create_task(load.worker("exchange", exchange.call)) for _ in range(4)]
    try:
        await load.until(lambda o: sum(x.code == "OK" for x in o) >= 16)
        faulty.proxy.stall()
        stalled = len(load.outcomes)
        # Long enough that calls started during the stall ran into it, of both kinds.
        await load.until(
            lambda _: (
                load.count_since(stalled, "UNAVAILABLE", "create") >= 4
                and load.count_since(stalled, "UNAVAILABLE", "exchange") >= 4
            )
        )
        faulty.proxy.pass_traffic()
        resumed = len(load.outcomes)
        await load.until(
            lambda _: (
                load.count_since(resumed, "OK", "create") >= 4
                and load.count_since(resumed, "OK", "exchange") >= 4
            )
        )
    finally:
        load.stop = True
        async with asyncio.timeout(GUARD):
            await asyncio.gather(*workers)

    codes = {(o.code, o.reason) for o in load.outcomes}
    assert codes <= {("OK", ""), ("UNAVAILABLE", "STORAGE_UNAVAILABLE")}, codes
    for o in load.outcomes:
        assert o.seconds <= RPC_BOUND, (o, RPC_BOUND)
        if o.code == "UNAVAILABLE":
            assert o.retry_after is not None and int(o.retry_after) >= 1, o
    org_id = org.split("/")[1]
    users = await stored(
        faulty.database_url, "SELECT external_id FROM users WHERE org_id = :org", org_id
    )
    jtis = await stored(
        faulty.database_url, "SELECT jti FROM issued_tokens WHERE org_id = :org", org_id
    )
    acked_users = {o.ack for o in load.outcomes if o.kind == "create" and o.code == "OK"}
    acked_tokens = {o.ack for o in load.outcomes if o.kind == "exchange" and o.code == "OK"}
    assert acked_users <= users, acked_users - users
    assert acked_tokens <= jtis, acked_tokens - jtis


async def test_b_health_and_readyz_follow_the_database_through_a_stall_and_a_cut(
    faulty: FaultHarness, health: HealthWatch
) -> None:
    up = await probe(faulty)
    assert up == {
        "grpc": {SERVING},
        "readyz": (200, {"status": "ready", "checks": {"database": True, "signing_keys": True}}),
        "healthz": 200,
    }
    down = {
        "grpc": {NOT_SERVING},
        "readyz": (
            503,
            {"status": "not_ready", "checks": {"database": False, "signing_keys": True}},
        ),
        "healthz": 200,  # liveness never asks the database
    }
    for fault in (faulty.proxy.stall, faulty.proxy.cut):
        fault()
        await health.until(NOT_SERVING)
        assert await probe(faulty) == down, fault.__name__
        faulty.proxy.pass_traffic()
        await health.until(SERVING)
        assert await probe(faulty) == up, fault.__name__


async def test_c_a_cut_fails_fast_with_unavailable_and_a_retry_hint(
    faulty: FaultHarness, k8s: KubernetesIssuer
) -> None:
    org, admin, exchange = await world(faulty, k8s)
    faulty.proxy.cut()
    began = time.monotonic()
    with pytest.raises(AgentAuthError) as err:
        await admin.admin.CreateUser(
            pb.CreateUserRequest(parent=org, user=pb.User(external_id="x"))
        )
    elapsed = time.monotonic() - began
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert err.value.reason == "STORAGE_UNAVAILABLE"
    assert err.value.metadata == {"retryAfterSeconds": "1"}
    # A refused path does not wait out any bound.
    assert elapsed < STATEMENT_TIMEOUT, elapsed
    with pytest.raises(AgentAuthError) as err:
        await exchange.call()
    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert err.value.metadata == {"retryAfterSeconds": "1"}
    # Over HTTP: 503 with Retry-After (RFC 9110 §10.2.3).
    form = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token_type": JWT_TYPE,
        "subject_token": exchange.request().subject_token,
        "organization": org,
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(faulty.http + "/oauth2/token", data=form) as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "1"
