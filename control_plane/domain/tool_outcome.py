"""What an ExecuteTool stream carries: progress events and exactly one terminal outcome.

The failure vocabulary is one closed set; each code says whether the same call
may succeed later unchanged (``retryable``) and carries only safe metadata
(camelCase keys: ``connectUrl``, ``pointer``, ``required``, ``status``...) — never
a credential, never the value of an argument, never another org's identifiers.

A terminal outcome is also what the action record keeps (sealed), so that a
retry with the same ``request_id`` gets the first call's outcome back: it
round-trips through :func:`to_record` / :func:`from_record`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

NOT_CONNECTED = "NOT_CONNECTED"
AUTH_REVOKED = "AUTH_REVOKED"
SCOPE_INSUFFICIENT = "SCOPE_INSUFFICIENT"
RATE_LIMITED = "RATE_LIMITED"
UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
UPSTREAM_ERROR = "UPSTREAM_ERROR"
INVALID_ARGUMENTS = "INVALID_ARGUMENTS"
POLICY_DENIED = "POLICY_DENIED"
CONFIRMATION_DENIED = "CONFIRMATION_DENIED"
TIMEOUT = "TIMEOUT"

#: Every code, and whether that failure is retryable by default.
CODES: dict[str, bool] = {
    NOT_CONNECTED: False,
    AUTH_REVOKED: False,
    SCOPE_INSUFFICIENT: False,
    RATE_LIMITED: True,
    UPSTREAM_UNAVAILABLE: True,
    UPSTREAM_ERROR: False,
    INVALID_ARGUMENTS: False,
    POLICY_DENIED: False,
    CONFIRMATION_DENIED: False,
    TIMEOUT: True,
}


@dataclass(frozen=True, slots=True)
class Accepted:
    action_id: str
    account: str  # "orgs/{org}/connectedAccounts/{id}", "" for developer secrets
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Refreshed:
    pass


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    delay: float
    reason: str
    attempt: int


@dataclass(frozen=True, slots=True)
class ConfirmationRequired:
    """The call waits for a human's decision (:mod:`.tool_confirmation`)."""

    confirmation: str  # "orgs/{org}/toolConfirmations/{id}"
    summary: str
    expire_time: dt.datetime


@dataclass(frozen=True, slots=True)
class Succeeded:
    data: Any  # parsed JSON, or the text of a non-JSON answer
    status: int
    output_trust: str  # "trusted" | "untrusted"
    content_type: str = ""
    next_cursor: str = ""


@dataclass(frozen=True, slots=True)
class Failed:
    code: str
    reason: str
    message: str
    retryable: bool | None = None  # None: the code's default
    retry_after: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"not a tool error code: {self.code!r}")
        if self.retryable is None:
            object.__setattr__(self, "retryable", CODES[self.code])


Terminal = Succeeded | Failed
Event = Accepted | Refreshed | RetryScheduled | ConfirmationRequired | Succeeded | Failed


def to_record(outcome: Terminal) -> bytes:
    if isinstance(outcome, Succeeded):
        doc: dict[str, Any] = {
            "ok": True,
            "data": outcome.data,
            "status": outcome.status,
            "trust": outcome.output_trust,
            "type": outcome.content_type,
            "cursor": outcome.next_cursor,
        }
    else:
        doc = {
            "ok": False,
            "code": outcome.code,
            "reason": outcome.reason,
            "message": outcome.message,
            "retryable": outcome.retryable,
            "retryAfter": outcome.retry_after,
            "metadata": outcome.metadata,
        }
    return json.dumps(doc, separators=(",", ":")).encode()


def from_record(raw: bytes) -> Terminal:
    doc = json.loads(raw)
    if doc["ok"]:
        return Succeeded(doc["data"], doc["status"], doc["trust"], doc["type"], doc["cursor"])
    return Failed(
        doc["code"],
        doc["reason"],
        doc["message"],
        doc["retryable"],
        doc["retryAfter"],
        dict(doc["metadata"]),
    )
