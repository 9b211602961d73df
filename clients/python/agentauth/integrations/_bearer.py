"""The ``Authorization: Bearer <token>`` header (RFC 6750 §2.1), shared by the adapters.

RFC 6750 §2.1: ``credentials = "Bearer" 1*SP b64token``; the scheme name is
case-insensitive (RFC 9110 §11.1). A request carrying the header twice is
refused rather than resolved: which copy a proxy or a framework picks differs.
The reasons match the control plane's own authentication interceptor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import grpc

from agentauth._errors import UnauthenticatedError

__all__ = ["CREDENTIALS_INVALID", "CREDENTIALS_MISSING", "bearer_token"]

CREDENTIALS_MISSING: Final = "CREDENTIALS_MISSING"
CREDENTIALS_INVALID: Final = "CREDENTIALS_INVALID"


def _refuse(reason: str, message: str) -> UnauthenticatedError:
    return UnauthenticatedError(
        message, code=grpc.StatusCode.UNAUTHENTICATED, reason=reason, domain="agentauth"
    )


def bearer_token(values: Sequence[str]) -> str:
    """The token from the authorization header values; raises UnauthenticatedError."""
    if not values:
        raise _refuse(CREDENTIALS_MISSING, "send 'authorization: Bearer <access token>'")
    if len(values) > 1:
        raise _refuse(CREDENTIALS_INVALID, "send exactly one authorization header")
    scheme, _, credentials = values[0].partition(" ")
    token = credentials.strip(" ")
    if scheme.lower() != "bearer" or not token or " " in token:
        raise _refuse(CREDENTIALS_INVALID, "the authorization header is not 'Bearer <token>'")
    return token
