"""Why a token was refused: one list of reasons, shared with the control plane.

The reasons (:class:`TokenReason`, defined next to the JOSE core in
:mod:`agentauth._jose` and re-exported here) are the ``ErrorInfo.reason``
strings the server sends for the same failures, so a caller can handle a
refusal the same way whether it came from the control plane or from
:class:`agentauth.TokenValidator` in its own process.
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
from agentauth._jose import JoseError, TokenReason

__all__ = [
    "JwksUnavailableError",
    "TokenForbiddenError",
    "TokenInvalidError",
    "TokenReason",
    "from_jose",
    "token_error",
]

_DOMAIN: Final = "agentauth"


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


def from_jose(error: JoseError) -> _TokenError:
    """The typed exception for a refusal by the JOSE core (same reason and metadata)."""
    return token_error(error.reason, error.metadata)
