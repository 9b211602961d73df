"""The issued-token record: written once per mint, read by introspection and revocation.

A mint does no reads (policies come from a short-lived cache) and writes one row
before the token is released. On PostgreSQL the rows of concurrent mints are
group-committed: whoever arrives while a write is in flight joins the next
batch, and one autocommit call of migration 0002's plpgsql function inserts the
whole batch (each row under its own org's row-level-security setting) in one
network round trip. Every caller still waits for its own row to be durable.
Round trips, not crypto, were the largest cost of a mint on this hardware
(bench/exchange_vs_health.py).

Each batch write and each caller's wait are bounded by the statement timeout
(:mod:`.deadline`): a stalled database fails the mint with STORAGE_UNAVAILABLE
and the token is never released, whether or not its row was written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Json
from sqlalchemy import String, bindparam, delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.domain.errors import AlreadyExists, StorageUnavailable, Unavailable
from control_plane.domain.scope import OrgScope
from control_plane.storage.deadline import BACKSTOP_SECONDS, bounded
from control_plane.storage.models import IssuedToken, RevocationEvent
from control_plane.storage.types import UTCDateTime

if TYPE_CHECKING:
    from control_plane.storage.db import Database
    from control_plane.storage.units import OrgTx


@dataclass(frozen=True, slots=True)
class IssuedTokenRecord:
    org_id: str
    jti: str
    subject: str
    client_id: str
    scopes: list[str]
    audiences: list[str]
    issue_time: dt.datetime
    expire_time: dt.datetime
    parent_jti: str | None = None
    root_jti: str | None = None
    txn: str | None = None


class ParentRevoked(Exception):
    """A child token was not recorded: its parent was revoked first (it is never issued)."""


_RECORD_BATCH = "SELECT agentauth_record_issued_tokens(%s)"
_PARENT_REVOKED_SQLSTATE = "AAR01"  # raised by migration 0005's function
MAX_BATCH = 256


def _row_json(rec: IssuedTokenRecord) -> dict[str, Any]:
    return {
        "org_id": rec.org_id,
        "jti": rec.jti,
        "subject": rec.subject,
        "client_id": rec.client_id,
        "scopes": rec.scopes,
        "audiences": rec.audiences,
        "issue_time": rec.issue_time.isoformat(),
        "expire_time": rec.expire_time.isoformat(),
        "parent_jti": rec.parent_jti,
        "root_jti": rec.root_jti,
        "txn": rec.txn,
    }


class IssuedTokenWriter:
    """Durably records tokens before they are handed out (fails closed)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._pending: list[tuple[IssuedTokenRecord, asyncio.Future[None]]] = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None  # keep a reference while it runs

    async def record(self, scope: OrgScope, rec: IssuedTokenRecord) -> None:
        if rec.org_id != scope.org_id:
            raise ValueError("the record belongs to another org than the scope")
        if not self.db.is_postgres:
            async with self.db.org_tx(scope) as tx:
                await tx.issued_tokens.insert(rec)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((rec, future))
        if not self._flushing:
            self._flushing = True
            self._task = asyncio.get_running_loop().create_task(self._flush())
        # Queued behind a batch that stalled, a caller would wait for that one and
        # then its own: its own bound applies from the moment it arrives.
        try:
            async with asyncio.timeout(self.db.timeouts.statement + BACKSTOP_SECONDS):
                await future
        except TimeoutError:
            raise StorageUnavailable(debug="issued-token write timed out") from None

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    await self._write([rec for rec, _ in batch])
                except Exception as exc:  # the batch failed: retry rows alone to attribute it
                    if len(batch) == 1:
                        _settle(batch[0][1], exc)
                        continue
                    if isinstance(exc, Unavailable):
                        # The database, not a row, failed: retrying row by row would
                        # only wait out the same bound once per row.
                        for _, future in batch:
                            _settle(future, StorageUnavailable(debug=exc.debug))
                        continue
                    for rec, future in batch:
                        try:
                            await self._write([rec])
                            _settle(future, None)
                        except Exception as row_exc:
                            _settle(future, row_exc)
                    continue
                for _, future in batch:
                    _settle(future, None)
        finally:
            self._flushing = False

    async def _write(self, rows: list[IssuedTokenRecord]) -> None:
        try:
            async with bounded(self.db.timeouts.statement) as dog:
                # A pooled connection cost a checkout and two autocommit switches per
                # batch, more than the insert: one dedicated autocommit connection.
                pg = await self.db.autocommit_connection()
                dog.guard(pg)
                try:
                    await pg.execute(
                        _RECORD_BATCH, (Json([_row_json(r) for r in rows]),), prepare=True
                    )
                except (psycopg.OperationalError, OSError, asyncio.CancelledError):
                    await self.db.drop_autocommit_connection(pg)  # the next batch reconnects
                    raise
        except psycopg.errors.UniqueViolation:
            raise AlreadyExists() from None
        except psycopg.Error as exc:
            if exc.sqlstate == _PARENT_REVOKED_SQLSTATE:
                raise ParentRevoked() from None
            if isinstance(exc, psycopg.OperationalError):
                raise StorageUnavailable(debug=type(exc).__name__) from None
            raise
        except OSError as exc:
            raise StorageUnavailable(debug=type(exc).__name__) from None


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    elif isinstance(exc, AlreadyExists | Unavailable | ParentRevoked):
        future.set_exception(exc)
    else:
        future.set_exception(StorageUnavailable(debug=type(exc).__name__))


_CHAIN_STATE = text(
    """
    WITH RECURSIVE chain(jti, parent_jti, revoke_time) AS (
        SELECT jti, parent_jti, revoke_time FROM issued_tokens
        WHERE org_id = :org AND jti = :jti
        UNION ALL
        SELECT p.jti, p.parent_jti, p.revoke_time FROM issued_tokens p
        JOIN chain c ON p.jti = c.parent_jti
        WHERE p.org_id = :org
    )
    SELECT count(*) AS links, count(revoke_time) AS revoked FROM chain
    """
)


# Selectors for bulk revocation: a fixed allow-list of columns, never caller text.
SELECTORS = {
    "jti": "jti",
    "subject": "subject",
    "client_id": "client_id",
    "txn": "txn",
    "all": None,
}


REVOCATION_CHANNEL = "agentauth_revocations"
EVENT_CHUNK = 500  # jtis per published event


# The advisory lock that serializes an org's revocations: OrgTx.lock("revocation")
# takes "agentauth.revocation:<org>", the key migration 0005's function shares.
REVOCATION_LOCK = "revocation"


# Validators allow clock skew; keep events a little past their tokens' expiry.
EVENT_RETENTION = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class PublishedRevocation:
    seq: int
    jtis: list[str]
    revoke_time: dt.datetime
    expire_time: dt.datetime


class IssuedTokens:
    """One org's issued-token records and its revocation feed."""

    def __init__(self, tx: OrgTx, session: AsyncSession) -> None:
        self._tx = tx
        self._s = session
        self.org_id = tx.org_id

    async def insert(self, rec: IssuedTokenRecord) -> None:
        """SQLite's record path: the row, refused if the parent is revoked meanwhile."""
        if rec.org_id != self.org_id:
            raise ValueError("the record belongs to another org than this transaction")
        await self._s.execute(
            insert(IssuedToken).values(
                org_id=rec.org_id,
                jti=rec.jti,
                subject=rec.subject,
                client_id=rec.client_id,
                scopes=rec.scopes,
                audiences=rec.audiences,
                issue_time=rec.issue_time,
                expire_time=rec.expire_time,
                revoke_time=None,
                parent_jti=rec.parent_jti,
                root_jti=rec.root_jti,
                txn=rec.txn,
            )
        )
        if rec.parent_jti is not None:
            # SQLite has one writer: after our insert, no revocation can run
            # until we commit, and the parent's state read here is current.
            parent_revoked = (
                await self._s.execute(
                    text(
                        "SELECT revoke_time IS NOT NULL FROM issued_tokens "
                        "WHERE org_id = :org AND jti = :jti"
                    ),
                    {"org": rec.org_id, "jti": rec.parent_jti},
                )
            ).scalar()
            if parent_revoked is None or bool(parent_revoked):  # SQLite answers 0 / 1
                raise ParentRevoked()

    async def get(self, jti: str) -> IssuedToken | None:
        stmt = select(IssuedToken).where(IssuedToken.org_id == self.org_id, IssuedToken.jti == jti)
        return (await self._s.execute(stmt)).scalar_one_or_none()

    async def active_chain(self, jti: str) -> bool:
        row = (await self._s.execute(_CHAIN_STATE, {"org": self.org_id, "jti": jti})).one()
        return bool(row.links) and not row.revoked

    async def revoke_matching(self, selector: str, value: str, now: dt.datetime) -> int:
        """Revoke every token matching ``selector`` and all their descendants.

        In the same transaction, the revoked jtis are appended to the org's
        revocation feed and, on PostgreSQL, every replica is notified at commit.
        Returns how many tokens this call revoked.
        """
        column = SELECTORS[selector]
        condition = f"AND {column} = :value" if column else ""
        tree = f"""
            WITH RECURSIVE tree(jti) AS (
                SELECT jti FROM issued_tokens WHERE org_id = :org {condition}
                UNION
                SELECT c.jti FROM issued_tokens c JOIN tree t ON c.parent_jti = t.jti
                WHERE c.org_id = :org
            )
        """  # noqa: S608 - the column comes from SELECTORS, values are bound
        live = "WHERE org_id = :org AND revoke_time IS NULL AND jti IN (SELECT jti FROM tree)"
        params: dict[str, object] = {"org": self.org_id, "now": now}
        if column:
            params["value"] = value
        statement = (
            text(
                f"{tree} UPDATE issued_tokens SET revoke_time = :now {live} "  # noqa: S608
                "RETURNING jti, expire_time"
            )
            .bindparams(bindparam("now", type_=UTCDateTime()))
            .columns(jti=String(), expire_time=UTCDateTime())
        )
        # Children being recorded hold this lock shared: the tree below is
        # computed only after they have committed (or been refused).
        await self._tx.lock(REVOCATION_LOCK)
        revoked = (await self._s.execute(statement, params)).all()
        for i in range(0, len(revoked), EVENT_CHUNK):
            chunk = revoked[i : i + EVENT_CHUNK]
            await self._s.execute(
                insert(RevocationEvent).values(
                    org_id=self.org_id,
                    jtis=[r.jti for r in chunk],
                    revoke_time=now,
                    expire_time=max(r.expire_time for r in chunk),
                )
            )
        if revoked:
            await self._tx.notify(REVOCATION_CHANNEL)
        # Events of tokens that have all expired tell a validator nothing.
        await self._s.execute(
            delete(RevocationEvent).where(
                RevocationEvent.org_id == self.org_id,
                RevocationEvent.expire_time < now - EVENT_RETENTION,
            )
        )
        return len(revoked)

    async def revocations_after(
        self, seq: int, now: dt.datetime, limit: int = 100
    ) -> list[PublishedRevocation]:
        rows = (
            await self._s.execute(
                select(RevocationEvent)
                .where(
                    RevocationEvent.org_id == self.org_id,
                    RevocationEvent.seq > seq,
                    RevocationEvent.expire_time >= now - EVENT_RETENTION,
                )
                .order_by(RevocationEvent.seq)
                .limit(limit)
            )
        ).scalars()
        return [
            PublishedRevocation(r.seq, list(r.jtis), r.revoke_time, r.expire_time) for r in rows
        ]

    async def latest_revocation_seq(self) -> int:
        value = (
            await self._s.execute(
                select(func.max(RevocationEvent.seq)).where(RevocationEvent.org_id == self.org_id)
            )
        ).scalar()
        return int(value or 0)


# Storage functions: one unit of work each, for callers that need just this.


async def get(db: Database, scope: OrgScope, jti: str) -> IssuedToken | None:
    async with db.org_tx(scope) as tx:
        return await tx.issued_tokens.get(jti)


async def active_chain(db: Database, scope: OrgScope, jti: str) -> bool:
    """The token is recorded and neither it nor any ancestor is revoked.

    Walking up the lineage at use time closes the race where a child is minted
    while its parent is being revoked: the child is dead the moment any link is.
    """
    async with db.org_tx(scope) as tx:
        return await tx.issued_tokens.active_chain(jti)


async def revoke_tree(db: Database, scope: OrgScope, jti: str, now: dt.datetime) -> int:
    """Revoke a token and every token exchanged from it, transitively (RFC 7009 §2.1)."""
    return await revoke_matching(db, scope, "jti", jti, now)


async def revoke_matching(
    db: Database, scope: OrgScope, selector: str, value: str, now: dt.datetime
) -> int:
    async with db.org_tx(scope) as tx:
        return await tx.issued_tokens.revoke_matching(selector, value, now)


async def revocations_after(
    db: Database, scope: OrgScope, seq: int, now: dt.datetime, limit: int = 100
) -> list[PublishedRevocation]:
    """The org's events after ``seq`` whose tokens have not all expired, oldest first."""
    async with db.org_tx(scope) as tx:
        return await tx.issued_tokens.revocations_after(seq, now, limit)


async def latest_revocation_seq(db: Database, scope: OrgScope) -> int:
    async with db.org_tx(scope) as tx:
        return await tx.issued_tokens.latest_revocation_seq()
