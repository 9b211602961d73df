"""The encryption barrier: every secret at rest passes through here.

Envelope encryption, as in Vault's barrier: a KEK (see :mod:`.kek`) wraps one
random 256-bit data key (DEK) per *scope*, and the DEK seals the secrets of
that scope with AES-256-GCM (:mod:`.aead`). A scope is an organization id or
:data:`PLATFORM` (the deployment's own secrets: signing keys, page tokens).
Org DEKs live in ``org_deks`` under row-level security, so they are readable
only inside that org's transaction; the platform DEK lives in ``system_deks``.

Sealed blob, format 1::

    0x01 | DEK version (4 bytes, big-endian) | nonce (12) | ciphertext | tag (16)

The AAD is a length-prefixed encoding of ``("agentauth-barrier/1", format,
scope, table, row id, field, DEK version)``. It is not stored: the caller
supplies the context again to open, so a ciphertext copied to another row,
field, table or org fails authentication instead of decrypting (the "confused
deputy" that AWS KMS encryption context and GCP KMS AAD exist to prevent).
The header is authenticated too, because both of its values are in the AAD,
so a version can be neither swapped nor downgraded.

Nonces are random (:func:`.aead.seal`), which caps one DEK at 2**32 seals
(NIST SP 800-38D §8.3); :meth:`Barrier.rotate_org_dek` starts a fresh DEK
while old versions keep opening. Seals per DEK are not counted yet.

Failures raise :class:`BarrierError` with a generic message: never key
material or plaintext, and no fallback to storing or returning plaintext.
Database unavailability surfaces as ``Unavailable`` (retryable), not as a
barrier failure.
"""

from __future__ import annotations

import secrets
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from control_plane.clock import Clock, SystemClock
from control_plane.domain.errors import AgentAuthError, AlreadyExists, BarrierError
from control_plane.domain.scope import OrgScope
from control_plane.ids import is_id
from control_plane.storage.db import Database
from control_plane.storage.deks import WrappedDek
from control_plane.storage.units import OrgTx, PlatformTx
from control_plane.vault import aead
from control_plane.vault.dek_cache import TtlLru
from control_plane.vault.kek import KekError, KekProvider

__all__ = ["FORMAT_VERSION", "PLATFORM", "Barrier", "RewrapReport", "Scope"]

PLATFORM: Literal["platform"] = "platform"
#: Whose data key seals a secret: one org's (an OrgScope) or the deployment's own.
Scope: TypeAlias = OrgScope | Literal["platform"]
Unit: TypeAlias = OrgTx | PlatformTx


@dataclass(frozen=True, slots=True)
class DekRow:
    """A wrapped DEK and whose it is (the scope's key string: an org id or PLATFORM)."""

    scope: str
    version: int
    kek_version: str
    wrapped: bytes = b""

    def __repr__(self) -> str:
        return f"DekRow({self.scope!r}, v{self.version}, {self.kek_version!r})"


def _key(scope: Scope) -> str:
    """The cache and AAD key of a scope."""
    if isinstance(scope, OrgScope):
        return scope.org_id
    if scope != PLATFORM:
        raise BarrierError("invalid barrier scope")
    return PLATFORM


FORMAT_VERSION = 1
DEK_SIZE = aead.KEY_SIZE
_HEADER = struct.Struct(">BI")
_DATA_LABEL = b"agentauth-barrier/1"
# A different label for DEK wrapping keeps the two AAD families disjoint.
_DEK_LABEL = b"agentauth-dek/1"
_MAX_NAME = 255
# DEK versions live in a signed 32-bit column; a forged header above it must
# fail as a barrier error, not as a database type error.
_MAX_DEK_VERSION = 2**31 - 1


def _length_prefixed(*parts: bytes) -> bytes:
    # Length prefixes make the encoding injective: ("ab", "c") != ("a", "bc").
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def _dek_aad(scope: str, version: int) -> bytes:
    return _length_prefixed(_DEK_LABEL, scope.encode("ascii"), version.to_bytes(4, "big"))


@dataclass(frozen=True, slots=True)
class _Context:
    """The encoded (scope, table, row id, field) a secret is bound to."""

    scope: str
    parts: tuple[bytes, ...]

    def aad(self, dek_version: int) -> bytes:  # noqa: D102
        return _length_prefixed(
            _DATA_LABEL,
            bytes([FORMAT_VERSION]),
            *self.parts,
            dek_version.to_bytes(4, "big"),
        )


def _check_org(org_id: object) -> str:
    if not isinstance(org_id, str) or not is_id(org_id):
        raise BarrierError("invalid barrier scope")
    return org_id


def _context(scope: Scope, table: str, row_id: str, field: str) -> _Context:
    key = _key(scope)
    if key != PLATFORM:
        _check_org(key)
    encoded = [key.encode("ascii")]
    for value in (table, row_id, field):
        if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
            raise BarrierError("invalid barrier context")
        try:
            encoded.append(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise BarrierError("invalid barrier context") from None
    return _Context(key, tuple(encoded))


@dataclass(frozen=True, slots=True)
class RewrapReport:
    """Outcome of :meth:`Barrier.rotate_kek`.

    ``skipped`` counts DEKs already on the active version (including ones a
    concurrent run re-wrapped first, or that were shredded meanwhile).
    """

    total: int
    rewrapped: int
    skipped: int
    active_version: str


class Barrier:
    """Seals and opens secrets for one scope at a time; owns the DEK cache.

    Unwrapped DEKs are cached per (scope, version) for ``dek_cache_ttl``
    seconds, at most ``dek_cache_size`` of them (LRU). The TTL bounds how long
    a replica keeps using a DEK after another replica shredded it, and how long
    key material sits in memory; the size bounds memory for many orgs.
    """

    def __init__(
        self,
        db: Database,
        kek: KekProvider,
        *,
        clock: Clock | None = None,
        dek_cache_ttl: float = 300.0,
        dek_cache_size: int = 1024,
    ) -> None:
        self._db = db
        self._kek = kek
        self._clock: Clock = clock or SystemClock()
        self._deks: TtlLru[tuple[str, int], bytes] = TtlLru(
            dek_cache_size, dek_cache_ttl, self._clock
        )
        # Newest DEK version per scope, so that sealing does not query each time.
        self._newest: TtlLru[str, int] = TtlLru(dek_cache_size, dek_cache_ttl, self._clock)

    def __repr__(self) -> str:
        return f"<Barrier kek={self._kek.name} cached_deks={len(self._deks)}>"

    def __reduce__(self) -> Any:
        raise TypeError("the barrier holds key material and cannot be pickled or copied")

    # ------------------------------------------------------------- startup

    async def is_initialized(self) -> bool:
        """Whether a platform DEK exists (tells a fresh database from a missing KEK)."""
        async with self._db.platform_tx() as tx:
            return await tx.deks.get(None) is not None

    async def initialize(self, *, allow_create: bool) -> None:
        """Check at startup that the KEK opens the platform DEKs; create v1 if allowed.

        A wrong or missing KEK raises here, so the server refuses to start
        instead of failing on the first secret (or, worse, creating a second
        platform key next to one it cannot read).
        """
        async with self._db.platform_tx() as tx:
            rows = [_row(PLATFORM, d) for d in await tx.deks.all()]
        if not rows:
            if not allow_create:
                raise BarrierError("no platform key")
            try:
                await self._create_dek(PLATFORM, 1)
            except AlreadyExists:
                # Another replica initialized first: check that we can open its key.
                await self.initialize(allow_create=False)
            return
        for row in rows:
            try:
                dek = await self._unwrap(row)
            except BarrierError as exc:
                raise KekError(
                    "the configured KEK cannot unwrap the platform key (wrong or missing KEK?)",
                    debug=exc.debug,
                ) from None
            self._deks.put((PLATFORM, row.version), dek)
        self._newest.put(PLATFORM, rows[-1].version)

    # ------------------------------------------------------------- org keys

    async def create_org_key(self, tx: OrgTx, scope: OrgScope) -> None:
        """Insert DEK version 1 for the new org ``scope``, in that org's own transaction."""
        org_id = _own_tx(tx, scope)
        dek = secrets.token_bytes(DEK_SIZE)
        row = await self._wrap(org_id, 1, dek)
        await tx.deks.insert(
            WrappedDek(row.version, row.kek_version, row.wrapped), self._clock.now()
        )
        # Not cached here: the row is uncommitted. Reads through this transaction
        # may cache it; if the transaction rolls back, forget it again.
        tx.on_rollback(lambda: self.forget(org_id))

    async def rotate_org_dek(self, scope: OrgScope) -> int:
        """Add a DEK version for the org; new seals use it, old versions still open."""
        return await self._rotate_dek(scope)

    async def rotate_platform_dek(self) -> int:
        """Add a platform DEK version (same rules as :meth:`rotate_org_dek`)."""
        return await self._rotate_dek(PLATFORM)

    async def destroy_org_keys(self, tx: OrgTx, scope: OrgScope) -> None:
        """Crypto-shred an org: delete its DEKs in the org's own transaction ``tx``.

        Every secret sealed for the org becomes unreadable, wherever copies of
        the ciphertext live (backups included), once the deletion commits and
        caches expire: this process evicts now and again after commit (a
        concurrent reader may have re-cached in between); other replicas drop
        theirs within ``dek_cache_ttl``.
        """
        org_id = _own_tx(tx, scope)
        await tx.deks.delete_all()
        self.forget(org_id)
        tx.on_commit(lambda: self.forget(org_id))

    def forget(self, scope: Scope | str | None = None) -> None:
        """Drop cached DEKs: all of them, or one scope's (the invalidation hook)."""
        if isinstance(scope, OrgScope):
            scope = scope.org_id
        if scope is None:
            self._deks.discard(lambda _key: True)
            self._newest.discard(lambda _key: True)
            return
        self._deks.discard(lambda key: key[0] == scope)
        self._newest.discard(lambda key: key == scope)

    # ------------------------------------------------------------- sealing

    async def seal(
        self,
        scope: Scope,
        table: str,
        row_id: str,
        field: str,
        plaintext: bytes,
        *,
        tx: Unit | None = None,
    ) -> bytes:
        """Encrypt ``plaintext`` for (scope, table, row_id, field) under the newest DEK.

        Pass ``tx`` when calling inside a transaction of the same scope, so that
        a DEK lookup reuses its connection (SQLite allows one writer) and sees
        rows the transaction created.
        """
        context = _context(scope, table, row_id, field)
        if not isinstance(plaintext, bytes | bytearray):
            raise BarrierError("only bytes can be sealed")
        key = _key(scope)
        version = self._newest.get(key)
        if version is None:
            row = await self._fetch(scope, None, tx)
            dek = await self._dek_from_row(row)
            version = row.version
            self._newest.put(key, version)
        else:
            dek = await self._dek(scope, version, tx)
        header = _HEADER.pack(FORMAT_VERSION, version)
        return header + aead.seal(dek, bytes(plaintext), context.aad(version))

    async def open(
        self,
        scope: Scope,
        table: str,
        row_id: str,
        field: str,
        blob: bytes,
        *,
        tx: Unit | None = None,
    ) -> bytes:
        """Decrypt a blob from :meth:`seal` given the same context; else BarrierError."""
        context = _context(scope, table, row_id, field)
        if not isinstance(blob, bytes | bytearray) or len(blob) < _HEADER.size + aead.OVERHEAD:
            raise BarrierError()
        fmt, version = _HEADER.unpack_from(blob)
        if fmt != FORMAT_VERSION or not 1 <= version <= _MAX_DEK_VERSION:
            raise BarrierError()
        dek = await self._dek(scope, version, tx)
        return aead.open_(dek, bytes(blob[_HEADER.size :]), context.aad(version))

    # ------------------------------------------------------------- KEK rotation

    async def kek_versions_in_use(self) -> dict[str, int]:
        """How many DEKs each KEK version wraps; a version at 0 can be retired."""
        return dict(Counter(row.kek_version for row in await self._all_rows()))

    async def rotate_kek(
        self,
        *,
        progress: Callable[[int, int], None] | None = None,
        fault: Callable[[int], None] | None = None,
    ) -> RewrapReport:
        """Re-wrap every DEK under the active KEK version, one committed transaction each.

        If the provider can create versions and every DEK is already on the
        active one, a new version is created first; otherwise (env provider
        where the operator added a version, or a previous run that stopped
        part-way) the run re-wraps to the current active version. Rows already
        on it are skipped, so a crashed run resumes where it stopped, and each
        UPDATE is conditional on the KEK version it read, so concurrent runs
        never overwrite each other. The DEKs themselves do not change: sealed
        secrets are untouched and keep opening throughout.

        ``progress(done, total)`` is called after each DEK. ``fault(n)`` is
        called before re-wrapping the n-th DEK that needs it (from 1); tests
        raise from it to simulate a crash.
        """
        rows = await self._all_rows()
        active = self._kek.active_version()
        if self._kek.can_create_version() and all(r.kek_version == active for r in rows):
            active = await self._kek.create_version()
        total, rewrapped, skipped, attempted = len(rows), 0, 0, 0
        for done, row in enumerate(rows, start=1):
            if row.kek_version == active:
                skipped += 1
            else:
                attempted += 1
                if fault is not None:
                    fault(attempted)
                if await self._rewrap(row, active):
                    rewrapped += 1
                else:
                    skipped += 1
            if progress is not None:
                progress(done, total)
        return RewrapReport(total, rewrapped, skipped, active)

    async def _all_rows(self) -> list[DekRow]:
        """Every DEK (without wrapped bytes): system first, then org by org in id order.

        The org list comes from the platform table; each org's rows are read in
        that org's own transaction, the only place row-level security shows them.
        """
        async with self._db.platform_tx() as tx:
            rows = [_row(PLATFORM, d) for d in await tx.deks.all(with_keys=False)]
            org_ids = await tx.orgs.ids()
        for org_id in org_ids:
            async with self._db.org_tx(_job_scope(org_id)) as otx:
                rows.extend(_row(org_id, d) for d in await otx.deks.all(with_keys=False))
        return rows

    async def _rewrap(self, planned: DekRow, active: str) -> bool:
        # Read, then re-wrap outside any transaction (a KMS call must not hold
        # a connection or, on SQLite, a stale read snapshot), then one
        # conditional UPDATE in its own committed transaction.
        scope = _scope_of(planned.scope)
        async with self._unit(scope, None) as tx:
            found = await tx.deks.get(planned.version)
        if found is None or found.kek_version == active:
            return False  # shredded meanwhile, or a concurrent run got there first
        current = _row(planned.scope, found)
        dek = await self._unwrap(current)
        rewrapped = await self._wrap(current.scope, current.version, dek)
        async with self._unit(scope, None) as tx:
            return await tx.deks.replace_wrapping(found, rewrapped.kek_version, rewrapped.wrapped)

    def _unit(self, scope: Scope, tx: Unit | None) -> AbstractAsyncContextManager[Unit]:
        """The caller's transaction if given (same connection, sees its own rows), else ours."""
        if tx is not None:
            if isinstance(scope, OrgScope) != isinstance(tx, OrgTx) or (
                isinstance(tx, OrgTx) and tx.org_id != _key(scope)
            ):
                raise BarrierError("the transaction is not of the sealing scope")
            return _reuse(tx)
        if isinstance(scope, OrgScope):
            return self._db.org_tx(scope)
        return self._db.platform_tx()

    # ------------------------------------------------------------- DEK lookup

    async def _fetch(self, scope: Scope, version: int | None, tx: Unit | None) -> DekRow:
        """The DEK row (newest when ``version`` is None); missing means shredded or forged."""
        async with self._unit(scope, tx) as unit:
            found = await unit.deks.get(version)
        if found is None:
            raise BarrierError(debug="data key not found")
        return _row(_key(scope), found)

    async def _dek(self, scope: Scope, version: int, tx: Unit | None) -> bytes:
        cached = self._deks.get((_key(scope), version))
        if cached is not None:
            return cached
        return await self._dek_from_row(await self._fetch(scope, version, tx))

    async def _dek_from_row(self, row: DekRow) -> bytes:
        cached = self._deks.get((row.scope, row.version))
        if cached is not None:
            return cached
        dek = await self._unwrap(row)
        self._deks.put((row.scope, row.version), dek)
        return dek

    async def _create_dek(self, scope: Scope, version: int) -> None:
        """Insert a fresh DEK ``version`` in its own transaction, then cache it."""
        key = _key(scope)
        dek = secrets.token_bytes(DEK_SIZE)
        row = await self._wrap(key, version, dek)  # no connection held during a KMS call
        async with self._unit(scope, None) as tx:
            await tx.deks.insert(
                WrappedDek(row.version, row.kek_version, row.wrapped), self._clock.now()
            )
        self._deks.put((key, version), dek)
        self._newest.put(key, version)

    async def _rotate_dek(self, scope: Scope) -> int:
        async with self._unit(scope, None) as tx:
            newest = await tx.deks.get(None)
        if newest is None:
            raise BarrierError("no data key to rotate")
        try:
            await self._create_dek(scope, newest.version + 1)
        except AlreadyExists:
            # The primary key (scope, version) serializes concurrent rotations.
            raise BarrierError("a concurrent rotation added this DEK version; retry") from None
        return newest.version + 1

    # ------------------------------------------------------------- KEK calls

    async def _wrap(self, scope: str, version: int, dek: bytes) -> DekRow:
        try:
            kek_version, wrapped = await self._kek.wrap(dek, _dek_aad(scope, version))
        except AgentAuthError:
            raise
        except Exception as exc:
            # A KMS client may raise anything; fail closed, keep its text out.
            raise KekError(debug=type(exc).__name__) from None
        return DekRow(scope, version, kek_version, wrapped)

    async def _unwrap(self, row: DekRow) -> bytes:
        try:
            dek = await self._kek.unwrap(
                row.kek_version, row.wrapped, _dek_aad(row.scope, row.version)
            )
        except AgentAuthError:
            raise
        except Exception as exc:
            raise KekError(debug=type(exc).__name__) from None
        if len(dek) != DEK_SIZE:
            raise KekError(debug="unwrapped data key has the wrong size")
        return dek


def _own_tx(tx: object, scope: OrgScope) -> str:
    """The org's id, if ``tx`` is that org's own transaction; else refuse.

    On PostgreSQL a DELETE from any other transaction would match no rows under
    row-level security and "succeed": the org would look shredded without being so.
    """
    if not isinstance(tx, OrgTx) or not isinstance(scope, OrgScope) or tx.org_id != scope.org_id:
        raise BarrierError("org keys are created and destroyed in the org's own transaction")
    return _check_org(scope.org_id)


def _row(scope: str, dek: WrappedDek) -> DekRow:
    return DekRow(scope, dek.version, dek.kek_version, dek.wrapped)


def _job_scope(org_id: str) -> OrgScope:
    return OrgScope.for_platform_job(org_id, job="kek-rotation")


def _scope_of(key: str) -> Scope:
    return PLATFORM if key == PLATFORM else _job_scope(key)


@asynccontextmanager
async def _reuse(tx: Unit) -> AsyncIterator[Unit]:
    yield tx
