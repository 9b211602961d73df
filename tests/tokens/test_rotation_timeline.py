"""The signing-key timeline on a real database (SQLite and PostgreSQL) and barrier.

perf_security.md §B1 "Key rotation overlap": publish the next key >= one JWKS
cache TTL before signing with it; keep a retired key published >= the maximum
token lifetime after its last signature; taint removes a key at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select, update

from control_plane.clock import FakeClock
from control_plane.domain.errors import BarrierError, Internal, NotFound
from control_plane.storage.db import Database
from control_plane.storage.models import SigningKey
from control_plane.tokens.jws import TOKEN_KEY_UNKNOWN, TokenInvalid, verify_compact
from control_plane.tokens.keys import SigningKeyManager
from control_plane.vault.barrier import PLATFORM, Barrier
from control_plane.vault.kek import FileKekProvider
from tests.scopes import platform_session

CACHE_TTL = dt.timedelta(minutes=5)
MAX_TOKEN_TTL = dt.timedelta(minutes=15)
SECOND = dt.timedelta(seconds=1)
CLAIMS = {"sub": "user-1", "scope": "read"}


MakeManager = Callable[..., SigningKeyManager]


@pytest.fixture
def make_manager(db: Database, barrier: Barrier, clock: FakeClock) -> MakeManager:
    """``make_manager(**overrides)``: a manager on the shared db, barrier and clock."""

    def _make(**overrides: Any) -> SigningKeyManager:
        kwargs: dict[str, Any] = {
            "clock": clock,
            "jwks_cache_ttl": CACHE_TTL,
            "max_token_ttl": MAX_TOKEN_TTL,
        }
        kwargs.update(overrides)
        return SigningKeyManager(db, kwargs.pop("barrier", barrier), **kwargs)

    return _make


def published(manager: SigningKeyManager) -> list[str]:
    return [key["kid"] for key in manager.jwks()["keys"]]


def signer(manager: SigningKeyManager) -> str:
    """The kid of a fresh token, after checking it verifies against the current JWKS."""
    header, _ = verify_compact(manager.sign(CLAIMS), manager.jwks(), algorithms=[manager.algorithm])
    kid = header["kid"]
    assert isinstance(kid, str)
    return kid


async def bootstrapped(make_manager: MakeManager, **kwargs: Any) -> tuple[SigningKeyManager, str]:
    manager = make_manager(**kwargs)
    kid = await manager.ensure_initial_key()
    assert kid is not None
    return manager, kid


async def test_bootstrap_key_is_published_and_active_at_once(make_manager: MakeManager) -> None:
    manager = make_manager()
    assert not manager.loaded
    first = await manager.ensure_initial_key()
    assert manager.loaded
    assert first is not None
    assert published(manager) == [first]
    assert signer(manager) == first
    # Idempotent: a signer exists, so nothing new is created.
    assert await manager.ensure_initial_key() is None
    assert published(manager) == [first]


async def test_rotate_publishes_at_once_and_signs_after_one_cache_ttl(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    manager, old = await bootstrapped(make_manager)
    clock.advance(dt.timedelta(hours=1))
    new = await manager.rotate()
    assert new != old
    assert published(manager) == [old, new]
    assert signer(manager) == old

    clock.advance(CACHE_TTL - dt.timedelta(microseconds=1))
    assert signer(manager) == old
    clock.advance(dt.timedelta(microseconds=1))  # exactly rotate time + cache TTL
    assert signer(manager) == new
    assert published(manager) == [old, new]


async def test_no_verifier_meets_a_new_kid_while_another_replica_has_not_published_it(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    # Two replicas; B reloads keys every RELOAD. A verifier fetches B's JWKS the
    # instant before B's reload and caches it for one CACHE_TTL: the first token
    # under the new kid (from A) must come after that copy expired.
    reload = dt.timedelta(seconds=30)
    a, old = await bootstrapped(make_manager, publish_lag=reload)
    b = make_manager(publish_lag=reload)
    await b.load()
    clock.advance(dt.timedelta(hours=1))
    new = await a.rotate()
    clock.advance(reload - dt.timedelta(microseconds=1))
    cached_from_b = b.jwks()  # B has not reloaded yet
    assert [k["kid"] for k in cached_from_b["keys"]] == [old]
    cache_expires = clock.now() + CACHE_TTL
    clock.advance(dt.timedelta(microseconds=1))
    await b.load()  # B's reload: now it publishes the new key
    assert published(b) == [old, new]
    while True:  # up to and including the last instant that copy is used
        token = a.sign(CLAIMS)
        verify_compact(token, cached_from_b, algorithms=["ES256"])  # no unknown kid
        if clock.now() == cache_expires:
            break
        clock.advance(min(dt.timedelta(seconds=15), cache_expires - clock.now()))
    clock.advance(dt.timedelta(microseconds=1))
    assert signer(a) == new  # and not a moment later than needed


def test_a_negative_publish_lag_is_refused(make_manager: MakeManager) -> None:
    with pytest.raises(ValueError, match="publish_lag"):
        make_manager(publish_lag=-SECOND)


async def test_retired_key_stays_published_for_the_max_token_lifetime(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    manager, old = await bootstrapped(make_manager)
    new = await manager.rotate()
    clock.advance(CACHE_TTL - dt.timedelta(microseconds=1))
    last_token_by_old = manager.sign(CLAIMS)  # `old`'s last signature
    assert verify_compact(last_token_by_old, manager.jwks(), algorithms=["ES256"])[0]["kid"] == old
    clock.advance(dt.timedelta(microseconds=1))  # `new` activates

    clock.advance(MAX_TOKEN_TTL)  # activation + max_token_ttl: still published
    assert published(manager) == [old, new]
    verify_compact(last_token_by_old, manager.jwks(), algorithms=["ES256"])
    assert await manager.prune() == []

    clock.advance(SECOND)
    assert published(manager) == [new]
    with pytest.raises(TokenInvalid) as excinfo:
        verify_compact(last_token_by_old, manager.jwks(), algorithms=["ES256"])
    assert excinfo.value.reason == TOKEN_KEY_UNKNOWN

    assert await manager.prune() == [old]
    assert [s.kid for s in manager.keys_summary()] == [new]
    assert signer(manager) == new


async def test_taint_of_the_signer_removes_it_at_once_and_activates_a_replacement(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    manager, first = await bootstrapped(make_manager)
    token = manager.sign(CLAIMS)
    clock.advance(SECOND)
    await manager.taint(first)

    assert first not in published(manager)
    (replacement,) = published(manager)
    assert signer(manager) == replacement
    with pytest.raises(TokenInvalid) as excinfo:
        verify_compact(token, manager.jwks(), algorithms=["ES256"])
    assert excinfo.value.reason == TOKEN_KEY_UNKNOWN
    states = {s.kid: s.state for s in manager.keys_summary()}
    assert states == {first: "tainted", replacement: "active"}

    await manager.taint(first)  # idempotent, no second replacement
    assert published(manager) == [replacement]
    assert await manager.prune() == [first]


async def test_taint_of_a_pending_key_keeps_the_current_signer(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    manager, first = await bootstrapped(make_manager)
    pending = await manager.rotate()
    await manager.taint(pending)
    assert published(manager) == [first]
    clock.advance(CACHE_TTL + SECOND)
    assert signer(manager) == first  # the tainted key never took over
    assert [s.state for s in manager.keys_summary()] == ["active", "tainted"]


async def test_taint_after_rotation_never_revives_the_retired_key(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    manager, first = await bootstrapped(make_manager)
    second = await manager.rotate()
    clock.advance(CACHE_TTL + SECOND)
    assert signer(manager) == second
    await manager.taint(second)
    third = signer(manager)
    assert third not in (first, second)
    # `first` stopped signing when `second` activated; its window is unchanged.
    assert published(manager) == [first, third]
    clock.advance(MAX_TOKEN_TTL)
    assert published(manager) == [third]
    # The tainted key dated `first`'s retirement; both go once `first` is done.
    assert sorted(await manager.prune()) == sorted([first, second])


async def test_prune_keeps_a_tainted_key_that_dates_a_published_retirement(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    manager, first = await bootstrapped(make_manager)
    second = await manager.rotate()
    clock.advance(CACHE_TTL + SECOND)
    await manager.taint(second)
    replacement = signer(manager)
    assert await manager.prune() == []  # `first` still needs `second`'s activation time
    assert published(manager) == [first, replacement]
    clock.advance(MAX_TOKEN_TTL + SECOND)
    assert sorted(await manager.prune()) == sorted([first, second])


async def test_taint_of_an_unknown_kid_is_not_found(make_manager: MakeManager) -> None:
    manager, _ = await bootstrapped(make_manager)
    with pytest.raises(NotFound):
        await manager.taint("no-such-kid")


async def test_maybe_rotate_respects_the_interval_and_pending_keys(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    interval = dt.timedelta(days=30)
    manager, first = await bootstrapped(make_manager)
    assert await manager.maybe_rotate(interval) is None
    clock.advance(interval - SECOND)
    assert await manager.maybe_rotate(interval) is None
    clock.advance(SECOND)
    second = await manager.maybe_rotate(interval)
    assert second is not None
    assert await manager.maybe_rotate(interval) is None  # pending key: no double rotation
    clock.advance(CACHE_TTL)
    assert signer(manager) == second
    assert await manager.maybe_rotate(interval) is None  # interval counts from activation
    assert published(manager) == [first, second]


async def test_maybe_rotate_from_two_replicas_at_once_rotates_once(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    interval = dt.timedelta(days=1)
    one, _ = await bootstrapped(make_manager)
    two = make_manager()
    await two.load()
    clock.advance(interval)
    results = await asyncio.gather(*(m.maybe_rotate(interval) for m in (one, two, one, two)))
    assert sum(r is not None for r in results) == 1
    await one.load()
    assert len(one.keys_summary()) == 2


async def test_keys_survive_a_reload_by_another_replica(
    db: Database, make_manager: MakeManager, kek_path: Path, clock: FakeClock
) -> None:
    manager, first = await bootstrapped(make_manager)
    await manager.rotate()
    # Another replica: its own barrier (cold DEK cache) and KEK handle on the same files.
    other_barrier = Barrier(db, FileKekProvider(kek_path), clock=clock)
    await other_barrier.initialize(allow_create=False)
    replica = make_manager(barrier=other_barrier)
    await replica.load()
    assert replica.jwks_json() == manager.jwks_json()
    token = replica.sign(CLAIMS)
    header, payload = verify_compact(token, manager.jwks(), algorithms=["ES256"])
    assert header == {"alg": "ES256", "kid": first, "typ": "at+jwt"}
    assert json.loads(payload) == CLAIMS
    # And the other way round, after the switch.
    clock.advance(CACHE_TTL)
    verify_compact(manager.sign(CLAIMS), replica.jwks(), algorithms=["ES256"])


async def test_eddsa_keys_sign_and_verify(make_manager: MakeManager) -> None:
    manager, kid = await bootstrapped(make_manager, algorithm="EdDSA")
    (jwk,) = manager.jwks()["keys"]
    assert jwk == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": jwk["x"],
        "kid": kid,
        "alg": "EdDSA",
        "use": "sig",
    }
    header, _ = verify_compact(manager.sign(CLAIMS), manager.jwks(), algorithms=["EdDSA"])
    assert header["alg"] == "EdDSA"
    with pytest.raises(TokenInvalid):
        verify_compact(manager.sign(CLAIMS), manager.jwks(), algorithms=["ES256"])


async def test_verification_keys_match_the_jwks(make_manager: MakeManager) -> None:
    manager, _ = await bootstrapped(make_manager)
    await manager.rotate()
    key_set = manager.verification_keys()
    assert key_set.to_dict() == manager.jwks()
    verify_compact(manager.sign(CLAIMS), key_set, algorithms=["ES256"])


async def test_jwks_shape_and_canonical_json(make_manager: MakeManager) -> None:
    manager, kid = await bootstrapped(make_manager)
    (jwk,) = manager.jwks()["keys"]
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"], jwk["kid"]) == (
        "EC",
        "P-256",
        "ES256",
        "sig",
        kid,
    )
    text = manager.jwks_json()
    assert text == json.dumps(manager.jwks(), sort_keys=True, separators=(",", ":"))
    assert manager.jwks_json() == text  # stable between calls


async def test_the_database_holds_no_private_key_plaintext(
    db: Database, make_manager: MakeManager, barrier: Barrier
) -> None:
    manager, kid = await bootstrapped(make_manager)
    async with platform_session(db) as session:
        row = (await session.execute(select(SigningKey).where(SigningKey.kid == kid))).scalar_one()
        sealed, public_jwk = row.sealed_private_key, row.public_jwk
    der = await barrier.open(PLATFORM, "signing_keys", kid, "private_key", sealed)
    private = serialization.load_der_private_key(der, password=None)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    scalar = private.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    for secret in (der, pem, scalar, b"PRIVATE KEY"):
        assert secret not in sealed
    assert '"d"' not in public_jwk
    assert all(not hasattr(s, "private") for s in manager.keys_summary())


async def test_a_sealed_key_moved_to_another_row_does_not_open(
    db: Database, make_manager: MakeManager
) -> None:
    manager, first = await bootstrapped(make_manager)
    second = await manager.rotate()
    async with platform_session(db) as session:
        sealed = (
            await session.execute(
                select(SigningKey.sealed_private_key).where(SigningKey.kid == first)
            )
        ).scalar_one()
        await session.execute(
            update(SigningKey).where(SigningKey.kid == second).values(sealed_private_key=sealed)
        )
    with pytest.raises(BarrierError):
        await make_manager().load()


async def test_a_tampered_public_jwk_is_refused_on_load(
    db: Database, make_manager: MakeManager
) -> None:
    manager, kid = await bootstrapped(make_manager)
    jwk = dict(manager.jwks()["keys"][0])
    jwk["x"] = jwk["y"]
    async with platform_session(db) as session:
        await session.execute(
            update(SigningKey).where(SigningKey.kid == kid).values(public_jwk=json.dumps(jwk))
        )
    with pytest.raises(Internal) as excinfo:
        await make_manager().load()
    assert excinfo.value.reason == "SIGNING_KEY_CORRUPT"


async def test_sign_needs_a_loaded_active_key(make_manager: MakeManager) -> None:
    manager = make_manager()
    with pytest.raises(Internal):
        manager.sign(CLAIMS)
    await manager.load()  # empty table
    assert manager.jwks() == {"keys": []}
    with pytest.raises(Internal) as excinfo:
        manager.sign(CLAIMS)
    assert excinfo.value.reason == "SIGNING_KEY_UNAVAILABLE"


async def test_keys_summary_lists_states_without_secrets(
    make_manager: MakeManager, clock: FakeClock
) -> None:
    manager, first = await bootstrapped(make_manager)
    second = await manager.rotate()
    summary = {s.kid: s for s in manager.keys_summary()}
    assert (summary[first].state, summary[second].state) == ("active", "pending")
    assert summary[second].activate_time == summary[second].publish_time + CACHE_TTL
    clock.advance(CACHE_TTL)
    summary = {s.kid: s for s in manager.keys_summary()}
    assert (summary[first].state, summary[second].state) == ("retired", "active")
    assert summary[first].retire_time == summary[second].activate_time
    assert summary[first].published
    rendered = repr(manager.keys_summary()) + repr(manager)
    assert "PRIVATE" not in rendered and "private" not in rendered


async def test_configuration_is_checked(db: Database, barrier: Barrier, clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        SigningKeyManager(db, barrier, clock=clock, algorithm="RS256")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SigningKeyManager(db, barrier, clock=clock, jwks_cache_ttl=dt.timedelta(0))
