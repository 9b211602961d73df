"""Opaque page tokens, sealed by the barrier and bound to (scope, collection).

A token is AES-GCM sealed under the org's own data key with the org and the
collection in the AAD, so it cannot be read, edited, or replayed in another org
or on another list.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json

from control_plane.domain.errors import BarrierError, field_error
from control_plane.storage.repositories import Cursor
from control_plane.vault.barrier import Barrier, Scope

MAX_TOKEN_LEN = 1024


class PageTokens:
    def __init__(self, barrier: Barrier) -> None:
        self._barrier = barrier

    async def encode(self, scope: Scope, collection: str, cursor: Cursor) -> str:
        t, i = cursor
        body = json.dumps({"t": t.isoformat(), "i": i}, separators=(",", ":")).encode()
        blob = await self._barrier.seal(scope, "page_token", collection, "cursor", body)
        return base64.urlsafe_b64encode(blob).decode().rstrip("=")

    async def decode(self, scope: Scope, collection: str, token: str) -> Cursor | None:
        if not token:
            return None
        bad = field_error("page_token", "is not a page token for this list", "INVALID_PAGE_TOKEN")
        if len(token) > MAX_TOKEN_LEN:
            raise bad
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            body = await self._barrier.open(scope, "page_token", collection, "cursor", blob)
            data = json.loads(body)
            t = dt.datetime.fromisoformat(data["t"])
            i = data["i"]
            if not isinstance(i, str) or t.tzinfo is None:
                raise ValueError
        except (BarrierError, binascii.Error, ValueError, KeyError, TypeError):
            raise bad from None
        return (t, i)
