"""Why a token was refused: one list of reasons, shared with the control plane.

The reasons are the ``ErrorInfo.reason`` strings the server sends for the same
failures, so a caller can handle a refusal the same way whether it came from
the control plane or from :class:`agentauth.TokenValidator` in its own process.
The exception classes slot into the SDK's tree (see :mod:`agentauth._errors`)::

    UnauthenticatedError
    └── TokenInvalidError        every reason except the two below and JWKS_UNAVAILABLE
    PermissionDeniedError
    └── TokenForbiddenError      TOKEN_SCOPE_INSUFFICIENT, TOKEN_ORG_MISMATCH
    UnavailableError
    └── JwksUnavailableError     JWKS_UNAVAILABLE: no key set was ever fetched

Messages are fixed per reason and never contain the token or a claim value
(a claim value is attacker-chosen text, and another org's id must not leak).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import grpc

from agentauth._errors import PermissionDeniedError, UnauthenticatedError, UnavailableError

__all__ = [
    "JwksUnavailableError",
    "TokenForbiddenError",
    "TokenInvalidError",
    "TokenReason",
    "token_error",
]

_DOMAIN: Final = "agentauth"


class TokenReason:
    """The ``reason`` of every token refusal (``ErrorInfo.reason`` on the server)."""

    TOKEN_MALFORMED: Final = "TOKEN_MALFORMED"
    TOKEN_TYPE_INVALID: Final = "TOKEN_TYPE_INVALID"
    TOKEN_ALGORITHM_NOT_ALLOWED: Final = "TOKEN_ALGORITHM_NOT_ALLOWED"
    TOKEN_KEY_UNKNOWN: Final = "TOKEN_KEY_UNKNOWN"
    TOKEN_SIGNATURE_INVALID: Final = "TOKEN_SIGNATURE_INVALID"
    TOKEN_EXPIRED: Final = "TOKEN_EXPIRED"
    TOKEN_NOT_YET_VALID: Final = "TOKEN_NOT_YET_VALID"
    TOKEN_ISSUED_IN_FUTURE: Final = "TOKEN_ISSUED_IN_FUTURE"
    TOKEN_ISSUER_MISMATCH: Final = "TOKEN_ISSUER_MISMATCH"
    TOKEN_AUDIENCE_MISMATCH: Final = "TOKEN_AUDIENCE_MISMATCH"
    TOKEN_CLAIM_MISSING: Final = "TOKEN_CLAIM_MISSING"
    TOKEN_CLAIM_INVALID: Final = "TOKEN_CLAIM_INVALID"
    TOKEN_ORG_MISMATCH: Final = "TOKEN_ORG_MISMATCH"
    TOKEN_SCOPE_INSUFFICIENT: Final = "TOKEN_SCOPE_INSUFFICIENT"
    TOKEN_ACT_TOO_DEEP: Final = "TOKEN_ACT_TOO_DEEP"
    #: The token, or one it was exchanged from, was revoked (revocation feed).
    TOKEN_REVOKED: Final = "TOKEN_REVOKED"
    JWKS_UNAVAILABLE: Final = "JWKS_UNAVAILABLE"
    #: The revocation list has not been confirmed current within ``max_staleness``.
    REVOCATIONS_UNAVAILABLE: Final = "REVOCATIONS_UNAVAILABLE"

    @classmethod
    def all(cls) -> frozenset[str]:
        """Every reason, e.g. to check a server-side list against this one."""
        return frozenset(
            value for name, value in vars(cls).items() if name.isupper() and isinstance(value, str)
        )


_MESSAGES: Final[Mapping[str, str]] = {
    TokenReason.TOKEN_MALFORMED: "the token is not a well-formed compact JWS",
    TokenReason.TOKEN_TYPE_INVALID: "the token is not an access token (typ must be at+jwt)",
    TokenReason.TOKEN_ALGORITHM_NOT_ALLOWED: "the token's signing algorithm is not allowed",
    TokenReason.TOKEN_KEY_UNKNOWN: "the token was signed with an unknown key",
    TokenReason.TOKEN_SIGNATURE_INVALID: "the token's signature is invalid",
    TokenReason.TOKEN_EXPIRED: "the token has expired",
    TokenReason.TOKEN_NOT_YET_VALID: "the token is not valid yet",
    TokenReason.TOKEN_ISSUED_IN_FUTURE: "the token was issued in the future",
    TokenReason.TOKEN_ISSUER_MISMATCH: "the token was issued by another issuer",
    TokenReason.TOKEN_AUDIENCE_MISMATCH: "the token is not intended for this audience",
    TokenReason.TOKEN_CLAIM_MISSING: "the token lacks a required claim",
    TokenReason.TOKEN_CLAIM_INVALID: "a token claim has an invalid value",
    TokenReason.TOKEN_ORG_MISMATCH: "the token belongs to another organization",
    TokenReason.TOKEN_SCOPE_INSUFFICIENT: "the token lacks a required scope",
    TokenReason.TOKEN_ACT_TOO_DEEP: "the token's delegation chain is too deep",
    TokenReason.TOKEN_REVOKED: "the token has been revoked",
    TokenReason.JWKS_UNAVAILABLE: "the issuer's signing keys could not be fetched",
    TokenReason.REVOCATIONS_UNAVAILABLE: "the revocation list is not current; retry",
}


class TokenInvalidError(UnauthenticatedError):
    """The token was refused: malformed, untrusted, expired or not for us (UNAUTHENTICATED)."""


class TokenForbiddenError(PermissionDeniedError):
    """The token is valid but lacks a required scope or belongs to another org."""


class JwksUnavailableError(UnavailableError):
    """No key set has ever been fetched from the JWKS URL, so nothing can be verified; retry."""


class RevocationsUnavailableError(UnavailableError):
    """The revocation list has not been confirmed current within ``max_staleness``; retry."""


_FORBIDDEN: Final = frozenset(
    {TokenReason.TOKEN_SCOPE_INSUFFICIENT, TokenReason.TOKEN_ORG_MISMATCH}
)


_TokenError = (
    TokenInvalidError | TokenForbiddenError | JwksUnavailableError | RevocationsUnavailableError
)


def token_error(reason: str, metadata: Mapping[str, str] | None = None) -> _TokenError:
    """The typed exception for ``reason``, built like the errors the server returns.

    ``metadata`` (camelCase keys) may name a claim or the required scopes, never
    a value taken from the token.
    """
    cls: type[_TokenError]
    if reason in _FORBIDDEN:
        cls = TokenForbiddenError
    elif reason == TokenReason.JWKS_UNAVAILABLE:
        cls = JwksUnavailableError
    elif reason == TokenReason.REVOCATIONS_UNAVAILABLE:
        cls = RevocationsUnavailableError
    else:
        cls = TokenInvalidError
    code = cls.grpc_code if cls.grpc_code is not None else grpc.StatusCode.UNKNOWN
    return cls(_MESSAGES[reason], code=code, reason=reason, domain=_DOMAIN, metadata=metadata)
