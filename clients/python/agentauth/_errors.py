"""Typed exceptions for errors returned by the agentauth control plane.

The server answers every failure with a ``google.rpc.Status`` carrying exactly
one ``google.rpc.ErrorInfo`` (domain ``agentauth``, reason in UPPER_SNAKE,
camelCase metadata). :func:`from_rpc_error` turns that back into one exception
class per gRPC status code, keeping the reason for finer distinctions::

    AgentAuthError                    any other code (UNKNOWN, DEADLINE_EXCEEDED, ...)
    ├── InvalidArgumentError          INVALID_ARGUMENT
    ├── UnauthenticatedError          UNAUTHENTICATED
    ├── PermissionDeniedError         PERMISSION_DENIED
    ├── NotFoundError                 NOT_FOUND
    ├── AlreadyExistsError            ALREADY_EXISTS
    ├── FailedPreconditionError       FAILED_PRECONDITION
    ├── ResourceExhaustedError        RESOURCE_EXHAUSTED
    ├── UnavailableError              UNAVAILABLE
    └── InternalError                 INTERNAL
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import grpc
from google.protobuf.message import DecodeError
from google.rpc.error_details_pb2 import ErrorInfo
from google.rpc.status_pb2 import Status

__all__ = [
    "AgentAuthError",
    "AlreadyExistsError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "from_rpc_error",
]

# The trailer in which gRPC servers send the serialized google.rpc.Status.
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class AgentAuthError(Exception):
    """An error returned by the control plane, or by the transport reaching it.

    Attributes:
        code: the gRPC status code of the call.
        reason: UPPER_SNAKE reason from the ``ErrorInfo``, e.g.
            ``"RESOURCE_NOT_FOUND"``; the status code's name when the error
            carried no ``ErrorInfo`` (e.g. a transport failure).
        domain: the ``ErrorInfo`` domain, ``"agentauth"`` for server errors;
            empty when there was no ``ErrorInfo``.
        metadata: the ``ErrorInfo`` metadata (camelCase keys). Deliberately
            left out of ``str()`` and ``repr()`` so logging an exception never
            prints values the caller did not choose to log.
        message: the server's human-readable, safe-to-show message.
    """

    grpc_code: ClassVar[grpc.StatusCode | None] = None

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason or code.name
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"domain={self.domain!r}, message={self.message!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments break Exception's default
        # pickling, which multiprocessing and some task queues rely on.
        return (
            _rebuild,
            (type(self), self.message, self.code, self.reason, self.domain, self.metadata),
        )


def _rebuild(
    cls: type[AgentAuthError],
    message: str,
    code: grpc.StatusCode,
    reason: str,
    domain: str,
    metadata: dict[str, str],
) -> AgentAuthError:
    return cls(message, code=code, reason=reason, domain=domain, metadata=metadata)


class InvalidArgumentError(AgentAuthError):
    """The request was malformed, e.g. a bad resource name or missing field."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT


class UnauthenticatedError(AgentAuthError):
    """The API key or token was missing, unknown, expired or revoked."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(AgentAuthError):
    """The caller is authenticated but not allowed to do this."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class NotFoundError(AgentAuthError):
    """The resource does not exist, or belongs to another organization."""

    grpc_code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(AgentAuthError):
    """A resource with the same unique key already exists."""

    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(AgentAuthError):
    """The resource is not in a state that allows this, e.g. it is disabled."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhaustedError(AgentAuthError):
    """A rate limit or quota was hit; retry later."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(AgentAuthError):
    """The control plane could not be reached or is shutting down; retry."""

    grpc_code = grpc.StatusCode.UNAVAILABLE


class InternalError(AgentAuthError):
    """The control plane failed; details are in its logs, not in the error."""

    grpc_code = grpc.StatusCode.INTERNAL


_BY_CODE: dict[grpc.StatusCode, type[AgentAuthError]] = {
    cls.grpc_code: cls
    for cls in (
        InvalidArgumentError,
        UnauthenticatedError,
        PermissionDeniedError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        ResourceExhaustedError,
        UnavailableError,
        InternalError,
    )
    if cls.grpc_code is not None
}


def _call_code(err: grpc.RpcError) -> grpc.StatusCode:
    # grpc.RpcError itself declares no accessors; both AioRpcError and the
    # sync errors (which are also grpc.Call) provide code().
    code = getattr(err, "code", None)
    value = code() if callable(code) else None
    return value if isinstance(value, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _call_details(err: grpc.RpcError) -> str:
    details = getattr(err, "details", None)
    value = details() if callable(details) else None
    return value if isinstance(value, str) else ""


def _status_details(err: grpc.RpcError) -> Status | None:
    trailing = getattr(err, "trailing_metadata", None)
    items: Iterable[tuple[str, str | bytes]] | None = trailing() if callable(trailing) else None
    for key, value in items or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            try:
                return Status.FromString(value)
            except DecodeError:
                # A garbled trailer must not hide the original failure.
                return None
    return None


def _error_info(status: Status) -> ErrorInfo | None:
    for detail in status.details:
        info = ErrorInfo()
        # Unpack is a no-op returning False for other detail types.
        if detail.Unpack(info):
            return info
    return None


def from_rpc_error(err: grpc.RpcError) -> AgentAuthError:
    """Convert a failed gRPC call (sync or ``grpc.aio``) into a typed error.

    The class is chosen by the call's status code; the reason, domain and
    metadata come from the ``ErrorInfo`` in the ``grpc-status-details-bin``
    trailer when there is one.
    """
    code = _call_code(err)
    status = _status_details(err)
    info = _error_info(status) if status is not None else None
    message = status.message if status is not None and status.message else _call_details(err)
    cls = _BY_CODE.get(code, AgentAuthError)
    if info is None:
        return cls(message, code=code)
    return cls(
        message,
        code=code,
        reason=info.reason,
        domain=info.domain,
        metadata=dict(info.metadata),
    )
