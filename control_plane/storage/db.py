"""The database handle: one async engine, org-scoped and platform units of work.

Only :mod:`control_plane.storage` talks SQL. Everyone else opens a unit of work
and calls its repositories:

* ``async with db.org_tx(scope) as tx`` — a transaction that can see one
  organization's tenant rows (:class:`~control_plane.storage.units.OrgTx`). It
  takes an :class:`~control_plane.domain.scope.OrgScope`, never a bare id.
* ``async with db.platform_tx() as tx`` — platform tables only
  (:class:`~control_plane.storage.units.PlatformTx`).

Two walls stand behind every repository's own ``org_id`` filter:

* PostgreSQL: the runtime connects under the non-owner ``agentauth_app`` role
  and an org transaction sets the per-transaction ``app.org_id`` setting, which
  row-level security checks (``FORCE ROW LEVEL SECURITY``). A query that forgets
  its filter sees nothing of another org, and writes to another org fail.
* SQLite (the embedded default): every connection carries a function
  ``agentauth_org()`` that answers the org of the transaction running on it;
  triggers on every tenant table (migration 0009) abort an INSERT, UPDATE or
  DELETE of a row of any other org, and ORM reads in an org transaction get
  ``org_id = :org`` added for every tenant entity they touch
  (``with_loader_criteria``). A forgotten filter therefore reads nothing of
  another org and cannot write to it on either backend.

On PostgreSQL every wait is bounded (:mod:`.deadline`): connecting, a pool
checkout and each unit of work end to end. A unit of work that runs out of time
fails with ``STORAGE_UNAVAILABLE`` (retryable) and its connection is discarded; a
commit whose outcome is therefore unknown is never reported as done.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria
from sqlalchemy.pool import NullPool

from control_plane.domain.errors import (
    AgentAuthError,
    AlreadyExists,
    Internal,
    StorageUnavailable,
)
from control_plane.domain.scope import OrgScope
from control_plane.storage.deadline import DbTimeouts, Watchdog, bounded
from control_plane.storage.models import Base
from control_plane.storage.sqlite_guard import BYPASS, FUNCTION, GUARD_MESSAGE
from control_plane.storage.units import OrgTx, PlatformTx

APP_ROLE = "agentauth_app"
_ORG_KEY = "agentauth_org"  # Session.info key: the org of an org transaction
_GUARD_KEY = "agentauth_guard"  # connection-record info key: the SQLite guard state

_TENANT_MAPPERS = {m.class_: m for m in Base.registry.mappers if "org_id" in m.columns}


def normalize_url(url: str) -> str:
    """Accept the plain driver names too; we run psycopg 3 and aiosqlite."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


#: What libpq, psycopg and SQLite say when a connection fails -> what we tell the
#: operator. Only these fixed phrases are shown: the driver's own text names the
#: host, the user and the database, and a URL may carry a password.
_UNREACHABLE: tuple[tuple[str, str], ...] = (
    (r"connection refused", "connection refused (is the server running at that host and port?)"),
    (r'database ".*" does not exist', "the database does not exist (create it, then migrate)"),
    (r'role ".*" does not exist', "authentication failed (no such user)"),
    (r"authentication failed|no password supplied", "authentication failed (user or password)"),
    (r"no pg_hba\.conf entry", "the server refuses this client (pg_hba.conf)"),
    (
        r"resolve host|translate host name|name or service not known|nodename nor servname",
        "the host name does not resolve",
    ),
    (r"timeout expired|timed out", "the connection timed out"),
    (
        r"unable to open database file",
        "the SQLite file cannot be opened (does its directory exist?)",
    ),
)


def unreachable_reason(exc: BaseException) -> str | None:
    """Why a connection to the database failed, in a fixed phrase; None when ``exc``
    is not a connection failure (a bug, a migration error) and should propagate."""
    if isinstance(exc, TimeoutError | PoolTimeout):
        return "the connection timed out"
    if not isinstance(exc, OperationalError | psycopg.OperationalError | OSError):
        return None
    detail = str(exc.orig if isinstance(exc, DBAPIError) else exc).lower()
    for pattern, reason in _UNREACHABLE:
        if re.search(pattern, detail):
            return reason
    return f"connection failed ({type(exc).__name__})"


def libpq_url(sqlalchemy_url: str) -> str:
    """The engine URL as a plain libpq connection string for a raw psycopg connection."""
    scheme, rest = sqlalchemy_url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgresql") else sqlalchemy_url


@dataclass
class _Guard:
    """The org whose transaction runs on one SQLite connection (None: no org)."""

    org: str | None
    bypass: bool

    def current(self) -> str | None:
        return BYPASS if self.bypass else self.org


class Database:
    def __init__(
        self,
        url: str,
        *,
        app_role: str | None = APP_ROLE,
        pool_size: int = 10,
        timeouts: DbTimeouts | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self.dialect = "postgresql" if self.url.startswith("postgresql") else "sqlite"
        self.timeouts = timeouts or DbTimeouts()
        kwargs: dict[str, Any] = {
            # Bound values (future tokens, hashes) must never reach exception text.
            "hide_parameters": True,
        }
        if self.dialect == "postgresql":
            # No pre-ping: it costs a round trip per checkout; a dead connection
            # surfaces as UNAVAILABLE and is replaced by the pool.
            kwargs.update(
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_recycle=1800,
                pool_timeout=self.timeouts.pool,
                connect_args=self.connect_params(),
            )
        else:
            kwargs.update(connect_args={"timeout": 30})
            if ":memory:" in self.url:
                kwargs["poolclass"] = NullPool
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        # The owner (app_role=None) is the maintenance identity: migrations, test
        # snapshots. Like the PostgreSQL owner under RLS, it passes the SQLite guard.
        self.owner = app_role is None
        self.app_role = app_role if self.dialect == "postgresql" else None
        self._install_connect_hooks()
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._autocommit: Any = None
        self._autocommit_lock = asyncio.Lock()

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    @property
    def statement_timeout(self) -> float | None:
        """The bound on one unit of work (None on SQLite: a local file does not stall)."""
        return self.timeouts.statement if self.is_postgres else None

    def connect_params(self) -> dict[str, Any]:
        """libpq parameters for every PostgreSQL connection (pooled, autocommit, LISTEN)."""
        return self.timeouts.libpq_params()

    def _install_connect_hooks(self) -> None:
        sync_engine = self.engine.sync_engine
        if self.dialect == "sqlite":
            bypass = self.owner

            @event.listens_for(sync_engine, "connect")
            def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()
                guard = _Guard(None, bypass)
                record.info[_GUARD_KEY] = guard
                dbapi_conn.create_function(FUNCTION, 0, guard.current)

            @event.listens_for(sync_engine, "checkin")
            def _clear_guard(_dbapi_conn: Any, record: Any) -> None:
                guard = record.info.get(_GUARD_KEY)
                if guard is not None:
                    guard.org = None

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
    async def org_tx(self, scope: OrgScope) -> AsyncIterator[OrgTx]:
        """A transaction that can only see ``scope``'s tenant rows."""
        if not isinstance(scope, OrgScope):
            raise TypeError("org_tx needs an OrgScope (from the authenticated principal)")
        org_id = scope.org_id
        async with self._tx() as session:
            if self.is_postgres:
                await session.execute(
                    text("SELECT set_config('app.org_id', :org, true)"), {"org": org_id}
                )
            else:
                session.info[_ORG_KEY] = org_id
                raw = await (await session.connection()).get_raw_connection()
                guard = raw.info.get(_GUARD_KEY)
                if guard is not None:
                    guard.org = org_id
            yield OrgTx(self, session, scope)

    @contextlib.asynccontextmanager
    async def platform_tx(self) -> AsyncIterator[PlatformTx]:
        """A transaction for platform tables; tenant tables read as empty on PostgreSQL."""
        async with self._tx() as session:
            yield PlatformTx(self, session)

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncSession]:
        try:
            if self.is_postgres:
                async with self._bounded_tx() as session:
                    yield session
            else:
                async with self.sessions() as session, session.begin():
                    yield session
        except AgentAuthError:
            raise
        except PoolTimeout:
            raise StorageUnavailable(debug="pool checkout timed out") from None
        except IntegrityError as exc:
            if GUARD_MESSAGE in str(exc.orig):
                # The SQLite org guard fired: a statement reached another org's row.
                # A bug, never a caller's fault: INTERNAL, with the cause for the log.
                raise Internal(debug="org guard: " + GUARD_MESSAGE) from None
            # A unique constraint lost a race (or a duplicate slipped past a check).
            raise AlreadyExists() from None
        except (OperationalError, DBAPIError) as exc:
            if exc.connection_invalidated or isinstance(exc, OperationalError):
                raise StorageUnavailable(debug=type(exc.orig).__name__) from None
            raise

    @contextlib.asynccontextmanager
    async def _bounded_tx(self) -> AsyncIterator[AsyncSession]:
        """A PostgreSQL transaction that ends within ``timeouts.statement``, commit included.

        Every network step — checkout, the body's statements, COMMIT or ROLLBACK —
        runs inside the bound. When it runs out, the connection is discarded
        (invalidated: no ROLLBACK is sent down a link that stalled) and the unit
        of work fails with STORAGE_UNAVAILABLE. An interrupted COMMIT has an
        unknown outcome; it is reported as that failure, never as success.
        """
        session = self.sessions()
        dog: Watchdog | None = None
        try:
            async with bounded(self.timeouts.statement) as dog:
                try:
                    conn = await session.connection()  # pool_timeout, connect_timeout
                    dog.guard((await conn.get_raw_connection()).driver_connection)
                    yield session
                    await session.commit()
                except BaseException as exc:
                    interrupted = isinstance(exc, asyncio.CancelledError) or dog.expired
                    await _abandon(session, rollback=not interrupted)
                    raise
        except TimeoutError:
            if dog is None or not dog.expired:
                raise
            raise StorageUnavailable(debug="unit of work timed out") from None
        except DBAPIError:
            if dog is not None and dog.expired:
                raise StorageUnavailable(debug="unit of work timed out") from None
            raise
        finally:
            await session.close()

    @contextlib.asynccontextmanager
    async def _bounded_connection(self, seconds: float | None) -> AsyncIterator[Any]:
        """A pooled connection outside any unit of work, under the same bound."""
        async with bounded(seconds) as dog, self.engine.connect() as conn:
            if self.is_postgres:
                dog.guard((await conn.get_raw_connection()).driver_connection)
            yield conn

    async def notify_now(self, channel: str, payload: str) -> None:
        """PostgreSQL: NOTIFY outside any transaction (best effort; no-op on SQLite)."""
        if not self.is_postgres:
            return
        async with self._bounded_connection(self.statement_timeout) as conn:
            await conn.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": channel, "payload": payload},
            )
            await conn.commit()

    async def login_privileges(self) -> tuple[str, bool, bool]:
        """PostgreSQL: (login role, is it a superuser, does it own the schema's tables).

        The runtime ``SET ROLE``s to ``agentauth_app``, but ``RESET ROLE`` returns to
        the login role: that role should hold nothing itself (it only may become
        ``agentauth_app``), never superuser or owner rights.
        """
        async with self._bounded_connection(self.statement_timeout) as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT session_user AS login, r.rolsuper AS superuser, "
                        "COALESCE(pg_has_role(session_user, t.tableowner, 'USAGE'), false) "
                        "AS owner FROM pg_roles r LEFT JOIN pg_tables t "
                        "ON t.schemaname = current_schema() AND t.tablename = 'organizations' "
                        "WHERE r.rolname = session_user"
                    )
                )
            ).one()
        return str(row.login), bool(row.superuser), bool(row.owner)

    def listen_url(self) -> str:
        """A plain libpq URL for a dedicated LISTEN connection (PostgreSQL)."""
        return libpq_url(self.engine.url.render_as_string(hide_password=False))

    async def autocommit_connection(self) -> Any:
        """PostgreSQL: one shared autocommit connection outside the pool (as the runtime
        role), for single-statement writes on the hot path (issued-token group commit).
        psycopg serializes its users; it is closed by :meth:`dispose`."""
        conn = self._autocommit
        if conn is None or conn.closed:
            async with self._autocommit_lock:
                conn = self._autocommit
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(
                        self.listen_url(), autocommit=True, **self.connect_params()
                    )
                    if self.app_role:  # the same non-owner role as the pool: RLS applies
                        await conn.execute(f'SET ROLE "{self.app_role}"')
                    self._autocommit = conn
        return conn

    async def drop_autocommit_connection(self, conn: Any) -> None:
        if self._autocommit is conn:
            self._autocommit = None
        await conn.close()

    async def ping(self, within: float | None = None) -> bool:
        """SELECT 1 within ``within`` seconds (default: the statement bound); False on failure."""
        try:
            async with self._bounded_connection(within or self.statement_timeout) as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        conn, self._autocommit = self._autocommit, None
        if conn is not None:
            await conn.close()
        await self.engine.dispose()


async def _abandon(session: AsyncSession, *, rollback: bool) -> None:
    """End a failed transaction: ROLLBACK when the link is sound, else discard it.

    A ROLLBACK that fails (the link broke meanwhile) discards the connection too;
    the original error is what the caller sees.
    """
    if rollback:
        try:
            await session.rollback()
            return
        except Exception:  # noqa: S110 - discarding below is the answer to any failure
            pass
    await session.invalidate()


@event.listens_for(Session, "do_orm_execute")
def _org_reads_only(state: ORMExecuteState) -> None:
    """SQLite's read wall: ORM statements in an org transaction see only that org's rows.

    PostgreSQL needs none of this (row-level security); there ``Session.info``
    never carries the org key, so the hook costs one dict lookup.
    """
    org_id = state.session.info.get(_ORG_KEY)
    if org_id is None or not (state.is_select or state.is_update or state.is_delete):
        return
    for mapper in state.all_mappers:
        if mapper.class_ in _TENANT_MAPPERS:
            state.statement = state.statement.options(
                with_loader_criteria(
                    mapper.class_, mapper.class_.org_id == org_id, include_aliases=True
                )
            )
