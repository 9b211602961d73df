"""Tool calls held for a human's confirmation (one org's ``tool_confirmations``)."""

from __future__ import annotations

from control_plane.storage import models as m
from control_plane.storage.repositories import TenantRepo


class ToolConfirmations(TenantRepo[m.ToolConfirmation]):
    model = m.ToolConfirmation

    async def state(self, id_: str) -> str | None:
        """The state alone (the waiting call polls it)."""
        row = await self.fields(id_, "state")
        return None if row is None else str(row.state)
