"""The database handle: one async engine, org-scoped and platform transactions.

An org-scoped transaction sets the per-transaction ``app.org_id`` setting on
PostgreSQL, which row-level security checks (the second wall behind the
repositories' own ``org_id`` filters). The runtime connects under the
non-owner ``agentauth_app`` role so that RLS applies even to a superuser login.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from control_plane.domain.errors import AgentAuthError, AlreadyExists, Unavailable
from control_plane.ids import is_id

APP_ROLE = "agentauth_app"


def normalize_url(url: str) -> str:
    """Accept the plain driver names too; we run psycopg 3 and aiosqlite."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


class Database:
    def __init__(self, url: str, *, app_role: str | None = APP_ROLE, pool_size: int = 10) -> None:
        self.url = normalize_url(url)
        self.dialect = "postgresql" if self.url.startswith("postgresql") else "sqlite"
        kwargs: dict[str, Any] = {
            # Bound values (future tokens, hashes) must never reach exception text.
            "hide_parameters": True,
        }
        if self.dialect == "postgresql":
            # No pre-ping: it costs a round trip per checkout; a dead connection
            # surfaces as UNAVAILABLE and is replaced by the pool.
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)
        else:
            kwargs.update(connect_args={"timeout": 30})
            if ":memory:" in self.url:
                kwargs["poolclass"] = NullPool
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        self.app_role = app_role if self.dialect == "postgresql" else None
        self._install_connect_hooks()
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def _install_connect_hooks(self) -> None:
        sync_engine = self.engine.sync_engine
        if self.dialect == "sqlite":

            @event.listens_for(sync_engine, "connect")
            def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

        elif self.app_role:
            role = self.app_role

            @event.listens_for(sync_engine, "connect")
            def _pg_role(dbapi_conn: Any, _record: Any) -> None:
                # Drop owner/superuser rights for the life of the connection so
                # that row-level security applies to every runtime query.
                autocommit = dbapi_conn.autocommit
                dbapi_conn.autocommit = True
                cur = dbapi_conn.cursor()
                cur.execute(f'SET ROLE "{role}"')
                cur.close()
                dbapi_conn.autocommit = autocommit

    @contextlib.asynccontextmanager
    async def org_tx(self, org_id: str) -> AsyncIterator[AsyncSession]:
        """A transaction that can only see ``org_id``'s tenant rows."""
        if not is_id(org_id):
            raise ValueError("org_tx needs a well-formed org id")
        async with self._tx() as session:
            if self.is_postgres:
                await session.execute(
                    text("SELECT set_config('app.org_id', :org, true)"), {"org": org_id}
                )
            yield session

    @contextlib.asynccontextmanager
    async def platform_tx(self) -> AsyncIterator[AsyncSession]:
        """A transaction for platform tables; tenant tables read as empty on PostgreSQL."""
        async with self._tx() as session:
            yield session

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self.sessions() as session, session.begin():
                yield session
        except AgentAuthError:
            raise
        except IntegrityError:
            # A unique constraint lost a race (or a duplicate slipped past a check).
            raise AlreadyExists() from None
        except (OperationalError, DBAPIError) as exc:
            if exc.connection_invalidated or isinstance(exc, OperationalError):
                raise Unavailable(debug=type(exc.orig).__name__) from None
            raise

    async def xact_lock(self, session: Any, key: str) -> None:
        """PostgreSQL: hold the advisory lock named ``key`` until the transaction ends.

        SQLite has one writer, so its transactions are serialized already.
        """
        if self.is_postgres:
            await session.execute(
                text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": key}
            )

    async def notify(self, session: Any, channel: str, payload: str) -> None:
        """PostgreSQL: NOTIFY ``channel`` when the transaction commits (no-op on SQLite)."""
        if self.is_postgres:
            await session.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": channel, "payload": payload},
            )

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()
