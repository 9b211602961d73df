"""The audit seam. Today a structured log stream; the audit issue adds the
hash-chained ``audit_events`` table behind the same interface.

Audit happens before side effects (Vault's rule): the interceptor records the
attempt first and refuses the call if that record cannot be written.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field, replace
from typing import Protocol

from control_plane.domain.errors import Unavailable
from control_plane.domain.principals import Principal
from control_plane.domain.tool_outcome import Failed, Terminal
from control_plane.logs import info_line


@dataclass(frozen=True, slots=True)
class AuditEvent:
    action: str  # full RPC method name
    phase: str  # "attempt" | "outcome"
    principal_role: str
    principal_key: str
    principal_org: str | None
    outcome: str  # "pending" or the status code name
    reason: str = ""
    transport: str = "grpc"  # "grpc" | "http": which surface the call came in on
    #: Tool actions: the tool, the action's id, and the agent acting (outermost act).
    target: str = ""
    action_id: str = ""
    actor: str = ""
    time: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @classmethod
    def of(
        cls,
        action: str,
        phase: str,
        principal: Principal | None,
        outcome: str,
        reason: str = "",
        transport: str = "grpc",
    ) -> AuditEvent:
        """An event for ``principal``; None is an anonymous caller (a token grant)."""
        return cls(
            action=action,
            phase=phase,
            principal_role=principal.role.value if principal else "anonymous",
            principal_key=principal.key_id if principal else "",
            principal_org=principal.org_id if principal else None,
            outcome=outcome,
            reason=reason,
            transport=transport,
        )


class AuditSink(Protocol):
    async def record(self, event: AuditEvent) -> None: ...


EXECUTE_TOOL = "/agentauth.v1.ToolService/ExecuteTool"


class ToolActionAudit:
    """ExecuteTool's records through the audit seam: the intent before the provider is
    called (if it cannot be written, the call does not happen) and exactly one
    outcome per attempt, refusals included."""

    def __init__(self, sink: AuditSink) -> None:
        self._sink = sink

    def _event(
        self, principal: Principal, action_id: str, tool: str, phase: str, outcome: str, reason: str
    ) -> AuditEvent:
        caller = principal.caller
        return replace(
            AuditEvent.of(EXECUTE_TOOL, phase, principal, outcome, reason),
            target=tool[:128],
            action_id=action_id,
            actor=caller.actor if caller is not None else "",
        )

    async def intent(self, principal: Principal, action_id: str, tool: str) -> None:
        try:
            await self._sink.record(
                self._event(principal, action_id, tool, "attempt", "pending", "")
            )
        except Exception:
            raise Unavailable("audit log unavailable", reason="AUDIT_UNAVAILABLE") from None

    async def outcome(
        self, principal: Principal, action_id: str, tool: str, outcome: Terminal
    ) -> None:
        if isinstance(outcome, Failed):
            code, reason = outcome.code, outcome.reason
        else:
            code, reason = "OK", ""
        await self._sink.record(self._event(principal, action_id, tool, "outcome", code, reason))


class LogAuditSink:
    def __init__(self) -> None:
        self._log = logging.getLogger("agentauth.audit")

    async def record(self, event: AuditEvent) -> None:
        # Field by field (dataclasses.asdict deep-copies), and through the cheap line
        # writer: two audit lines per mint were a fifth of its cost through structlog.
        info_line(
            self._log,
            "audit",
            {
                "action": event.action,
                "phase": event.phase,
                "principal_role": event.principal_role,
                "principal_key": event.principal_key,
                "principal_org": event.principal_org,
                "outcome": event.outcome,
                "reason": event.reason,
                "transport": event.transport,
                **(
                    {"target": event.target, "action_id": event.action_id, "actor": event.actor}
                    if event.action_id
                    else {}
                ),
                "time": event.time.isoformat(),
            },
        )


class RecordingAuditSink:
    """Wraps a real sink, keeps what passed through and can inject a failure."""

    def __init__(self, inner: AuditSink | None = None) -> None:
        self.inner = inner or LogAuditSink()
        self.events: list[AuditEvent] = []
        self._next_error: Exception | None = None

    def set_next_error(self, exc: Exception) -> None:
        self._next_error = exc

    async def record(self, event: AuditEvent) -> None:
        if self._next_error is not None:
            exc, self._next_error = self._next_error, None
            raise exc
        await self.inner.record(event)
        self.events.append(event)
