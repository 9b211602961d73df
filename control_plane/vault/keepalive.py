"""Keep-alive for providers that kill idle refresh tokens.

Google invalidates a refresh token unused for 6 months, Microsoft and Atlassian
after 90 days (``refresh.inactivity_expiry_days`` in the connector). Every
replica runs this loop; an account is refreshed once a third of its window has
passed without a refresh, through the refresh coordinator, whose single-flight
lease means two replicas picking the same account cause one refresh.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random

from control_plane.clock import Clock
from control_plane.connectors.loader import Catalog
from control_plane.domain.errors import AgentAuthError
from control_plane.domain.scope import OrgScope
from control_plane.logs import get_logger
from control_plane.storage.db import Database
from control_plane.vault.refresh import RefreshCoordinator

FRACTION = 3  # refresh once a third of the inactivity window has passed
_log = get_logger("agentauth.keepalive")


class KeepAlive:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        catalog: Catalog,
        refresher: RefreshCoordinator,
        *,
        interval: float = 3600.0,
    ) -> None:
        self.db = db
        self.clock = clock
        self.catalog = catalog
        self.refresher = refresher
        self.interval = interval

    def _windows(self) -> dict[str, dt.timedelta]:
        return {
            c.id: dt.timedelta(days=c.auth.refresh.inactivity_expiry_days) / FRACTION
            for c in self.catalog
            if c.auth.type == "oauth2"
            and c.auth.refresh.supported
            and c.auth.refresh.inactivity_expiry_days
        }

    async def run_once(self) -> int:
        """Refresh every account that is due for a keep-alive; how many were kept alive
        (by this replica, or by another that got there first)."""
        windows = self._windows()
        if not windows:
            return 0
        now = self.clock.now()
        async with self.db.platform_tx() as ptx:
            orgs = await ptx.orgs.ids()
        done = 0
        for org_id in orgs:
            scope = OrgScope.for_platform_job(org_id, job="keep-alive")
            due: list[tuple[str, dt.datetime]] = []
            async with self.db.org_tx(scope) as tx:
                for connector_id, window in windows.items():
                    since = now - window
                    idle = await tx.accounts.idle_since(connector_id, since)
                    due.extend((account_id, since) for account_id in idle)
            for account_id, since in due:
                try:
                    # Only while still idle: another replica may have refreshed it since
                    # this list was read (a forced refresh would then refresh it twice).
                    await self.refresher.ensure_fresh(scope, account_id, idle_before=since)
                    done += 1
                except AgentAuthError as exc:  # recorded on the account by the coordinator
                    _log.info("keep-alive refresh failed", org_id=org_id, reason=exc.reason)
        return done

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval * (0.5 + random.random()))  # noqa: S311 - jitter
            try:
                await self.run_once()
            except Exception as exc:  # keep the loop alive; the next round retries
                _log.error("keep-alive round failed", error=type(exc).__name__)
