"""Bounded waits on PostgreSQL: no call waits on the database for longer than it is told.

A database that refuses or drops connections fails fast by itself. One that
*hangs* — a stalled TCP path, a black-holed route, a frozen host — does not:
nothing comes back, and without a bound every call waits forever. Server-side
``statement_timeout`` cannot help when the bytes never reach the server, so the
client bounds every wait itself:

* opening a connection: libpq ``connect_timeout`` (:meth:`DbTimeouts.libpq_params`);
* waiting for a pooled connection: SQLAlchemy's ``pool_timeout``;
* one unit of work end to end: :func:`bounded`. At the deadline its
  :class:`Watchdog` shuts the connection's socket down under the driver's feet.
  The statement in flight then fails as a lost connection — SQLAlchemy
  invalidates it, the pool never hands it out again, and PostgreSQL rolls the
  open transaction back when the connection's end reaches it. Cancelling the
  waiting task instead would make psycopg send an in-band cancel request and
  wait for it (up to 5 s + 5 s in psycopg 3.3) over the very path that stalled.
  An ``asyncio.timeout`` a little past the deadline backs it up for waits that
  are not on that socket (a pool checkout, a connection being opened).

The kernel gets the same bound for connections that sit idle (the LISTEN
connection): TCP keepalives and ``tcp_user_timeout`` drop a peer that stopped
answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

#: How long past the statement deadline the asyncio-level backstop fires.
BACKSTOP_SECONDS = 0.5


@dataclass(frozen=True)
class DbTimeouts:
    """The three bounds, in seconds (``AGENTAUTH_DB_*_TIMEOUT_SECONDS``)."""

    connect: float = 5.0
    pool: float = 5.0
    statement: float = 5.0

    def __post_init__(self) -> None:
        if not (self.connect > 0 and self.pool > 0 and self.statement > 0):
            raise ValueError("database timeouts must be positive")

    def libpq_params(self) -> dict[str, Any]:
        """Connection parameters for every PostgreSQL connection we open."""
        idle = max(1, math.ceil(self.statement))
        return {
            # libpq counts whole seconds and treats anything below 2 as 2.
            "connect_timeout": max(2, math.ceil(self.connect)),
            "keepalives": 1,
            "keepalives_idle": idle,
            "keepalives_interval": max(1, math.ceil(idle / 3)),
            "keepalives_count": 3,
            # Sent data unacknowledged this long: the kernel drops the connection.
            "tcp_user_timeout": math.ceil(self.statement * 1000),
        }


class Watchdog:
    """Severs the guarded connection's socket when the unit of work runs out of time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self._loop = loop
        self._deadline = deadline
        self._handle: asyncio.TimerHandle | None = None
        self._timeout: asyncio.Timeout | None = None
        self.fired = False

    def guard(self, driver_connection: Any) -> None:
        """Watch this psycopg connection (the one the unit of work runs on)."""
        if self._deadline == math.inf:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(self._deadline, self._sever, driver_connection)

    @property
    def expired(self) -> bool:
        """True when the unit of work ran out of time (severed, or the backstop fired)."""
        return self.fired or (self._timeout is not None and self._timeout.expired())

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sever(self, conn: Any) -> None:
        self.fired = True
        if conn.closed:
            return
        with contextlib.suppress(Exception):  # already gone: nothing left to cut
            fd = conn.pgconn.socket
            # A duplicate descriptor: shutdown() acts on the connection itself, and the
            # driver's own descriptor stays valid until the driver closes it.
            with socket.socket(fileno=os.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)


@contextlib.asynccontextmanager
async def bounded(seconds: float | None) -> AsyncIterator[Watchdog]:
    """One unit of work's time budget; ``None``: unbounded (SQLite).

    Raises :class:`TimeoutError` when the backstop fires; a severed connection
    surfaces as the driver's lost-connection error instead. Either way
    :attr:`Watchdog.expired` is then true.
    """
    loop = asyncio.get_running_loop()
    if seconds is None:
        yield Watchdog(loop, math.inf)
        return
    deadline = loop.time() + seconds
    dog = Watchdog(loop, deadline)
    try:
        async with asyncio.timeout_at(deadline + BACKSTOP_SECONDS) as timeout:
            dog._timeout = timeout
            yield dog
    finally:
        dog.cancel()
