"""KEK provider conformance suite: the same tests against every provider (SPIRE style).

Then the file- and env-specific rules: on-disk permissions, malformed input,
rotation semantics. A cloud KMS provider joins by adding a harness here.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import pickle
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from control_plane.domain.errors import BarrierError
from control_plane.vault.kek import (
    ENV_VAR,
    EnvKekProvider,
    FileKekProvider,
    KekError,
    KekProvider,
)

DEK = bytes(range(100, 132))
AAD = b"org-a|dek-v1"


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@dataclass
class Harness:
    """One provider under test plus what the suite needs to know about it."""

    kind: str
    provider: KekProvider
    path: Path | None = None
    env_keys: list[bytes] = field(default_factory=list)

    async def rotated(self) -> KekProvider:
        """A provider whose active version is new and which still holds the old one."""
        if isinstance(self.provider, FileKekProvider):
            await self.provider.create_version()
            return self.provider
        new = os.urandom(32)
        self.env_keys.insert(0, new)
        value = ",".join(f"v{len(self.env_keys) - i}:{b64(k)}" for i, k in enumerate(self.env_keys))
        return EnvKekProvider(value)

    def raw_keys(self) -> list[bytes]:
        if self.path is not None:
            doc = json.loads(self.path.read_text())
            return [base64.b64decode(v) for v in doc["keys"].values()]
        return list(self.env_keys)


@pytest.fixture(params=["file", "env"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    if request.param == "file":
        path = tmp_path / "keys" / "kek.json"
        return Harness("file", FileKekProvider.create(path), path=path)
    key = os.urandom(32)
    return Harness("env", EnvKekProvider(f"v1:{b64(key)}"), env_keys=[key])


# ------------------------------------------------------------------ conformance


def test_satisfies_protocol(harness: Harness) -> None:
    assert isinstance(harness.provider, KekProvider)
    assert harness.provider.name == harness.kind
    assert harness.provider.active_version() == f"{harness.kind}:1"


async def test_round_trip_uses_active_version(harness: Harness) -> None:
    p = harness.provider
    version, wrapped = await p.wrap(DEK, AAD)
    assert version == p.active_version()
    assert DEK not in wrapped
    assert await p.unwrap(version, wrapped, AAD) == DEK


async def test_wrapping_is_randomized(harness: Harness) -> None:
    first = await harness.provider.wrap(DEK, AAD)
    second = await harness.provider.wrap(DEK, AAD)
    assert first[1] != second[1]


async def test_wrong_aad_fails(harness: Harness) -> None:
    version, wrapped = await harness.provider.wrap(DEK, AAD)
    for other in (b"", b"org-b|dek-v1", b"org-a|dek-v2", AAD + b"\x00"):
        with pytest.raises(KekError):
            await harness.provider.unwrap(version, wrapped, other)


async def test_tampered_fails_at_every_byte(harness: Harness) -> None:
    version, wrapped = await harness.provider.wrap(DEK, AAD)
    for i in range(len(wrapped)):
        bad = bytearray(wrapped)
        bad[i] ^= 0x01
        with pytest.raises(KekError):
            await harness.provider.unwrap(version, bytes(bad), AAD)
    for cut in (1, 16, len(wrapped)):
        with pytest.raises(KekError):
            await harness.provider.unwrap(version, wrapped[:-cut], AAD)


async def test_unknown_version_fails(harness: Harness) -> None:
    version, wrapped = await harness.provider.wrap(DEK, AAD)
    for label in (f"{harness.kind}:99", "file:2", "env:2", "awskms:arn", "", version + " "):
        with pytest.raises(KekError):
            await harness.provider.unwrap(label, wrapped, AAD)


async def test_a_different_kek_with_the_same_label_fails(harness: Harness, tmp_path: Path) -> None:
    version, wrapped = await harness.provider.wrap(DEK, AAD)
    other: KekProvider
    if harness.kind == "file":
        other = FileKekProvider.create(tmp_path / "other" / "kek.json")
    else:
        other = EnvKekProvider(f"v1:{b64(os.urandom(32))}")
    assert other.active_version() == version
    with pytest.raises(KekError):
        await other.unwrap(version, wrapped, AAD)


async def test_rotation_keeps_old_versions(harness: Harness) -> None:
    old_version, old_wrapped = await harness.provider.wrap(DEK, AAD)
    rotated = await harness.rotated()
    assert rotated.active_version() == f"{harness.kind}:2"
    new_version, new_wrapped = await rotated.wrap(DEK, AAD)
    assert new_version == f"{harness.kind}:2"
    assert await rotated.unwrap(old_version, old_wrapped, AAD) == DEK
    assert await rotated.unwrap(new_version, new_wrapped, AAD) == DEK
    # The old version cannot open what the new one wrapped.
    with pytest.raises(KekError):
        await rotated.unwrap(old_version, new_wrapped, AAD)


async def test_no_key_material_in_repr_or_attributes(harness: Harness) -> None:
    p = await harness.rotated()
    text = f"{p!r} {p!s}"
    for key in harness.raw_keys():
        for rendering in (b64(key), key.hex(), repr(key), base64.urlsafe_b64encode(key).decode()):
            assert rendering not in text
    for name in dir(p):
        if name.startswith("_"):
            continue
        value = getattr(p, name)
        assert not isinstance(value, bytes | bytearray | memoryview), name
    assert "versions=" in repr(p)


def test_cannot_be_pickled_or_copied(harness: Harness) -> None:
    with pytest.raises(TypeError):
        pickle.dumps(harness.provider)
    with pytest.raises(TypeError):
        copy.deepcopy(harness.provider)


async def test_kek_errors_are_barrier_errors(harness: Harness) -> None:
    with pytest.raises(BarrierError) as info:
        await harness.provider.unwrap(harness.provider.active_version(), b"\x00" * 60, AAD)
    assert info.value.reason == "BARRIER_FAILURE"


# ------------------------------------------------------------------ file keyring


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """Prove modes do not depend on the caller's umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_file_created_0600_in_a_0700_dir(tmp_path: Path, umask_zero: None) -> None:
    path = tmp_path / "fresh" / "kek.json"
    FileKekProvider.create(path)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    doc = json.loads(path.read_text())
    assert doc["format"] == "agentauth-kek/1"
    assert doc["active"] == "file:1"
    assert len(base64.b64decode(doc["keys"]["file:1"])) == 32
    assert sorted(p.name for p in path.parent.iterdir()) == ["kek.json"]


def test_create_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "k" / "kek.json"
    FileKekProvider.create(path)
    before = path.read_bytes()
    with pytest.raises(KekError):
        FileKekProvider.create(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["kek.json"]


UNSAFE_MODES = [0o644, 0o640, 0o604, 0o660, 0o620, 0o610, 0o601, 0o666]


@pytest.mark.parametrize("mode", UNSAFE_MODES, ids=[f"{m:o}" for m in UNSAFE_MODES])
def test_file_accessible_by_others_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k" / "kek.json"
    FileKekProvider.create(path)
    os.chmod(path, mode)
    with pytest.raises(KekError) as info:
        FileKekProvider(path)
    assert "chmod 600" in info.value.message
    assert str(path) not in info.value.message  # paths go to debug only


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700], ids=["600", "400", "700"])
def test_owner_only_modes_accepted(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k" / "kek.json"
    FileKekProvider.create(path)
    os.chmod(path, mode)
    assert FileKekProvider(path).active_version() == "file:1"


def _keyring(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "format": "agentauth-kek/1",
        "active": "file:1",
        "keys": {"file:1": b64(os.urandom(32))},
    }
    doc.update(overrides)
    return doc


MALFORMED_FILES: dict[str, bytes] = {
    "not-json": b"{not json",
    "not-utf8": b"\xff\xfe{}",
    "json-list": b"[]",
    "empty": b"",
    "wrong-format": json.dumps(_keyring(format="agentauth-kek/2")).encode(),
    "no-format": json.dumps({k: v for k, v in _keyring().items() if k != "format"}).encode(),
    "no-keys": json.dumps(_keyring(keys={})).encode(),
    "keys-not-object": json.dumps(_keyring(keys=["x"])).encode(),
    "active-missing": json.dumps(_keyring(active="file:2")).encode(),
    "active-not-string": json.dumps(_keyring(active=1)).encode(),
    "short-key": json.dumps(_keyring(keys={"file:1": b64(os.urandom(16))})).encode(),
    "long-key": json.dumps(_keyring(keys={"file:1": b64(os.urandom(33))})).encode(),
    "bad-base64": json.dumps(_keyring(keys={"file:1": "!!!!" * 11})).encode(),
    "key-not-string": json.dumps(_keyring(keys={"file:1": 5})).encode(),
    "bad-label": json.dumps(_keyring(active="v1", keys={"v1": b64(os.urandom(32))})).encode(),
    "zero-label": json.dumps(
        _keyring(active="file:0", keys={"file:0": b64(os.urandom(32))})
    ).encode(),
    "duplicate-label": (
        b'{"format": "agentauth-kek/1", "active": "file:1", "keys": {"file:1": "'
        + b64(os.urandom(32)).encode()
        + b'", "file:1": "'
        + b64(os.urandom(32)).encode()
        + b'"}}'
    ),
}


@pytest.mark.parametrize("name", sorted(MALFORMED_FILES))
def test_malformed_file_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / "kek.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(MALFORMED_FILES[name])
    with pytest.raises(KekError):
        FileKekProvider(path)


def test_missing_file_and_directory_refused(tmp_path: Path) -> None:
    with pytest.raises(KekError):
        FileKekProvider(tmp_path / "absent.json")
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(KekError):
        FileKekProvider(tmp_path / "dir")


async def test_create_version_persists_atomically(tmp_path: Path, umask_zero: None) -> None:
    path = tmp_path / "k" / "kek.json"
    provider = FileKekProvider.create(path)
    old = await provider.wrap(DEK, AAD)
    assert provider.can_create_version()
    assert await provider.create_version() == "file:2"
    assert _mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["kek.json"]
    reloaded = FileKekProvider(path)
    assert reloaded.active_version() == "file:2"
    assert reloaded.versions() == ("file:1", "file:2")
    assert await reloaded.unwrap(*old, AAD) == DEK


async def test_running_provider_sees_versions_added_elsewhere(tmp_path: Path) -> None:
    """A server keeps running while the rotate-kek CLI adds a version to the file."""
    path = tmp_path / "k" / "kek.json"
    server = FileKekProvider.create(path)
    cli = FileKekProvider(path)
    assert await cli.create_version() == "file:2"
    wrapped_by_cli = await cli.wrap(DEK, AAD)
    assert await server.unwrap(*wrapped_by_cli, AAD) == DEK
    version, _ = await server.wrap(DEK, AAD)
    assert version == "file:2"


async def test_concurrent_creators_do_not_clobber(tmp_path: Path) -> None:
    path = tmp_path / "k" / "kek.json"
    first = FileKekProvider.create(path)
    second = FileKekProvider(path)
    assert await first.create_version() == "file:2"
    wrapped = await first.wrap(DEK, AAD)
    # `second` still remembers only file:1; it must not write its own file:2.
    assert await second.create_version() == "file:3"
    assert FileKekProvider(path).versions() == ("file:1", "file:2", "file:3")
    assert await second.unwrap(*wrapped, AAD) == DEK


async def test_file_changed_to_unsafe_mode_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "k" / "kek.json"
    provider = FileKekProvider.create(path)
    await FileKekProvider(path).create_version()
    os.chmod(path, 0o644)
    with pytest.raises(KekError):
        await provider.wrap(DEK, AAD)


# ------------------------------------------------------------------ environment


def _env_cases() -> dict[str, str]:
    k1, k2 = b64(os.urandom(32)), b64(os.urandom(32))
    return {
        "empty": "",
        "blank": "   ",
        "no-key": "v1",
        "empty-key": "v1:",
        "no-v": f"1:{k1}",
        "upper-v": f"V1:{k1}",
        "zero": f"v0:{k1}",
        "env-prefix": f"env:1:{k1}",
        "short-key": f"v1:{b64(os.urandom(16))}",
        "long-key": f"v1:{b64(os.urandom(48))}",
        "bad-base64": f"v1:{k1[:-4]}!!!!",
        "duplicate": f"v1:{k1},v1:{k2}",
        "trailing-comma": f"v1:{k1},",
        "empty-entry": f"v2:{k2},,v1:{k1}",
    }


ENV_CASES = _env_cases()


@pytest.mark.parametrize("name", sorted(ENV_CASES))
def test_malformed_env_refused(name: str) -> None:
    value = ENV_CASES[name]
    with pytest.raises(KekError) as info:
        EnvKekProvider(value)
    err = info.value
    for part in value.replace(",", ":").split(":"):
        if len(part) >= 16:
            assert part not in f"{err} {err.debug}"


def test_env_first_entry_is_active() -> None:
    k1, k2 = b64(os.urandom(32)), b64(os.urandom(32))
    provider = EnvKekProvider(f" v2:{k2} , v1:{k1} ")
    assert provider.active_version() == "env:2"
    assert provider.versions() == ("env:2", "env:1")
    assert EnvKekProvider(f"v1:{k1},v2:{k2}").active_version() == "env:1"


async def test_env_with_two_versions_opens_the_old_one() -> None:
    k1, k2 = b64(os.urandom(32)), b64(os.urandom(32))
    old = await EnvKekProvider(f"v1:{k1}").wrap(DEK, AAD)
    both = EnvKekProvider(f"v2:{k2},v1:{k1}")
    assert await both.unwrap(*old, AAD) == DEK
    assert (await both.wrap(DEK, AAD))[0] == "env:2"


async def test_env_cannot_create_versions() -> None:
    provider = EnvKekProvider(f"v1:{b64(os.urandom(32))}")
    assert not provider.can_create_version()
    with pytest.raises(KekError):
        await provider.create_version()


def test_env_from_environ() -> None:
    with pytest.raises(KekError):
        EnvKekProvider.from_environ({})
    key = b64(os.urandom(32))
    assert EnvKekProvider.from_environ({ENV_VAR: f"v3:{key}"}).active_version() == "env:3"
