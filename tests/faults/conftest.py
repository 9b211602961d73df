"""An in-process control plane whose only road to PostgreSQL runs through a fault proxy.

PostgreSQL only: the faults here (a stalled or cut TCP path) do not exist for an
embedded SQLite file. The tests skip when PostgreSQL is unreachable, and fail
instead when ``AGENTAUTH_TEST_REQUIRE_POSTGRES=1`` (the ``pg_server`` fixture).
The real server is never stopped; the proxy makes the outage.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from control_plane.app import open_runtime, start_servers
from control_plane.clock import SystemClock
from control_plane.config import Settings
from control_plane.services.api_keys import ApiKeyService
from tests.faults.harness import (
    CONNECT_TIMEOUT,
    POOL_TIMEOUT,
    READINESS_INTERVAL,
    STATEMENT_TIMEOUT,
    FaultHarness,
    through,
)
from tests.faults.tcp_proxy import TcpProxy


@pytest.fixture
async def faulty(pg_server: Any, tmp_path: Path) -> AsyncIterator[FaultHarness]:
    if pg_server is None:
        pytest.skip("PostgreSQL unreachable (AGENTAUTH_TEST_REQUIRE_POSTGRES=1 makes it fail)")
    pg_server.truncate()
    real = urlsplit(pg_server.url)
    proxy = TcpProxy(real.hostname or "127.0.0.1", real.port or 5432)
    await proxy.start()
    settings = Settings(
        data_dir=tmp_path / "data",
        grpc_listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        database_url=through(pg_server.url, proxy.port),
        kek_provider="file",
        jwks_cache_ttl=dt.timedelta(minutes=5),
        db_statement_timeout=STATEMENT_TIMEOUT,
        db_pool_timeout=POOL_TIMEOUT,
        db_connect_timeout=CONNECT_TIMEOUT,
        readiness_interval=READINESS_INTERVAL,
        # The workload issuer emulator listens on http://127.0.0.1 (as in tests/api).
        outbound_loopback=True,
    )
    settings.data_dir.mkdir(mode=0o700)
    runtime = await open_runtime(settings, clock=SystemClock())
    _, key = await ApiKeyService(runtime.services).create_platform_key("faults")
    servers = await start_servers(runtime)
    h = FaultHarness(proxy, runtime, servers, key, pg_server.url, [])
    try:
        yield h
    finally:
        proxy.pass_traffic()
        for c in h._clients:
            await c.close()
        await servers.stop(0)
        await runtime.close()
        await proxy.close()
