"""The encryption barrier on SQLite and PostgreSQL (perf_security.md §B2.5 E1–E3, E5, E6).

Test names say which row of the catalogue they guard.
"""

from __future__ import annotations

import datetime as dt
import pickle
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from control_plane.clock import FakeClock
from control_plane.domain.scope import OrgScope
from control_plane.domain.errors import BarrierError
from control_plane.ids import new_id
from control_plane.storage.db import Database
from control_plane.storage.models import Organization, OrgDek, SystemDek
from control_plane.vault import aead
from control_plane.vault.barrier import PLATFORM, Barrier
from control_plane.vault.fakes import FaultyKek
from control_plane.vault.kek import EnvKekProvider, FileKekProvider, KekError
from tests.scopes import org_session, platform_session, scope

MakeOrg = Callable[[Barrier], Awaitable[OrgScope]]

CANARY = b"CANARY-vault-7d1e0b9a-refresh-token"
TABLE, ROW, FIELD = "connected_accounts", "0" * 31 + "1", "refresh_token"
HEADER = 5


def _version(blob: bytes) -> int:
    return int.from_bytes(blob[1:HEADER], "big")


def _assert_no_secret(err: BarrierError) -> None:
    text = f"{err} {err!r} {err.message} {err.debug} {err.metadata}"
    assert CANARY.decode() not in text
    assert err.reason == "BARRIER_FAILURE"


async def _fails(
    barrier: Barrier, scope: OrgScope | str, table: str, row: str, field: str, blob: bytes
) -> BarrierError:
    with pytest.raises(BarrierError) as info:
        await barrier.open(scope, table, row, field, blob)
    _assert_no_secret(info.value)
    return info.value


async def test_round_trip_org_and_platform(
    db: Database, barrier: Barrier, make_org: MakeOrg, kek: FaultyKek
) -> None:
    org = await make_org(barrier)
    blob = await barrier.seal(org, TABLE, ROW, FIELD, CANARY)
    assert CANARY not in blob
    assert blob[0] == 1 and _version(blob) == 1
    assert len(blob) == HEADER + aead.NONCE_SIZE + len(CANARY) + aead.TAG_SIZE
    assert await barrier.open(org, TABLE, ROW, FIELD, blob) == CANARY

    platform_blob = await barrier.seal(PLATFORM, "signing_keys", "kid-1", "private_key", CANARY)
    assert await barrier.open(PLATFORM, "signing_keys", "kid-1", "private_key", platform_blob) == (
        CANARY
    )
    # A replica with a cold cache reads the DEKs from the database.
    cold = Barrier(db, kek)
    assert await cold.open(org, TABLE, ROW, FIELD, blob) == CANARY
    assert await cold.open(PLATFORM, "signing_keys", "kid-1", "private_key", platform_blob) == (
        CANARY
    )
    empty = await barrier.seal(org, TABLE, ROW, FIELD, b"")
    assert await barrier.open(org, TABLE, ROW, FIELD, empty) == b""


# ------------------------------------------------------------------ E1: swaps


@pytest.mark.parametrize("swap", ["row", "field", "table", "org", "platform"])
async def test_e1_ciphertext_swap_fails(barrier: Barrier, make_org: MakeOrg, swap: str) -> None:
    org, other_org = await make_org(barrier), await make_org(barrier)
    blob = await barrier.seal(org, TABLE, ROW, FIELD, CANARY)
    await barrier.seal(other_org, TABLE, ROW, FIELD, b"warm the other org's cache")
    target = {
        "row": (org, TABLE, "0" * 31 + "2", FIELD),
        "field": (org, TABLE, ROW, "access_token"),
        "table": (org, "byok_keys", ROW, FIELD),
        "org": (other_org, TABLE, ROW, FIELD),
        "platform": (PLATFORM, TABLE, ROW, FIELD),
    }[swap]
    await _fails(barrier, *target, blob)
    assert await barrier.open(org, TABLE, ROW, FIELD, blob) == CANARY


async def test_e1_context_encoding_is_unambiguous(barrier: Barrier, make_org: MakeOrg) -> None:
    """Moving characters between fields must change the AAD (length prefixes)."""
    org = await make_org(barrier)
    blob = await barrier.seal(org, "ab", "c", FIELD, CANARY)
    await _fails(barrier, org, "a", "bc", FIELD, blob)
    await _fails(barrier, org, "abc", FIELD, FIELD, blob)


# ------------------------------------------------------------------ E3: tampering


async def test_e3_every_byte_flip_fails(barrier: Barrier, make_org: MakeOrg) -> None:
    org = await make_org(barrier)
    blob = await barrier.seal(org, TABLE, ROW, FIELD, b"hi")
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0xFF
        await _fails(barrier, org, TABLE, ROW, FIELD, bytes(bad))
    assert await barrier.open(org, TABLE, ROW, FIELD, blob) == b"hi"


async def test_e3_truncated_and_extended_blobs_fail(barrier: Barrier, make_org: MakeOrg) -> None:
    org = await make_org(barrier)
    blob = await barrier.seal(org, TABLE, ROW, FIELD, CANARY)
    for bad in (
        blob[:-1],
        blob[: -aead.TAG_SIZE],
        blob[: HEADER + aead.OVERHEAD - 1],
        blob[:HEADER],
        b"",
        blob + b"\x00",
        b"\x02" + blob[1:],
        b"\x00" + blob[1:],
    ):
        await _fails(barrier, org, TABLE, ROW, FIELD, bad)


async def test_e3_wrong_dek_version_header_fails(barrier: Barrier, make_org: MakeOrg) -> None:
    """The DEK version is in the AAD: it can be neither swapped nor downgraded (E4)."""
    org = await make_org(barrier)
    v1_blob = await barrier.seal(org, TABLE, ROW, FIELD, CANARY)
    assert await barrier.rotate_org_dek(org) == 2
    v2_blob = await barrier.seal(org, TABLE, ROW, FIELD, CANARY)
    assert _version(v2_blob) == 2
    relabel = {
        "v1-as-v2": b"\x01" + (2).to_bytes(4, "big") + v1_blob[HEADER:],
        "v2-as-v1": b"\x01" + (1).to_bytes(4, "big") + v2_blob[HEADER:],
        "v0": b"\x01" + (0).to_bytes(4, "big") + v1_blob[HEADER:],
        "v99": b"\x01" + (99).to_bytes(4, "big") + v1_blob[HEADER:],
        "vmax": b"\x01" + b"\xff\xff\xff\xff" + v1_blob[HEADER:],
    }
    for bad in relabel.values():
        await _fails(barrier, org, TABLE, ROW, FIELD, bad)


async def test_invalid_context_refused(barrier: Barrier, make_org: MakeOrg) -> None:
    org = await make_org(barrier)
    for scope, table, row, field in (
        ("ORG", TABLE, ROW, FIELD),
        (org.org_id.upper(), TABLE, ROW, FIELD),
        ("../" + org.org_id, TABLE, ROW, FIELD),
        (org, "", ROW, FIELD),
        (org, TABLE, "", FIELD),
        (org, TABLE, ROW, ""),
        (org, TABLE, ROW, "x" * 256),
        (org, TABLE, "\ud800", FIELD),
    ):
        with pytest.raises(BarrierError):
            await barrier.seal(scope, table, row, field, CANARY)
    with pytest.raises(BarrierError):
        await barrier.seal(org, TABLE, ROW, FIELD, CANARY.decode())  # type: ignore[arg-type]


# ------------------------------------------------------------------ E2: nonces


async def test_e2_nonce_unique_per_seal(
    barrier: Barrier, make_org: MakeOrg, kek: FaultyKek
) -> None:
    org = await make_org(barrier)
    unwraps_before = kek.calls["unwrap"]
    blobs = [await barrier.seal(org, TABLE, ROW, FIELD, CANARY) for _ in range(1000)]
    assert len(set(blobs)) == 1000
    assert len({b[HEADER : HEADER + aead.NONCE_SIZE] for b in blobs}) == 1000
    # One unwrap for all 1000: the DEK cache is doing its job.
    assert kek.calls["unwrap"] - unwraps_before == 1


# ------------------------------------------------------------------ DEK rotation


async def test_dek_rotation(
    db: Database, barrier: Barrier, make_org: MakeOrg, kek: FaultyKek
) -> None:
    org = await make_org(barrier)
    old = await barrier.seal(org, TABLE, ROW, FIELD, b"old")
    assert await barrier.rotate_org_dek(org) == 2
    new = await barrier.seal(org, TABLE, ROW, FIELD, b"new")
    assert (_version(old), _version(new)) == (1, 2)
    assert await barrier.open(org, TABLE, ROW, FIELD, old) == b"old"
    assert await barrier.open(org, TABLE, ROW, FIELD, new) == b"new"
    # Another replica (cold cache) also seals with the newest version.
    other = Barrier(db, kek)
    assert _version(await other.seal(org, TABLE, ROW, FIELD, b"x")) == 2
    assert await other.open(org, TABLE, ROW, FIELD, old) == b"old"
    assert await barrier.rotate_platform_dek() == 2
    assert _version(await barrier.seal(PLATFORM, TABLE, ROW, FIELD, b"p")) == 2


async def test_rotating_an_org_without_keys_fails(barrier: Barrier) -> None:
    with pytest.raises(BarrierError):
        await barrier.rotate_org_dek(new_id())


# ------------------------------------------------------------------ E5: startup, KEK failures


async def test_e5_initialize_without_create_on_empty_db(db: Database, kek: FaultyKek) -> None:
    barrier = Barrier(db, kek)
    assert not await barrier.is_initialized()
    with pytest.raises(BarrierError, match="no platform key"):
        await barrier.initialize(allow_create=False)
    assert not await barrier.is_initialized()
    await barrier.initialize(allow_create=True)
    assert await barrier.is_initialized()
    await Barrier(db, kek).initialize(allow_create=False)
    async with platform_session(db) as s:
        assert await s.scalar(select(func.count()).select_from(SystemDek)) == 1


async def test_e5_wrong_kek_at_initialize_refuses(
    db: Database, barrier: Barrier, tmp_path: Path
) -> None:
    wrong_file = FileKekProvider.create(tmp_path / "other" / "kek.json")  # same label, file:1
    wrong_env = EnvKekProvider("v1:" + "A" * 43 + "=")
    for wrong in (wrong_file, wrong_env):
        for allow_create in (False, True):
            with pytest.raises(KekError):
                await Barrier(db, wrong).initialize(allow_create=allow_create)
    async with platform_session(db) as s:
        assert await s.scalar(select(func.count()).select_from(SystemDek)) == 1


async def test_e5_kek_outage_fails_closed(
    db: Database, barrier: Barrier, make_org: MakeOrg, kek: FaultyKek
) -> None:
    org = await make_org(barrier)
    blob = await barrier.seal(org, TABLE, ROW, FIELD, CANARY)
    cold = Barrier(db, kek)
    kek.set_next_error(ConnectionError(f"kms unreachable; echoed {CANARY.decode()}"), sticky=True)
    for call in (
        cold.open(org, TABLE, ROW, FIELD, blob),
        cold.seal(org, TABLE, ROW, FIELD, CANARY),
        cold.initialize(allow_create=False),
    ):
        with pytest.raises(BarrierError) as info:
            await call
        _assert_no_secret(info.value)
        assert info.value.__cause__ is None
    kek.set_next_error(None)
    assert await cold.open(org, TABLE, ROW, FIELD, blob) == CANARY


# ------------------------------------------------------------------ transactions


async def test_session_is_used_inside_a_transaction(
    db: Database, barrier: Barrier, make_org: MakeOrg, kek: FaultyKek
) -> None:
    """On SQLite a second connection would not see uncommitted rows (or could block)."""
    org_id = scope(new_id())
    now = FakeClock().now()
    async with db.org_tx(org_id) as s:
        await s.create_org(
            Organization(
                id=org_id.org_id, display_name="x", state="ACTIVE", create_time=now,
                update_time=now,
            )
        )
        await barrier.create_org_key(s, org_id)
        blob = await barrier.seal(org_id, TABLE, ROW, FIELD, CANARY, tx=s)
        assert await barrier.open(org_id, TABLE, ROW, FIELD, blob, tx=s) == CANARY
    cold = Barrier(db, kek)
    async with db.org_tx(org_id) as s:
        assert await cold.open(org_id, TABLE, ROW, FIELD, blob, tx=s) == CANARY


async def test_rolled_back_org_key_is_not_left_in_the_cache(db: Database, barrier: Barrier) -> None:
    org_id = scope(new_id())
    now = FakeClock().now()
    with pytest.raises(RuntimeError):
        async with db.org_tx(org_id) as s:
            await s.create_org(
                Organization(
                    id=org_id.org_id, display_name="x", state="ACTIVE", create_time=now,
                    update_time=now,
                )
            )
            await barrier.create_org_key(s, org_id)
            await barrier.seal(org_id, TABLE, ROW, FIELD, CANARY, tx=s)
            raise RuntimeError("abort the org creation")
    with pytest.raises(BarrierError):
        await barrier.seal(org_id, TABLE, ROW, FIELD, CANARY)


# ------------------------------------------------------------------ crypto-shredding


async def test_crypto_shredding(
    db: Database, barrier: Barrier, make_org: MakeOrg, kek: FaultyKek
) -> None:
    doomed, kept = await make_org(barrier), await make_org(barrier)
    doomed_blobs = [await barrier.seal(doomed, TABLE, ROW, FIELD, CANARY)]
    await barrier.rotate_org_dek(doomed)
    doomed_blobs.append(await barrier.seal(doomed, TABLE, ROW, FIELD, CANARY))
    kept_blob = await barrier.seal(kept, TABLE, ROW, FIELD, b"kept")
    async with db.org_tx(doomed) as s:
        await barrier.destroy_org_keys(s, doomed)
    for blob in doomed_blobs:
        await _fails(barrier, doomed, TABLE, ROW, FIELD, blob)
        await _fails(Barrier(db, kek), doomed, TABLE, ROW, FIELD, blob)
    with pytest.raises(BarrierError):
        await barrier.seal(doomed, TABLE, ROW, FIELD, CANARY)
    assert await barrier.open(kept, TABLE, ROW, FIELD, kept_blob) == b"kept"
    async with org_session(db, doomed.org_id) as s:
        remaining = select(func.count()).select_from(OrgDek).where(
            OrgDek.org_id == doomed.org_id
        )
        assert await s.scalar(remaining) == 0


async def test_shredding_evicts_keys_cached_during_its_transaction(
    db: Database, barrier: Barrier, make_org: MakeOrg
) -> None:
    """A concurrent reader may re-cache the DEK before the deletion commits."""
    org = await make_org(barrier)
    blob = await barrier.seal(org, TABLE, ROW, FIELD, CANARY)
    async with db.org_tx(org) as s:
        await barrier.destroy_org_keys(s, org)
        # Another request, own connection: still sees the committed DEK row.
        assert await barrier.open(org, TABLE, ROW, FIELD, blob) == CANARY
    await _fails(barrier, org, TABLE, ROW, FIELD, blob)


async def test_shredding_outside_the_org_transaction_is_refused_or_exact(
    db: Database, barrier: Barrier, make_org: MakeOrg, kek: FaultyKek
) -> None:
    """On PostgreSQL RLS would make the DELETE match nothing; refuse instead of pretending."""
    org, other = await make_org(barrier), await make_org(barrier)
    blob = await barrier.seal(org, TABLE, ROW, FIELD, CANARY)
    other_blob = await barrier.seal(other, TABLE, ROW, FIELD, b"other")
    if db.is_postgres:
        for tx in (db.platform_tx(), db.org_tx(other)):
            with pytest.raises(BarrierError):
                async with tx as s:
                    await barrier.destroy_org_keys(s, org)
        assert await Barrier(db, kek).open(org, TABLE, ROW, FIELD, blob) == CANARY
    else:
        # No RLS on SQLite; the barrier refuses another transaction all the same.
        for tx in (db.platform_tx(), db.org_tx(other)):
            with pytest.raises(BarrierError):
                async with tx as s:
                    await barrier.destroy_org_keys(s, org)  # type: ignore[arg-type]
        assert await Barrier(db, kek).open(org, TABLE, ROW, FIELD, blob) == CANARY
    assert await barrier.open(other, TABLE, ROW, FIELD, other_blob) == b"other"


async def test_rolled_back_shredding_keeps_the_keys(
    db: Database, barrier: Barrier, make_org: MakeOrg
) -> None:
    org = await make_org(barrier)
    blob = await barrier.seal(org, TABLE, ROW, FIELD, CANARY)
    with pytest.raises(RuntimeError):
        async with db.org_tx(org) as s:
            await barrier.destroy_org_keys(s, org)
            raise RuntimeError("abort")
    assert await barrier.open(org, TABLE, ROW, FIELD, blob) == CANARY


# ------------------------------------------------------------------ E6: cache bounds


async def test_e6_dek_cache_expires(
    db: Database, barrier: Barrier, make_org: MakeOrg, clock: FakeClock
) -> None:
    org = await make_org(barrier)
    blob = await barrier.seal(org, TABLE, ROW, FIELD, CANARY)
    # Another replica shreds the org; this one keeps its cached DEK until the TTL.
    async with org_session(db, org.org_id) as s:
        await s.execute(delete(OrgDek).where(OrgDek.org_id == org.org_id))
    clock.advance(dt.timedelta(seconds=299))
    assert await barrier.open(org, TABLE, ROW, FIELD, blob) == CANARY
    clock.advance(dt.timedelta(seconds=2))
    await _fails(barrier, org, TABLE, ROW, FIELD, blob)


async def test_e6_dek_cache_is_bounded_lru(
    db: Database, barrier: Barrier, make_org: MakeOrg, kek: FaultyKek
) -> None:
    orgs = [await make_org(barrier) for _ in range(3)]
    blobs = {o: await barrier.seal(o, TABLE, ROW, FIELD, o.org_id.encode()) for o in orgs}
    small = Barrier(db, kek, dek_cache_size=2)
    a, b, c = orgs

    async def unwraps_for(org: OrgScope) -> int:
        before = kek.calls["unwrap"]
        assert await small.open(org, TABLE, ROW, FIELD, blobs[org]) == org.org_id.encode()
        return kek.calls["unwrap"] - before

    assert [await unwraps_for(o) for o in (a, b, c)] == [1, 1, 1]
    assert await unwraps_for(c) == 0  # cached
    assert await unwraps_for(b) == 0
    assert await unwraps_for(a) == 1  # least recently used, evicted
    assert await unwraps_for(c) == 1  # evicted by a


async def test_e6_cache_can_be_disabled_and_rejects_nonsense(
    db: Database, barrier: Barrier, make_org: MakeOrg, kek: FaultyKek
) -> None:
    org = await make_org(barrier)
    blob = await barrier.seal(org, TABLE, ROW, FIELD, CANARY)
    uncached = Barrier(db, kek, dek_cache_size=0)
    before = kek.calls["unwrap"]
    for _ in range(3):
        assert await uncached.open(org, TABLE, ROW, FIELD, blob) == CANARY
    assert kek.calls["unwrap"] - before == 3
    for bad in ({"dek_cache_ttl": -1.0}, {"dek_cache_size": -1}):
        with pytest.raises(ValueError):
            Barrier(db, kek, **bad)


def test_barrier_refuses_to_be_pickled(db: Database, kek: FaultyKek) -> None:
    with pytest.raises(TypeError):
        pickle.dumps(Barrier(db, kek))
    assert "kek=file" in repr(Barrier(db, kek))
