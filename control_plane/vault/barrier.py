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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.clock import Clock, SystemClock
from control_plane.domain.errors import AgentAuthError, BarrierError
from control_plane.ids import is_id
from control_plane.storage.db import Database
from control_plane.vault import aead
from control_plane.vault.dek_cache import TtlLru
from control_plane.vault.dek_store import PLATFORM, DekRow, DekStore
from control_plane.vault.kek import KekError, KekProvider

__all__ = ["FORMAT_VERSION", "PLATFORM", "Barrier", "RewrapReport"]

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

    def aad(self, dek_version: int) -> bytes:
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


def _context(scope: str, table: str, row_id: str, field: str) -> _Context:
    if scope != PLATFORM:
        _check_org(scope)
    encoded = [scope.encode("ascii")]
    for value in (table, row_id, field):
        if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
            raise BarrierError("invalid barrier context")
        try:
            encoded.append(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise BarrierError("invalid barrier context") from None
    return _Context(scope, tuple(encoded))


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
        self._store = DekStore(db)
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
        return await self._store.has_system_rows()

    async def initialize(self, *, allow_create: bool) -> None:
        """Check at startup that the KEK opens the platform DEKs; create v1 if allowed.

        A wrong or missing KEK raises here, so the server refuses to start
        instead of failing on the first secret (or, worse, creating a second
        platform key next to one it cannot read).
        """
        async with self._store.tx(PLATFORM) as session:
            rows = await self._store.system_rows(session)
        if not rows:
            if not allow_create:
                raise BarrierError("no platform key")
            try:
                await self._create_dek(PLATFORM, 1)
            except IntegrityError:
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

    async def create_org_key(self, session: AsyncSession, org_id: str) -> None:
        """Insert DEK version 1 for a new org, in the caller's ``org_tx(org_id)``."""
        _check_org(org_id)
        dek = secrets.token_bytes(DEK_SIZE)
        row = await self._wrap(org_id, 1, dek)
        await self._store.insert(session, row, self._clock.now())
        # Not cached here: the row is uncommitted. Reads through this session
        # may cache it; if the transaction rolls back, forget it again.
        event.listen(session.sync_session, "after_rollback", self._forgetter(org_id), once=True)

    async def rotate_org_dek(self, org_id: str) -> int:
        """Add a DEK version for the org; new seals use it, old versions still open."""
        return await self._rotate_dek(_check_org(org_id))

    async def rotate_platform_dek(self) -> int:
        """Add a platform DEK version (same rules as :meth:`rotate_org_dek`)."""
        return await self._rotate_dek(PLATFORM)

    async def destroy_org_keys(self, session: AsyncSession, org_id: str) -> None:
        """Crypto-shred an org: delete its DEKs in the caller's ``org_tx(org_id)``.

        Every secret sealed for the org becomes unreadable, wherever copies of
        the ciphertext live (backups included), once the deletion commits and
        caches expire: this process evicts now and again after commit (a
        concurrent reader may have re-cached in between); other replicas drop
        theirs within ``dek_cache_ttl``.
        """
        await self._store.delete_org(session, _check_org(org_id))
        self.forget(org_id)
        event.listen(session.sync_session, "after_commit", self._forgetter(org_id), once=True)

    def forget(self, scope: str | None = None) -> None:
        """Drop cached DEKs: all of them, or one scope's (the invalidation hook)."""
        if scope is None:
            self._deks.discard(lambda _key: True)
            self._newest.discard(lambda _key: True)
            return
        self._deks.discard(lambda key: key[0] == scope)
        self._newest.discard(lambda key: key == scope)

    def _forgetter(self, scope: str) -> Callable[[Any], None]:
        return lambda _session: self.forget(scope)

    # ------------------------------------------------------------- sealing

    async def seal(
        self,
        scope: str,
        table: str,
        row_id: str,
        field: str,
        plaintext: bytes,
        *,
        session: AsyncSession | None = None,
    ) -> bytes:
        """Encrypt ``plaintext`` for (scope, table, row_id, field) under the newest DEK.

        Pass ``session`` when calling inside a transaction, so that a DEK
        lookup reuses its connection (SQLite allows one writer) and sees rows
        the transaction created.
        """
        context = _context(scope, table, row_id, field)
        if not isinstance(plaintext, bytes | bytearray):
            raise BarrierError("only bytes can be sealed")
        version = self._newest.get(scope)
        if version is None:
            row = await self._fetch(scope, None, session)
            dek = await self._dek_from_row(row)
            version = row.version
            self._newest.put(scope, version)
        else:
            dek = await self._dek(scope, version, session)
        header = _HEADER.pack(FORMAT_VERSION, version)
        return header + aead.seal(dek, bytes(plaintext), context.aad(version))

    async def open(
        self,
        scope: str,
        table: str,
        row_id: str,
        field: str,
        blob: bytes,
        *,
        session: AsyncSession | None = None,
    ) -> bytes:
        """Decrypt a blob from :meth:`seal` given the same context; else BarrierError."""
        context = _context(scope, table, row_id, field)
        if not isinstance(blob, bytes | bytearray) or len(blob) < _HEADER.size + aead.OVERHEAD:
            raise BarrierError()
        fmt, version = _HEADER.unpack_from(blob)
        if fmt != FORMAT_VERSION or not 1 <= version <= _MAX_DEK_VERSION:
            raise BarrierError()
        dek = await self._dek(scope, version, session)
        return aead.open_(dek, bytes(blob[_HEADER.size :]), context.aad(version))

    # ------------------------------------------------------------- KEK rotation

    async def kek_versions_in_use(self) -> dict[str, int]:
        """How many DEKs each KEK version wraps; a version at 0 can be retired."""
        return dict(Counter(row.kek_version for row in await self._store.all_rows()))

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
        rows = await self._store.all_rows()
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

    async def _rewrap(self, planned: DekRow, active: str) -> bool:
        # Read, then re-wrap outside any transaction (a KMS call must not hold
        # a connection or, on SQLite, a stale read snapshot), then one
        # conditional UPDATE in its own committed transaction.
        async with self._store.tx(planned.scope) as session:
            current = await self._store.get(session, planned.scope, planned.version)
        if current is None or current.kek_version == active:
            return False  # shredded meanwhile, or a concurrent run got there first
        dek = await self._unwrap(current)
        rewrapped = await self._wrap(current.scope, current.version, dek)
        return await self._store.replace_wrapping(current, rewrapped.kek_version, rewrapped.wrapped)

    # ------------------------------------------------------------- DEK lookup

    async def _fetch(self, scope: str, version: int | None, session: AsyncSession | None) -> DekRow:
        """The DEK row (newest when ``version`` is None); missing means shredded or forged."""
        async with self._store.use(scope, session) as active_session:
            row = await self._store.get(active_session, scope, version)
        if row is None:
            raise BarrierError(debug="data key not found")
        return row

    async def _dek(self, scope: str, version: int, session: AsyncSession | None) -> bytes:
        cached = self._deks.get((scope, version))
        if cached is not None:
            return cached
        return await self._dek_from_row(await self._fetch(scope, version, session))

    async def _dek_from_row(self, row: DekRow) -> bytes:
        cached = self._deks.get((row.scope, row.version))
        if cached is not None:
            return cached
        dek = await self._unwrap(row)
        self._deks.put((row.scope, row.version), dek)
        return dek

    async def _create_dek(self, scope: str, version: int) -> None:
        """Insert a fresh DEK ``version`` in its own transaction, then cache it."""
        dek = secrets.token_bytes(DEK_SIZE)
        row = await self._wrap(scope, version, dek)  # no connection held during a KMS call
        async with self._store.tx(scope) as session:
            await self._store.insert(session, row, self._clock.now())
        self._deks.put((scope, version), dek)
        self._newest.put(scope, version)

    async def _rotate_dek(self, scope: str) -> int:
        async with self._store.tx(scope) as session:
            newest = await self._store.get(session, scope, None)
        if newest is None:
            raise BarrierError("no data key to rotate")
        try:
            await self._create_dek(scope, newest.version + 1)
        except IntegrityError:
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
