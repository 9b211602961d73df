"""SIGTERM to a real ``control-plane serve`` process in the middle of a burst.

A replica that is told to stop must drain: gRPC health and /readyz go NOT_SERVING
at once (load balancers move away), it keeps serving for the drain period, and it
stops with a grace long enough for what is in flight. No call of the burst may end
``CANCELLED``: each is OK or, had it not reached a handler, ``UNAVAILABLE`` (which
standard retry policies retry).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from typing import Any

import grpc
import pytest
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import token_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench._harness import cluster_on_postgres
from bench._workload import workload_exchange

DRAIN = 1.0


@pytest.fixture
def pg_url(pg_server: Any) -> str:
    if pg_server is None:
        pytest.skip("PostgreSQL unreachable (AGENTAUTH_TEST_REQUIRE_POSTGRES=1 makes it fail)")
    return str(pg_server.url)


@pytest.mark.parametrize("burst", [200, 400])
async def test_sigterm_during_a_burst_cancels_nothing(pg_url: str, burst: int) -> None:
    env = {"AGENTAUTH_DRAIN_SECONDS": str(DRAIN)}
    with cluster_on_postgres(pg_url, 1, extra_env=env) as (replicas, key):
        replica = replicas[0]
        exchange = await workload_exchange(replica.target, key)
        request = tpb.ExchangeTokenRequest(**exchange.fields())
        async with grpc.aio.insecure_channel(replica.target) as channel:
            stub = token_pb2_grpc.TokenServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            await stub.ExchangeToken(request, timeout=10)  # warm

            async def one() -> str:
                try:
                    await stub.ExchangeToken(request, timeout=30)
                    return "OK"
                except grpc.aio.AioRpcError as err:
                    return str(err.code().name)

            calls = [asyncio.create_task(one()) for _ in range(burst)]
            await asyncio.sleep(0.1)
            assert replica.proc is not None
            signalled = time.monotonic()
            os.kill(replica.proc.pid, signal.SIGTERM)
            await asyncio.sleep(0.2)
            status = (await health.Check(health_pb2.HealthCheckRequest(), timeout=2)).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
            outcomes = Counter(await asyncio.gather(*calls))
        code = await asyncio.to_thread(replica.proc.wait, 30)
        took = time.monotonic() - signalled
    assert outcomes["CANCELLED"] == 0, outcomes
    assert set(outcomes) <= {"OK", "UNAVAILABLE"}, outcomes
    assert outcomes["OK"] >= 1, outcomes
    assert code == 0 and took >= DRAIN, (code, took)
