"""A real ``control-plane serve`` process whose only road to PostgreSQL runs through
the fault proxy: a stalled database, then a restarted one (every connection reset,
new ones refused for a while, then back), under a load of writes and token
exchanges; and hostile bytes against the same process.

What must hold: every call ends OK or UNAVAILABLE with a retry hint within a bound
(no hang), gRPC health and /readyz say NOT_SERVING during each outage and SERVING
after it while /healthz stays 200, nothing acknowledged is lost, and the process
stays up and small.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import grpc
import psycopg
import pytest
from agentauth import AgentAuthError, ControlPlaneClient
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import token_pb2 as tpb
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench._harness import cluster_on_postgres
from bench._workload import workload_exchange
from tests.api.test_hostile_input import _BURST_CLIENT
from tests.faults.harness import through
from tests.faults.tcp_proxy import TcpProxy
from tests.faults.test_database_faults import RPC_BOUND

pytestmark = pytest.mark.slow
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
ENV = {
    "AGENTAUTH_DB_STATEMENT_TIMEOUT_SECONDS": "1",
    "AGENTAUTH_DB_POOL_TIMEOUT_SECONDS": "1",
    "AGENTAUTH_DB_CONNECT_TIMEOUT_SECONDS": "2",
    "AGENTAUTH_READINESS_INTERVAL_SECONDS": "0.2",
}


class ThreadedProxy:
    """The fault proxy on its own event loop in a thread: the serve harness blocks
    (psycopg, subprocess waits) on the test's loop, which must not stall the proxy."""

    def __init__(self, host: str, port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.proxy = TcpProxy(host, port)
        self.port = self._run(self.proxy.start())

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def _do(self, fn: Callable[[], None]) -> None:
        async def call() -> None:
            fn()

        self._run(call())

    def stall(self) -> None:
        self._do(self.proxy.stall)

    def cut(self) -> None:
        self._do(self.proxy.cut)

    def pass_traffic(self) -> None:
        self._do(self.proxy.pass_traffic)

    @property
    def accepted(self) -> int:
        return self.proxy.accepted

    def close(self) -> None:
        self._run(self.proxy.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def proxy(pg_server: Any) -> Any:
    if pg_server is None:
        pytest.skip("PostgreSQL unreachable (AGENTAUTH_TEST_REQUIRE_POSTGRES=1 makes it fail)")
    real = urlsplit(pg_server.url)
    p = ThreadedProxy(real.hostname or "127.0.0.1", real.port or 5432)
    yield p, str(pg_server.url)
    p.close()


async def _health(target: str) -> int:
    async with grpc.aio.insecure_channel(target) as channel:
        got = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=2
        )
        return int(got.status)


async def _http_status(url: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=3)) as r:
            return r.status


async def _until_health(target: str, status: int, seconds: float = 15.0) -> None:
    async with asyncio.timeout(seconds):
        while await _health(target) != status:
            await asyncio.sleep(0.1)


class Load:
    """Writers and exchangers that run until stopped, recording every outcome."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[str, float, str, dict[str, str]]] = []
        self.acknowledged: list[str] = []
        self.stop = asyncio.Event()

    async def worker(self, kind: str, call: Callable[[], Awaitable[str | None]]) -> None:
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                made = await call()
                code, meta = "OK", {}
                if made:
                    self.acknowledged.append(made)
            except AgentAuthError as err:
                code, meta = err.code.name, dict(err.metadata)
            self.outcomes.append((kind, time.monotonic() - began, code, meta))
            await asyncio.sleep(0.01)


async def test_serve_through_a_stalled_then_restarted_database(proxy: Any) -> None:
    p, real_url = proxy
    with cluster_on_postgres(through(real_url, p.port), 1, extra_env=ENV) as (replicas, key):
        r = replicas[0]
        exchange = await workload_exchange(r.target, key)
        client = ControlPlaneClient(r.target, key, timeout=30)
        request = tpb.ExchangeTokenRequest(**exchange.fields())
        load = Load()

        async def create_user() -> str:
            user = pb.User(external_id=os.urandom(8).hex())
            made = await client.admin.CreateUser(
                pb.CreateUserRequest(parent=exchange.org, user=user)
            )
            return str(made.user.name)

        async def exchange_token() -> None:
            await client.tokens.ExchangeToken(request)

        workers = [
            *(asyncio.create_task(load.worker("write", create_user)) for _ in range(3)),
            *(asyncio.create_task(load.worker("exchange", exchange_token)) for _ in range(3)),
        ]
        try:
            await asyncio.sleep(1.0)
            for outage in (p.stall, p.cut):  # a hang, then a restart as the server sees it
                outage()
                await _until_health(r.target, NOT_SERVING)
                assert await _http_status(r.http + "/readyz") == 503
                assert await _http_status(r.http + "/healthz") == 200
                await asyncio.sleep(2.0)
                p.pass_traffic()
                await _until_health(r.target, SERVING)
                assert await _http_status(r.http + "/readyz") == 200
                await asyncio.sleep(1.0)
        finally:
            load.stop.set()
            await asyncio.gather(*workers)
            await client.close()
        assert r.proc is not None and r.proc.poll() is None  # still up
        # Every acknowledged write is there: read on the real server, around the proxy.
        ids = [name.rsplit("/", 1)[1] for name in load.acknowledged]
        real = real_url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0]
        database = r.database_url.rsplit("/", 1)[1]
        with psycopg.connect(f"{real}/{database}", autocommit=True) as conn:
            found = conn.execute("SELECT count(*) FROM users WHERE id = ANY(%s)", (ids,))
            [(stored,)] = found.fetchall()
    assert ids and stored == len(ids), (stored, len(ids))
    codes = {code for _, _, code, _ in load.outcomes}
    assert codes <= {"OK", "UNAVAILABLE"}, codes
    assert "UNAVAILABLE" in codes and "OK" in codes  # the outages were felt, and survived
    refused = [meta for _, _, code, meta in load.outcomes if code == "UNAVAILABLE"]
    assert all("retryAfterSeconds" in meta for meta in refused), refused[:3]
    slowest = max(seconds for _, seconds, _, _ in load.outcomes)
    assert slowest <= RPC_BOUND, slowest


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_hostile_bytes_against_serve_leave_it_healthy_and_small(proxy: Any) -> None:
    p, real_url = proxy
    with cluster_on_postgres(real_url, 1) as (replicas, _):
        r = replicas[0]
        assert r.proc is not None
        async with grpc.aio.insecure_channel(r.target) as channel:
            call = channel.unary_unary("/agentauth.v1.TokenService/ExchangeToken")
            for garbage in (b"\xff\xff\xff", b"\x0a\x02\xc3\x28"):  # not protobuf; bad UTF-8
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call(garbage, timeout=5)
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        before = _rss(r.proc.pid)
        attack = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _BURST_CLIENT, r.target, "4"
        )
        assert await attack.wait() == 0
        grown = _rss(r.proc.pid) - before
        assert grown < 64 << 20, f"{grown >> 20} MiB"
        assert await _health(r.target) == SERVING
    assert p.accepted == 0  # this one talks to PostgreSQL directly
