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

from sqlalchemy import func, select

from control_plane.connectors.loader import Catalog
from control_plane.domain.errors import AgentAuthError
from control_plane.logs import get_logger
from control_plane.services.context import ServiceContext
from control_plane.storage import models as m
from control_plane.vault.refresh import RefreshCoordinator

FRACTION = 3  # refresh once a third of the inactivity window has passed
_log = get_logger("agentauth.keepalive")


class KeepAlive:
    def __init__(
        self,
        ctx: ServiceContext,
        catalog: Catalog,
        refresher: RefreshCoordinator,
        *,
        interval: float = 3600.0,
    ) -> None:
        self.ctx = ctx
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
        """Refresh every account that is due for a keep-alive; how many were refreshed."""
        windows = self._windows()
        if not windows:
            return 0
        now = self.ctx.clock.now()
        async with self.ctx.db.platform_tx() as s:
            orgs = list((await s.execute(select(m.Organization.id))).scalars())
        done = 0
        for org_id in orgs:
            due: list[str] = []
            async with self.ctx.db.org_tx(org_id) as s:
                for connector_id, window in windows.items():
                    last = func.coalesce(
                        m.ConnectedAccount.last_refreshed_time,
                        m.ConnectedAccount.secret_create_time,
                    )
                    rows = await s.execute(
                        select(m.ConnectedAccount.id).where(
                            m.ConnectedAccount.org_id == org_id,
                            m.ConnectedAccount.connector_id == connector_id,
                            m.ConnectedAccount.state == "ACTIVE",
                            last < now - window,
                        )
                    )
                    due.extend(rows.scalars())
            for account_id in due:
                try:
                    await self.refresher.access_token(org_id, account_id, force=True)
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
