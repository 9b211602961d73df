"""ExecuteTool's action records (one org's ``tool_actions``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, update

from control_plane.storage import models as m
from control_plane.storage.repositories import TenantRepo


class ToolActions(TenantRepo[m.ToolAction]):
    model = m.ToolAction

    async def by_request(self, principal: str, request_id: str) -> m.ToolAction | None:
        return await self.find(principal=principal, request_id=request_id)

    async def finish(self, action_id: str, state: str, outcome: bytes, now: dt.datetime) -> bool:
        """Record a PENDING action's outcome (one statement); False when it had one."""
        result: Any = await self._s.execute(
            update(m.ToolAction)
            .where(
                m.ToolAction.org_id == self.org_id,
                m.ToolAction.id == action_id,
                m.ToolAction.state == "PENDING",
            )
            .values(state=state, outcome=outcome, finish_time=now)
        )
        return bool(result.rowcount)

    async def prune(self, before: dt.datetime) -> int:
        """Delete records created before ``before`` (past the idempotency window)."""
        result: Any = await self._s.execute(
            delete(m.ToolAction).where(
                m.ToolAction.org_id == self.org_id, m.ToolAction.create_time < before
            )
        )
        return int(result.rowcount or 0)
