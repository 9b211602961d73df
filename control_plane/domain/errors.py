"""The one exception tree of agentauth.

::

    AgentAuthError                      (reason, code, safe message, metadata)
    ├── InvalidArgument                 INVALID_ARGUMENT   FIELD_REQUIRED, INVALID_RESOURCE_NAME
    │   └── MalformedRequest            INVALID_ARGUMENT   MALFORMED_REQUEST (undecodable bytes)
    ├── Unauthenticated                 UNAUTHENTICATED    CREDENTIALS_MISSING, CREDENTIALS_INVALID
    ├── PermissionDenied                PERMISSION_DENIED  PERMISSION_DENIED
    ├── NotFound                        NOT_FOUND          RESOURCE_NOT_FOUND
    ├── AlreadyExists                   ALREADY_EXISTS     RESOURCE_ALREADY_EXISTS
    ├── FailedPrecondition              FAILED_PRECONDITION
    ├── ResourceExhausted               RESOURCE_EXHAUSTED RATE_LIMITED (retryAfterSeconds)
    ├── RequestTooLarge                 RESOURCE_EXHAUSTED REQUEST_TOO_LARGE (maxBytes)
    ├── Unavailable                     UNAVAILABLE        AUDIT_UNAVAILABLE, UPSTREAM_*, …
    │   └── StorageUnavailable          UNAVAILABLE        STORAGE_UNAVAILABLE (retryAfterSeconds)
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


class MalformedRequest(InvalidArgument):
    """The request's bytes are not a message of the method's type (corrupt wire format,
    a string field that is not UTF-8). Refused before anything reads a field."""

    default_reason = "MALFORMED_REQUEST"
    default_message = "the request message could not be decoded"


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


class ResourceExhausted(AgentAuthError):
    """A rate limit refused the call; ``retryAfterSeconds`` says when to come back.

    Over HTTP it is 429 with the same number in ``Retry-After`` (RFC 6585 §4).
    The message names no bucket and no other caller: which limit was hit is in
    ``debug`` only.
    """

    code = "RESOURCE_EXHAUSTED"
    default_reason = "RATE_LIMITED"
    default_message = "too many requests; retry later"
    http_status = 429

    def __init__(self, retry_after_seconds: int, *, debug: str | None = None) -> None:
        if retry_after_seconds < 1:
            raise ValueError("retry_after_seconds must be at least 1")
        self.retry_after_seconds = retry_after_seconds
        super().__init__(metadata={"retryAfterSeconds": str(retry_after_seconds)}, debug=debug)


class RequestTooLarge(AgentAuthError):
    """The request is larger than its method or route accepts; refused before it is parsed.

    Over gRPC RESOURCE_EXHAUSTED, as gRPC's own message-size refusal; over HTTP 413
    (RFC 9110 §15.5.14). ``maxBytes`` says what is accepted.
    """

    code = "RESOURCE_EXHAUSTED"
    default_reason = "REQUEST_TOO_LARGE"
    default_message = "the request is too large"
    http_status = 413

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        super().__init__(
            f"the request is larger than the {max_bytes} bytes accepted here",
            metadata={"maxBytes": str(max_bytes)},
        )


class Unavailable(AgentAuthError):
    code = "UNAVAILABLE"
    default_reason = "STORAGE_UNAVAILABLE"
    default_message = "a dependency is unavailable; retry later"


class StorageUnavailable(Unavailable):
    """The database refused, dropped or did not answer in time (a bounded wait ran out).

    Retryable: the replica stays up and answers again once the database does.
    ``retryAfterSeconds`` is the hint; over HTTP it is 503 with ``Retry-After``
    (RFC 9110 §10.2.3). A write whose commit outcome is unknown also ends here:
    it is never reported as done, so a caller that retries must expect that it
    may have happened (creates carry a ``request_id`` for that).
    """

    default_reason = "STORAGE_UNAVAILABLE"
    default_message = "the database is unavailable; retry later"

    def __init__(self, retry_after_seconds: int = 1, *, debug: str | None = None) -> None:
        if retry_after_seconds < 1:
            raise ValueError("retry_after_seconds must be at least 1")
        super().__init__(metadata={"retryAfterSeconds": str(retry_after_seconds)}, debug=debug)


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


class OAuthError(AgentAuthError):
    """An RFC 6749 §5.2 / RFC 8693 §2.2.2 token-endpoint error.

    ``oauth_error`` is the wire code (``invalid_request`` …); the gRPC reason is
    its UPPER_SNAKE form. Over HTTP it becomes ``{"error", "error_description"}``.
    """

    code = "INVALID_ARGUMENT"
    http_status = 400

    def __init__(self, oauth_error: str, description: str, *, debug: str | None = None) -> None:
        self.oauth_error = oauth_error
        super().__init__(
            description,
            reason=oauth_error.upper(),
            metadata={"oauthError": oauth_error},
            debug=debug,
        )


class InvalidRequest(OAuthError):
    def __init__(self, description: str, *, debug: str | None = None) -> None:
        super().__init__("invalid_request", description, debug=debug)


class InvalidScope(OAuthError):
    def __init__(self, description: str = "requested scope exceeds what is allowed") -> None:
        super().__init__("invalid_scope", description)


class InvalidTarget(OAuthError):
    def __init__(self, description: str = "requested audience is not allowed") -> None:
        super().__init__("invalid_target", description)


class UnsupportedGrantType(OAuthError):
    def __init__(self) -> None:
        super().__init__("unsupported_grant_type", "grant_type is not supported")


class UnacceptableToken(OAuthError):
    """RFC 8693 §2.2.2: "If ... either the subject_token or actor_token are invalid
    for any reason, or are unacceptable based on policy, the invalid_request error
    code MUST be used."

    One answer for every cause — bad signature, unknown issuer, claims that miss
    the policy, revoked, another org — so the endpoint is no oracle for policy
    contents. Over gRPC it is UNAUTHENTICATED: the token is a credential.
    """

    code = "UNAUTHENTICATED"

    def __init__(self, *, debug: str | None = None) -> None:
        super().__init__(
            "invalid_request", "the subject_token or actor_token is not acceptable", debug=debug
        )


class InvalidClient(OAuthError):
    """Client authentication failed (RFC 6749 §5.2: HTTP 401)."""

    code = "UNAUTHENTICATED"
    http_status = 401

    def __init__(self, *, debug: str | None = None) -> None:
        super().__init__("invalid_client", "client authentication failed", debug=debug)
