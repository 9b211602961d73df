"""The one exception tree of agentauth.

::

    AgentAuthError                      (reason, code, safe message, metadata)
    ├── InvalidArgument                 INVALID_ARGUMENT   FIELD_REQUIRED, INVALID_RESOURCE_NAME
    ├── Unauthenticated                 UNAUTHENTICATED    CREDENTIALS_MISSING, CREDENTIALS_INVALID
    ├── PermissionDenied                PERMISSION_DENIED  PERMISSION_DENIED
    ├── NotFound                        NOT_FOUND          RESOURCE_NOT_FOUND
    ├── AlreadyExists                   ALREADY_EXISTS     RESOURCE_ALREADY_EXISTS
    ├── FailedPrecondition              FAILED_PRECONDITION
    ├── Unavailable                     UNAVAILABLE        STORAGE_UNAVAILABLE
    └── Internal                        INTERNAL           INTERNAL
        └── BarrierError                INTERNAL           BARRIER_FAILURE (vault: decrypt/unwrap)

Each leaf carries a ``reason`` (UPPER_SNAKE, sent as ``google.rpc.ErrorInfo.reason``),
the gRPC status code *name* (the domain layer does not import grpc), a message that
is safe to send, and camelCase ``metadata``. Private debug detail goes into
``debug`` and is never sent to a caller. The API layer has one interceptor that
turns these into statuses; the SDK maps reasons back to typed exceptions.
"""

from __future__ import annotations

DOMAIN = "agentauth"


class AgentAuthError(Exception):
    code: str = "INTERNAL"
    default_reason: str = "INTERNAL"
    default_message: str = "internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        debug: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})
        self.debug = debug
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class InvalidArgument(AgentAuthError):
    code = "INVALID_ARGUMENT"
    default_reason = "INVALID_ARGUMENT"
    default_message = "invalid argument"


class Unauthenticated(AgentAuthError):
    code = "UNAUTHENTICATED"
    default_reason = "CREDENTIALS_INVALID"
    default_message = "missing or invalid credentials"


class PermissionDenied(AgentAuthError):
    code = "PERMISSION_DENIED"
    default_reason = "PERMISSION_DENIED"
    default_message = "the caller may not perform this operation"


class NotFound(AgentAuthError):
    code = "NOT_FOUND"
    default_reason = "RESOURCE_NOT_FOUND"
    default_message = "resource not found"


class AlreadyExists(AgentAuthError):
    code = "ALREADY_EXISTS"
    default_reason = "RESOURCE_ALREADY_EXISTS"
    default_message = "resource already exists"


class FailedPrecondition(AgentAuthError):
    code = "FAILED_PRECONDITION"
    default_reason = "FAILED_PRECONDITION"
    default_message = "the operation is not allowed in the resource's current state"


class Unavailable(AgentAuthError):
    code = "UNAVAILABLE"
    default_reason = "STORAGE_UNAVAILABLE"
    default_message = "a dependency is unavailable; retry later"


class Internal(AgentAuthError):
    code = "INTERNAL"
    default_reason = "INTERNAL"
    default_message = "internal error"


class BarrierError(Internal):
    """Sealing or opening a secret failed. Never carries key material or plaintext."""

    default_reason = "BARRIER_FAILURE"
    default_message = "secret could not be opened"


def field_error(field: str, problem: str, reason: str = "INVALID_ARGUMENT") -> InvalidArgument:
    """An INVALID_ARGUMENT naming the offending field (camelCase metadata ``field``)."""
    return InvalidArgument(f"{field}: {problem}", reason=reason, metadata={"field": field})
