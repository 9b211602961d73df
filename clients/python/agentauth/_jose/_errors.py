"""Why a token or a key was refused: the shared reason vocabulary and the core's two exceptions.

:class:`TokenReason` is the ``ErrorInfo.reason`` vocabulary the control plane
and :class:`agentauth.TokenValidator` share; the core raises
:class:`JoseError` with one of these reasons and each caller turns it into
its own exception (a typed SDK error, a server ``Unauthenticated``, an
``invalid_client``), so the same fault has the same name everywhere.
:class:`JwkError` says why a JSON Web Key is unusable.

Neither exception carries token or key text: ``detail`` is a fixed phrase
for logs, and ``metadata`` names a claim, never its value (a claim value is
attacker-chosen text).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["JoseError", "JwkError", "TokenReason"]


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


class JoseError(Exception):
    """A token failed a check. ``reason`` is a :class:`TokenReason` value.

    ``detail`` says which check, for logs only; ``metadata`` may name the
    claim concerned (``{"claim": "exp"}``).
    """

    def __init__(
        self, reason: str, detail: str = "", metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or reason
        self.metadata = metadata


class JwkError(ValueError):
    """A JSON Web Key cannot be used for verification. ``reason`` says why:

    ``JWKS_MALFORMED`` (not a JWK object, bad ``kid``), ``JWKS_PRIVATE_MEMBER``
    (private or symmetric material), ``JWKS_KEY_UNSUPPORTED`` (a key type,
    curve or algorithm the caller does not accept), ``JWKS_WRONG_USE``
    (``use``/``key_ops`` not for verification), ``JWKS_ALG_MISMATCH`` (``alg``
    is not the one the key's type implies) or ``JWKS_INVALID_KEY`` (bad or
    weak key material).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
