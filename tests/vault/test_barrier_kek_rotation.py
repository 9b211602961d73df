"""KEK rotation: resumable, idempotent, safe with concurrent runs (perf_security §B2.5 E4).

Vault's keyring rotation is the model: online, old versions keep decrypting
until every data key is re-wrapped, and only then can the old KEK go.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from control_plane.clock import FakeClock
from control_plane.domain.errors import BarrierError
from control_plane.storage.db import Database
from control_plane.vault.barrier import PLATFORM, Barrier, RewrapReport
from control_plane.vault.fakes import FaultyKek
from control_plane.vault.kek import EnvKekProvider, FileKekProvider, KekError, KekProvider

MakeOrg = Callable[[Barrier], Awaitable[str]]
Sealed = dict[str, bytes]
TABLE, ROW, FIELD = "connected_accounts", "row-1", "refresh_token"


async def _seal_everywhere(barrier: Barrier, scopes: list[str]) -> Sealed:
    return {s: await barrier.seal(s, TABLE, ROW, FIELD, f"secret of {s}".encode()) for s in scopes}


async def _restart(db: Database, kek: KekProvider) -> Barrier:
    """A new process: cold cache, provider state reloaded by the caller."""
    barrier = Barrier(db, kek, clock=FakeClock())
    await barrier.initialize(allow_create=False)
    return barrier


async def _assert_all_open(barrier: Barrier, sealed: Sealed) -> None:
    for scope, blob in sealed.items():
        assert await barrier.open(scope, TABLE, ROW, FIELD, blob) == f"secret of {scope}".encode()


def _keyring_without(path: Path, version: str) -> FileKekProvider:
    """A copy of the keyring file with one version removed, as an operator would."""
    doc = json.loads(path.read_text())
    del doc["keys"][version]
    copy = path.with_name("retired.json")
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
    return FileKekProvider(copy)


class Crash(Exception):
    pass


def crash_on(n: int) -> Callable[[int], None]:
    def fault(attempt: int) -> None:
        if attempt == n:
            raise Crash(f"simulated crash before re-wrapping DEK #{attempt}")

    return fault


async def test_e4_crash_mid_rotation_then_resume(
    db: Database, barrier: Barrier, make_org: MakeOrg, kek_path: Path
) -> None:
    orgs = [await make_org(barrier) for _ in range(5)]
    sealed = await _seal_everywhere(barrier, [PLATFORM, *orgs])
    assert await barrier.kek_versions_in_use() == {"file:1": 6}

    with pytest.raises(Crash):
        await barrier.rotate_kek(fault=crash_on(3))
    # The platform DEK and the first org were re-wrapped, then the "process" died.
    assert await barrier.kek_versions_in_use() == {"file:2": 2, "file:1": 4}
    mid = await _restart(db, FileKekProvider(kek_path))
    await _assert_all_open(mid, sealed)

    progress: list[tuple[int, int]] = []
    resumed = await _restart(db, FileKekProvider(kek_path))
    report = await resumed.rotate_kek(progress=lambda done, total: progress.append((done, total)))
    # Mixed versions mean "resume", not "create file:3".
    assert report == RewrapReport(total=6, rewrapped=4, skipped=2, active_version="file:2")
    assert progress == [(i, 6) for i in range(1, 7)]
    assert await resumed.kek_versions_in_use() == {"file:2": 6}
    await _assert_all_open(await _restart(db, FileKekProvider(kek_path)), sealed)

    # file:1 wraps nothing any more, so the operator may delete it.
    retired = _keyring_without(kek_path, "file:1")
    await _assert_all_open(await _restart(db, retired), sealed)


async def test_e4_rotation_when_all_current_creates_a_version(
    db: Database, barrier: Barrier, make_org: MakeOrg, kek: FaultyKek, kek_path: Path
) -> None:
    org = await make_org(barrier)
    await barrier.rotate_org_dek(org)  # two DEK versions for this org
    sealed = {org: await barrier.seal(org, TABLE, ROW, FIELD, f"secret of {org}".encode())}
    first = await barrier.rotate_kek()
    assert first == RewrapReport(total=3, rewrapped=3, skipped=0, active_version="file:2")
    second = await barrier.rotate_kek()
    assert second == RewrapReport(total=3, rewrapped=3, skipped=0, active_version="file:3")
    assert kek.calls["create_version"] == 2
    assert await barrier.kek_versions_in_use() == {"file:3": 3}
    assert FileKekProvider(kek_path).versions() == ("file:1", "file:2", "file:3")
    await _assert_all_open(await _restart(db, FileKekProvider(kek_path)), sealed)


async def test_e4_env_rotation_after_operator_adds_a_version(
    db: Database, make_org: MakeOrg
) -> None:
    k1, k2 = (base64.b64encode(os.urandom(32)).decode() for _ in range(2))
    before = Barrier(db, EnvKekProvider(f"v1:{k1}"))
    await before.initialize(allow_create=True)
    orgs = [await make_org(before) for _ in range(3)]
    sealed = await _seal_everywhere(before, [PLATFORM, *orgs])

    # The operator prepends v2 to AGENTAUTH_KEK, restarts, runs rotate-kek.
    after = await _restart(db, EnvKekProvider(f"v2:{k2},v1:{k1}"))
    report = await after.rotate_kek()
    assert report == RewrapReport(total=4, rewrapped=4, skipped=0, active_version="env:2")
    assert await after.kek_versions_in_use() == {"env:2": 4}
    # Running it again is a no-op: the env provider cannot create versions.
    again = await after.rotate_kek()
    assert again == RewrapReport(total=4, rewrapped=0, skipped=4, active_version="env:2")

    # v1 can now be dropped from the environment; without v2 nothing starts.
    await _assert_all_open(await _restart(db, EnvKekProvider(f"v2:{k2}")), sealed)
    with pytest.raises(KekError):
        await _restart(db, EnvKekProvider(f"v1:{k1}"))


async def test_e4_concurrent_runs_do_not_overwrite_each_other(
    db: Database,
    barrier: Barrier,
    make_org: MakeOrg,
    kek: FaultyKek,
    file_kek: FileKekProvider,
) -> None:
    orgs = [await make_org(barrier) for _ in range(3)]
    sealed = await _seal_everywhere(barrier, [PLATFORM, *orgs])
    other_reports: list[RewrapReport] = []

    async def other_run_overtakes() -> None:
        # Fires on our first unwrap, between reading a DEK row and updating it.
        kek.before_unwrap = None
        other_reports.append(await Barrier(db, file_kek).rotate_kek())

    kek.before_unwrap = other_run_overtakes
    report = await barrier.rotate_kek()
    assert other_reports == [RewrapReport(total=4, rewrapped=4, skipped=0, active_version="file:2")]
    # Our conditional UPDATEs found nothing left on file:1.
    assert report == RewrapReport(total=4, rewrapped=0, skipped=4, active_version="file:2")
    assert await barrier.kek_versions_in_use() == {"file:2": 4}
    await _assert_all_open(await _restart(db, file_kek), sealed)


async def test_e4_shredded_orgs_stay_shredded(
    db: Database, barrier: Barrier, make_org: MakeOrg, kek_path: Path
) -> None:
    kept, doomed = await make_org(barrier), await make_org(barrier)
    sealed = await _seal_everywhere(barrier, [kept, doomed])
    async with db.org_tx(doomed) as s:
        await barrier.destroy_org_keys(s, doomed)
    report = await barrier.rotate_kek()
    assert report == RewrapReport(total=2, rewrapped=2, skipped=0, active_version="file:2")
    assert await barrier.kek_versions_in_use() == {"file:2": 2}  # platform + kept
    after = await _restart(db, FileKekProvider(kek_path))
    await _assert_all_open(after, {kept: sealed[kept]})
    with pytest.raises(BarrierError):
        await after.open(doomed, TABLE, ROW, FIELD, sealed[doomed])


async def test_e5_kek_failure_during_rotation_leaves_old_wrapping(
    db: Database, barrier: Barrier, make_org: MakeOrg, kek: FaultyKek, kek_path: Path
) -> None:
    orgs = [await make_org(barrier) for _ in range(2)]
    sealed = await _seal_everywhere(barrier, [PLATFORM, *orgs])
    kek.set_next_error(TimeoutError("kms timed out"))
    with pytest.raises(KekError):
        await barrier.rotate_kek()
    assert await barrier.kek_versions_in_use() == {"file:1": 3}
    report = await barrier.rotate_kek()
    assert report == RewrapReport(total=3, rewrapped=3, skipped=0, active_version="file:2")
    await _assert_all_open(await _restart(db, FileKekProvider(kek_path)), sealed)
