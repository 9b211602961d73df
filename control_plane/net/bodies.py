"""Reading a response body up to a cap."""

from __future__ import annotations

import aiohttp


async def read_capped(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The whole body, or its first ``limit`` bytes.

    ``StreamReader.read(n)`` returns what has arrived so far (as little as one
    chunk), not ``n`` bytes: one call cut large answers at 64 KiB and could split a
    token response that came in pieces. Callers pass their cap + 1 to tell "exactly
    the cap" from "more than the cap".
    """
    parts: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await content.read(limit - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)
