"""Test doubles for the vault that wrap the real thing and add fault injection.

Like SPIRE's fakes: a fake never replaces the cryptography or the database, it
wraps a real :class:`~control_plane.vault.kek.KekProvider` and lets a test make
the next call fail (a KMS outage), count calls (is the DEK cache used?) or run
code at a chosen moment (a concurrent rotation). Shipped in the package so
that the credential store and API tests can reuse it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable

from control_plane.vault.kek import KekProvider

__all__ = ["FaultyKek"]


class FaultyKek:
    """A :class:`KekProvider` that delegates to ``inner`` unless told to fail."""

    def __init__(self, inner: KekProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: Counter[str] = Counter()
        #: Awaited at the start of every ``unwrap`` (after counting), if set.
        self.before_unwrap: Callable[[], Awaitable[None]] | None = None
        self._error: Exception | None = None
        self._sticky = False

    def set_next_error(self, error: Exception | None, *, sticky: bool = False) -> None:
        """Make the next wrap/unwrap raise ``error`` (every one while ``sticky``)."""
        self._error = error
        self._sticky = sticky

    def _maybe_fail(self) -> None:
        error = self._error
        if error is None:
            return
        if not self._sticky:
            self._error = None
        raise error

    def active_version(self) -> str:
        return self.inner.active_version()

    async def wrap(self, dek: bytes, aad: bytes) -> tuple[str, bytes]:
        self.calls["wrap"] += 1
        self._maybe_fail()
        return await self.inner.wrap(dek, aad)

    async def unwrap(self, kek_version: str, wrapped: bytes, aad: bytes) -> bytes:
        self.calls["unwrap"] += 1
        if self.before_unwrap is not None:
            await self.before_unwrap()
        self._maybe_fail()
        return await self.inner.unwrap(kek_version, wrapped, aad)

    def can_create_version(self) -> bool:
        return self.inner.can_create_version()

    async def create_version(self) -> str:
        self.calls["create_version"] += 1
        return await self.inner.create_version()

    def __repr__(self) -> str:
        return f"FaultyKek({self.inner!r})"
