"""Shared fixtures: every storage-touching test runs on SQLite and on PostgreSQL.

PostgreSQL is real (never mocked): ``AGENTAUTH_TEST_DATABASE_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) names the server; the
suite creates its own throwaway database on it. When the server is unreachable the
PostgreSQL half is skipped, unless ``AGENTAUTH_TEST_REQUIRE_POSTGRES=1`` (CI), in
which case it fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from control_plane.storage.db import Database
from control_plane.storage.migrate import upgrade
from control_plane.storage.models import Base

PG_ADMIN_URL = os.environ.get(
    "AGENTAUTH_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_PG = os.environ.get("AGENTAUTH_TEST_REQUIRE_POSTGRES") == "1"
BACKENDS_RAN: set[str] = set()


def _pg_conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _pg_reachable() -> str | None:
    import psycopg

    try:
        with psycopg.connect(_pg_conninfo(PG_ADMIN_URL), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # pragma: no cover - depends on the machine
        return f"{type(exc).__name__}"


class PgServer:
    """A throwaway database on the real PostgreSQL server, created once per session."""

    def __init__(self) -> None:
        import psycopg

        self.name = f"agentauth_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_pg_conninfo(PG_ADMIN_URL), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        base = PG_ADMIN_URL.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"
        asyncio.run(upgrade(self.url))

    def new_database(self) -> str:
        """Another empty database, not migrated (for tests that need their own and
        migrate it themselves, e.g. through `control-plane migrate`)."""
        import psycopg

        name = f"agentauth_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_pg_conninfo(PG_ADMIN_URL), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self._extra = getattr(self, "_extra", []) + [name]
        return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"

    def truncate(self) -> None:
        import psycopg

        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        with psycopg.connect(_pg_conninfo(self.url), autocommit=True) as conn:
            conn.execute(f"TRUNCATE {tables} CASCADE")

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(_pg_conninfo(PG_ADMIN_URL), autocommit=True) as conn:
            for name in [self.name, *getattr(self, "_extra", [])]:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer | None]:
    problem = _pg_reachable()
    if problem is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL required but unreachable: {problem}")
        yield None
        return
    server = PgServer()
    try:
        yield server
    finally:
        server.drop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest,
    pg_server: PgServer | None,
    sqlite_template: Path,
    tmp_path: Path,
) -> str:
    """A migrated, empty database URL on each backend."""
    backend: str = request.param
    if backend == "postgresql":
        if pg_server is None:
            pytest.skip("PostgreSQL unreachable")
        pg_server.truncate()
        BACKENDS_RAN.add("postgresql")
        return pg_server.url
    path = tmp_path / "agentauth.db"
    shutil.copyfile(sqlite_template, path)
    BACKENDS_RAN.add("sqlite")
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    try:
        yield database
    finally:
        await database.dispose()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    ran = ", ".join(sorted(BACKENDS_RAN)) or "none"
    terminalreporter.write_line(f"database backends exercised: {ran}")
