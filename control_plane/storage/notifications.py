"""PostgreSQL LISTEN on a dedicated connection (the wake-up channel between replicas).

NOTIFY is sent inside the transactions that change state (``OrgTx.notify``) or,
for hints that need no transaction, with ``Database.notify_now``. Listening needs
its own autocommit connection outside the pool; this module owns it so that no
one else touches the driver.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import psycopg

from control_plane.storage.db import Database


class ListenerLost(Exception):
    """The LISTEN connection failed or closed; reconnect (notifications sent meanwhile are lost)."""


@contextlib.asynccontextmanager
async def listen(
    db: Database, channels: Sequence[str]
) -> AsyncIterator[AsyncIterator[tuple[str, str]]]:
    """Connect, LISTEN on ``channels`` and yield an iterator of (channel, payload)."""
    try:
        conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
            db.listen_url(), autocommit=True, **db.connect_params()
        )
    except (psycopg.Error, OSError) as exc:
        raise ListenerLost(type(exc).__name__) from None
    try:
        async with conn:
            for channel in channels:
                await conn.execute(f"LISTEN {channel}")
            yield _notes(conn)
    except (psycopg.Error, OSError) as exc:
        raise ListenerLost(type(exc).__name__) from None


async def _notes(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[tuple[str, str]]:
    try:
        async for note in conn.notifies():
            yield note.channel, note.payload
    except (psycopg.Error, OSError) as exc:
        raise ListenerLost(type(exc).__name__) from None
