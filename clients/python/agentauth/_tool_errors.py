"""Typed exceptions for the outcomes of ``ToolService.ExecuteTool`` that are not a result.

A tool call that the control plane accepted for processing ends with a
``ToolError`` stream message (not a gRPC status); :func:`tool_error_from_proto`
turns it into one exception class per ``ToolErrorCode``::

    ToolError                          any code this SDK does not know yet
    ├── ToolNotConnected               NOT_CONNECTED         connect_url
    ├── ToolAuthRevoked                AUTH_REVOKED          reconnect_url
    ├── ToolScopeInsufficient          SCOPE_INSUFFICIENT    required, granted, reconnect_url
    ├── ToolRateLimited                RATE_LIMITED          retry_after
    ├── ToolUpstreamUnavailable        UPSTREAM_UNAVAILABLE
    ├── ToolUpstreamError              UPSTREAM_ERROR        status, provider_code
    ├── ToolInvalidArguments           INVALID_ARGUMENTS     pointer
    ├── ToolPolicyDenied               POLICY_DENIED         rule
    ├── ToolConfirmationDenied         CONFIRMATION_DENIED
    ├── ToolTimeout                    TIMEOUT
    └── ToolStreamIncomplete           the stream ended without a result or an error

Faults of the request itself (an invalid token, a malformed field) are gRPC
statuses and raise :class:`agentauth.AgentAuthError` subclasses instead.

``str()`` of a tool error is ``"REASON: message"``, the server's message for
the developer; ``metadata`` (links, scope lists) is left out of ``str()`` and
``repr()`` so that logging or showing the error to a model passes on nothing
the caller did not choose to pass on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from agentauth.v1 import tool_pb2

__all__ = [
    "ToolAuthRevoked",
    "ToolConfirmationDenied",
    "ToolError",
    "ToolInvalidArguments",
    "ToolNotConnected",
    "ToolPolicyDenied",
    "ToolRateLimited",
    "ToolScopeInsufficient",
    "ToolStreamIncomplete",
    "ToolTimeout",
    "ToolUpstreamError",
    "ToolUpstreamUnavailable",
    "tool_error_from_proto",
]

_PREFIX = "TOOL_ERROR_CODE_"


class ToolError(Exception):
    """A tool call that ended without a result.

    Attributes:
        code: the ``ToolErrorCode`` without its prefix, e.g. ``"NOT_CONNECTED"``
            (``"CODE_<n>"`` for a code newer than this SDK).
        reason: the finer UPPER_SNAKE reason, e.g. ``"TOKEN_SCOPE"``.
        message: the server's message for the developer.
        retryable: whether the same call may succeed later unchanged.
        retry_after: seconds to wait before retrying, when the server said.
        metadata: details with camelCase keys (links, scopes, statuses).
        action_id: the call's id in the audit trail when it had been accepted,
            else "".
    """

    #: The ``ToolErrorCode`` this class stands for (``None``: no single one).
    proto_code: ClassVar[int | None] = None

    def __init__(
        self,
        message: str,
        *,
        code: str = "UNSPECIFIED",
        reason: str = "",
        retryable: bool = False,
        retry_after: float | None = None,
        metadata: Mapping[str, str] | None = None,
        action_id: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason or code
        self.retryable = retryable
        self.retry_after = retry_after
        self.metadata: dict[str, str] = dict(metadata or {})
        self.action_id = action_id

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, reason={self.reason!r}, "
            f"retryable={self.retryable}, message={self.message!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments break Exception's default pickling.
        return (
            _rebuild,
            (
                type(self),
                self.message,
                self.code,
                self.reason,
                self.retryable,
                self.retry_after,
                self.metadata,
                self.action_id,
            ),
        )


def _rebuild(
    cls: type[ToolError],
    message: str,
    code: str,
    reason: str,
    retryable: bool,
    retry_after: float | None,
    metadata: dict[str, str],
    action_id: str,
) -> ToolError:
    return cls(
        message,
        code=code,
        reason=reason,
        retryable=retryable,
        retry_after=retry_after,
        metadata=metadata,
        action_id=action_id,
    )


def _split(value: str) -> tuple[str, ...]:
    # Scope lists travel as one metadata string, space- or comma-separated.
    return tuple(part for part in value.replace(",", " ").split() if part)


class ToolNotConnected(ToolError):
    """The principal has no usable account for the tool's connector."""

    proto_code = tool_pb2.TOOL_ERROR_CODE_NOT_CONNECTED

    @property
    def connect_url(self) -> str:
        """A hosted link that connects an account; empty when none can be made."""
        return self.metadata.get("connectUrl", "")


class ToolAuthRevoked(ToolError):
    """The provider no longer honours the account's grant: the user must reconnect."""

    proto_code = tool_pb2.TOOL_ERROR_CODE_AUTH_REVOKED

    @property
    def reconnect_url(self) -> str:
        return self.metadata.get("reconnectUrl", "")


class ToolScopeInsufficient(ToolError):
    """The connected account has not granted the provider scopes the tool needs."""

    proto_code = tool_pb2.TOOL_ERROR_CODE_SCOPE_INSUFFICIENT

    @property
    def required(self) -> tuple[str, ...]:
        return _split(self.metadata.get("required", ""))

    @property
    def granted(self) -> tuple[str, ...]:
        return _split(self.metadata.get("granted", ""))

    @property
    def reconnect_url(self) -> str:
        return self.metadata.get("reconnectUrl", "")


class ToolRateLimited(ToolError):
    """The provider's rate limit; ``retry_after`` is set when the provider said."""

    proto_code = tool_pb2.TOOL_ERROR_CODE_RATE_LIMITED


class ToolUpstreamUnavailable(ToolError):
    """The provider could not be reached or failed transiently."""

    proto_code = tool_pb2.TOOL_ERROR_CODE_UPSTREAM_UNAVAILABLE


class ToolUpstreamError(ToolError):
    """The provider refused the request."""

    proto_code = tool_pb2.TOOL_ERROR_CODE_UPSTREAM_ERROR

    @property
    def status(self) -> int | None:
        """The provider's HTTP status, when the server reported one."""
        value = self.metadata.get("status", "")
        return int(value) if value.isdigit() else None

    @property
    def provider_code(self) -> str:
        return self.metadata.get("providerCode", "")


class ToolInvalidArguments(ToolError):
    """The arguments do not match the tool's JSON Schema."""

    proto_code = tool_pb2.TOOL_ERROR_CODE_INVALID_ARGUMENTS

    @property
    def pointer(self) -> str:
        """RFC 6901 JSON Pointer to the offending argument ("" for the whole)."""
        return self.metadata.get("pointer", "")


class ToolPolicyDenied(ToolError):
    """The token's scopes or the organization's tool policy do not allow the call."""

    proto_code = tool_pb2.TOOL_ERROR_CODE_POLICY_DENIED

    @property
    def rule(self) -> str:
        return self.metadata.get("rule", "")


class ToolConfirmationDenied(ToolError):
    """A human declined the confirmation the call needed."""

    proto_code = tool_pb2.TOOL_ERROR_CODE_CONFIRMATION_DENIED


class ToolTimeout(ToolError):
    """The call's time ran out, or its outcome is unknown."""

    proto_code = tool_pb2.TOOL_ERROR_CODE_TIMEOUT


class ToolStreamIncomplete(ToolError):
    """The stream ended without its terminal ``result`` or ``error``.

    The outcome is unknown: the provider may or may not have been called. Retry
    with the same ``request_id`` to get the recorded outcome instead of a second
    side effect.
    """

    def __init__(self, message: str = "the tool call stream ended without an outcome", **kw: Any):
        kw.setdefault("code", "STREAM_INCOMPLETE")
        super().__init__(message, **kw)


_BY_CODE: dict[int, type[ToolError]] = {
    cls.proto_code: cls
    for cls in (
        ToolNotConnected,
        ToolAuthRevoked,
        ToolScopeInsufficient,
        ToolRateLimited,
        ToolUpstreamUnavailable,
        ToolUpstreamError,
        ToolInvalidArguments,
        ToolPolicyDenied,
        ToolConfirmationDenied,
        ToolTimeout,
    )
    if cls.proto_code is not None
}


def _code_name(code: int) -> str:
    try:
        name: str = tool_pb2.ToolErrorCode.Name(code)
    except ValueError:
        return f"CODE_{code}"
    return name.removeprefix(_PREFIX)


def tool_error_from_proto(error: tool_pb2.ToolError, action_id: str = "") -> ToolError:
    """The typed exception for a terminal ``ToolError`` stream message."""
    retry_after = (
        error.retry_after.ToTimedelta().total_seconds() if error.HasField("retry_after") else None
    )
    cls = _BY_CODE.get(error.code, ToolError)
    return cls(
        error.message,
        code=_code_name(error.code),
        reason=error.reason,
        retryable=error.retryable,
        retry_after=retry_after,
        metadata=dict(error.metadata),
        action_id=action_id,
    )
