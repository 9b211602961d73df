"""The keyring-file KEK provider (development and single-host installs).

A JSON file, mode 0600, holding every KEK version. It is written so that key
bytes are never on disk under a wider mode, never half-written, and never
overwritten by a second ``create``; and it is refused when its mode lets group
or other read it, because then the KEK is not secret any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from control_plane.strict_json import parse_json_object
from control_plane.vault import aead
from control_plane.vault.keyring import KekError, Keyring, decode_key

__all__ = ["FILE_FORMAT", "FileKekProvider"]

FILE_FORMAT = "agentauth-kek/1"
_MAX_FILE_BYTES = 1 << 20
_FILE_VERSION_RE = re.compile(r"^file:([1-9][0-9]{0,8})$")


def _parse_file(raw: bytes) -> Keyring:
    try:
        doc = parse_json_object(raw)
    except ValueError:
        raise KekError("KEK file is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
        raise KekError(f"KEK file is not in the {FILE_FORMAT} format")
    entries, active = doc.get("keys"), doc.get("active")
    if not isinstance(entries, dict) or not entries:
        raise KekError("KEK file has no keys")
    keys: dict[str, bytes] = {}
    for version, text in entries.items():
        if not _FILE_VERSION_RE.fullmatch(version):
            raise KekError("KEK file has a malformed version label", debug=version[:40])
        keys[version] = decode_key(text, version)
    if not isinstance(active, str) or active not in keys:
        raise KekError("KEK file's active version has no key")
    return Keyring(keys, active)


_Stamp = tuple[int, int, int]


def _read_file(path: Path) -> tuple[Keyring, _Stamp]:
    """Load and check a keyring file; refuse anything an operator should fix first."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KekError("KEK file not found", debug=str(path)) from None
    except OSError as exc:
        raise KekError("KEK file cannot be read", debug=f"{path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KekError("KEK file is not a regular file", debug=str(path))
        if st.st_mode & 0o077:
            raise KekError(
                "KEK file must not be accessible by group or other (chmod 600)",
                debug=f"{path}: mode {stat.S_IMODE(st.st_mode):o}",
            )
        if st.st_size > _MAX_FILE_BYTES:
            raise KekError("KEK file is too large", debug=str(path))
        with os.fdopen(os.dup(fd), "rb") as fh:
            raw = fh.read(_MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    return _parse_file(raw), (st.st_ino, st.st_mtime_ns, st.st_size)


def _stamp(path: Path) -> _Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


@contextlib.contextmanager
def _locked_dir(directory: Path) -> Iterator[int]:
    """Exclusive flock on the directory: serializes keyring rewrites across processes.

    The keyring file itself cannot carry the lock because each rewrite replaces
    its inode. The fd is also what we fsync so that renames are durable.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def _write_private(path: Path, data: bytes, *, replace: bool) -> None:
    """Write ``data`` to ``path`` atomically; the bytes are never readable by others.

    The temp file is created 0600 with O_EXCL, so the key exists on disk only
    under that mode (a chmod after writing would leave a window). Publishing
    uses ``os.replace`` (rewrite) or ``os.link`` (create: atomic and refuses to
    clobber, because overwriting a keyring destroys every DEK it wraps).
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # the umask may only have removed bits; be exact
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KekError("KEK file already exists", debug=str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class FileKekProvider:
    """A JSON keyring file: ``{"format": "agentauth-kek/1", "active": "file:1",
    "keys": {"file:1": "<base64 of 32 bytes>", ...}}``, mode 0600.

    Several processes may share one file (a server and the ``rotate-kek`` CLI):
    rewrites are serialized with a directory lock and re-read the file first,
    and a running provider reloads the file when it changes, so it learns a
    version another process added before it wraps or meets a DEK wrapped under it.
    The file owner is not checked; the mode is (any group/other bit refuses).
    """

    name = "file"

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._ring, self._stamp = _read_file(self._path)

    @classmethod
    def create(cls, path: Path) -> FileKekProvider:
        """Create a new keyring with one version, ``file:1``; never overwrites.

        A missing parent directory is created 0700; an existing one is left as is.
        """
        path = Path(path)
        parent = path.parent
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True)
            os.chmod(parent, 0o700)  # mkdir's mode is filtered by the umask
        ring = Keyring({"file:1": secrets.token_bytes(aead.KEY_SIZE)}, "file:1")
        _write_private(path, ring.render_file(FILE_FORMAT), replace=False)
        return cls(path)

    def _refresh(self) -> None:
        """Reload when the file changed on disk (another process rotated)."""
        if _stamp(self._path) != self._stamp:
            self._ring, self._stamp = _read_file(self._path)

    def active_version(self) -> str:
        self._refresh()
        return self._ring.active

    def versions(self) -> tuple[str, ...]:
        return self._ring.versions()

    async def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes]:
        # Never wrap under a version the file no longer holds: the DEK would be
        # lost at the next restart. Reloading fails closed if the file went bad.
        self._refresh()
        return self._ring.wrap(dek, aad)

    async def unwrap(self, kek_version: str, wrapped: bytes, aad: bytes) -> bytes:
        if kek_version not in self._ring:
            self._refresh()
        return self._ring.unwrap(kek_version, wrapped, aad)

    def can_create_version(self) -> bool:
        return True

    async def create_version(self) -> str:
        return await asyncio.to_thread(self._create_version_sync)

    def _create_version_sync(self) -> str:
        with _locked_dir(self._path.parent):
            # The file, not our memory, is the truth: another process may have
            # added versions since we loaded it.
            on_disk, _ = _read_file(self._path)
            for version in self._ring.versions():
                if version in on_disk and not on_disk.same_key(self._ring, version):
                    raise KekError("KEK file changed a key under an existing version")
            numbers = [int(v.split(":", 1)[1]) for v in on_disk.versions()]
            new_version = f"file:{max(numbers) + 1}"
            ring = on_disk.with_new_key(new_version)
            _write_private(self._path, ring.render_file(FILE_FORMAT), replace=True)
            self._ring, self._stamp = _read_file(self._path)
        return new_version

    def __repr__(self) -> str:
        return (
            f"FileKekProvider(path={str(self._path)!r}, active={self._ring.active!r}, "
            f"versions={list(self._ring.versions())!r})"
        )
