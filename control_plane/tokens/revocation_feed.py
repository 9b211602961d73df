"""Wake-ups for revocation watchers, across replicas.

A revocation commits its events to ``revocation_events`` and, on PostgreSQL,
``NOTIFY agentauth_revocations, '<org id>'`` in the same transaction (delivered
at commit). Every replica keeps one connection that LISTENs and wakes the local
watchers of that org, who then read the events after their cursor. A NOTIFY
sent while the listener is reconnecting is lost, so after every (re)connect and
every ``poll_interval`` all watched orgs are woken anyway: the database, not
the notification, is the source of truth, and a wake-up is only a hint to look.

The same listener carries ``agentauth_identity`` notifications, which drop an
org's identity snapshot (trust policies, agents, settings) on every replica
when one replica changes it, and ``agentauth_accounts`` ones, which wake the
watchers of connected-account state changes (topic ``accounts``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from typing import Any

from control_plane.ids import is_id
from control_plane.logs import get_logger
from control_plane.storage.account_events import ACCOUNTS_CHANNEL
from control_plane.storage.db import Database
from control_plane.storage.issued_tokens import REVOCATION_CHANNEL
from control_plane.storage.notifications import ListenerLost, listen

IDENTITY_CHANNEL = "agentauth_identity"
REVOCATIONS = "revocations"
ACCOUNTS = "accounts"  # connected-account state changes (storage/account_events.py)


class RevocationFeed:
    def __init__(
        self,
        db: Database,
        *,
        poll_interval: float = 5.0,
        on_identity_changed: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.poll_interval = poll_interval
        self.on_identity_changed = on_identity_changed
        self._waiters: dict[tuple[str, str], asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._log = get_logger("agentauth.revocation_feed")
        # Set while the LISTEN connection is up (always on SQLite: one process).
        self.listening = asyncio.Event()

    # ------------------------------------------------------------ watchers

    def ticket(self, org_id: str, topic: str = REVOCATIONS) -> asyncio.Event:
        """An event set at the next wake-up of ``org_id``'s ``topic``. Take it *before*
        reading, so a change committed between the read and the wait is not slept through."""
        key = (topic, org_id)
        event = self._waiters.get(key)
        if event is None or event.is_set():
            event = self._waiters[key] = asyncio.Event()
        return event

    def wake(self, org_id: str, topic: str = REVOCATIONS) -> None:
        event = self._waiters.pop((topic, org_id), None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        waiters, self._waiters = self._waiters, {}
        for event in waiters.values():
            event.set()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._poll()))
        if self.db.is_postgres:
            self._tasks.append(loop.create_task(self._listen()))
            with contextlib.suppress(TimeoutError):  # serve anyway; the poll covers it
                async with asyncio.timeout(5.0):
                    await self.listening.wait()
        else:
            self.listening.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            self.wake_all()

    async def _listen(self) -> None:
        channels = (REVOCATION_CHANNEL, IDENTITY_CHANNEL, ACCOUNTS_CHANNEL)
        backoff = 0.1
        while True:
            try:
                async with listen(self.db, channels) as notes:
                    self.listening.set()
                    backoff = 0.1
                    # Anything notified while we were not listening: look now.
                    self.wake_all()
                    async for channel, payload in notes:
                        self._dispatch(channel, payload)
            except ListenerLost as exc:
                self._log.warning("revocation listener disconnected", error=str(exc))
            finally:
                self.listening.clear()
            await asyncio.sleep(backoff * (1 + random.random()))  # noqa: S311 - jitter
            backoff = min(backoff * 2, 5.0)

    def _dispatch(self, channel: str, payload: str) -> None:
        if not is_id(payload):
            return
        if channel == REVOCATION_CHANNEL:
            self.wake(payload)
        elif channel == ACCOUNTS_CHANNEL:
            self.wake(payload, ACCOUNTS)
        elif channel == IDENTITY_CHANNEL and self.on_identity_changed is not None:
            self.on_identity_changed(payload)

    # ------------------------------------------------------------ publishing

    def identity_changed(self, org_id: str) -> None:
        """Tell the other replicas to drop ``org_id``'s identity snapshot."""
        if not self.db.is_postgres:
            return
        task = asyncio.get_running_loop().create_task(self._notify(IDENTITY_CHANNEL, org_id))
        self._tasks.append(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    async def _notify(self, channel: str, org_id: str) -> None:
        try:
            await self.db.notify_now(channel, org_id)
        except Exception as exc:  # best effort: the snapshot's TTL bounds staleness
            self._log.warning("identity notify failed", error=type(exc).__name__)
