"""The interface of an API-key emulator's provider profile (see :mod:`.api_key_profiles`)."""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from typing import Any

from control_plane.connectors.model import Tool
from control_plane.sandbox._resource_api import Reply

Query = Mapping[str, str]
ALNUM = string.ascii_letters + string.digits


def alnum(n: int) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(n))


class KeyProfile:
    """One provider's replies. Subclasses fill in the provider's bodies."""

    #: Named errors :attr:`KeyFaults.next_api_error` can ask for.
    errors: tuple[str, ...] = ()

    def new_key(self) -> str:
        raise NotImplementedError

    def missing_key(self, now: float) -> Reply:
        """No key where the connector puts it."""
        raise NotImplementedError

    def invalid_key(self, key: str, now: float) -> Reply:
        """A key the provider does not know (deleted, rolled, mistyped)."""
        raise NotImplementedError

    def rate_limited(self, retry_after: int, now: float) -> Reply:
        raise NotImplementedError

    def error(self, name: str, key: str, retry_after: int, now: float) -> Reply:
        """One of :attr:`errors`."""
        raise NotImplementedError

    def permission(self, key: str, tool: str, now: float) -> Reply:
        """The key lacks the permission ``tool`` needs (a 403 unless the provider says
        more)."""
        return self.status_error(403, 0, now)

    def status_error(self, status: int, retry_after: int, now: float) -> Reply:
        """Some failure with this status, in the provider's envelope."""
        raise NotImplementedError

    def answer(self, tool: Tool, path: Query, query: Query, body: Any, now: float) -> Reply:
        """The success reply (or the provider's refusal of bad parameters); ``path`` holds
        the URL's path arguments (``{customer}``)."""
        raise NotImplementedError

    def success_headers(self, now: float) -> dict[str, str]:
        return {}
