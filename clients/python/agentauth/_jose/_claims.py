"""The registered claims every JWT verifier checks, against a time the caller passes in.

There is no clock here: ``now`` (epoch seconds) is a parameter, so the
control plane checks with its injected ``Clock`` and the SDK with the
validator's ``clock``, and a test can put any token at any time.

* RFC 7519 §2 "NumericDate": "A JSON numeric value representing the number
  of seconds from 1970-01-01T00:00:00Z UTC" - so a string, a boolean, null
  or a negative number is not one (PyJWT 2.15.1 accepts ``"9999999999"``),
  and neither is a value past 2**53, which JSON cannot carry exactly
  (RFC 7493 §2.2) [TOKEN_CLAIM_INVALID].
* RFC 7519 §4.1.4 ``exp``: "the current date/time MUST be before the
  expiration date/time listed in the "exp" claim. Implementers MAY provide
  for some small leeway, usually no more than a few minutes, to account for
  clock skew" - the leeway is bounded by :data:`MAX_LEEWAY` [TOKEN_EXPIRED].
* RFC 7519 §4.1.5 ``nbf``: "the current date/time MUST be after or equal to
  the not-before date/time" [TOKEN_NOT_YET_VALID].
* RFC 7519 §4.1.6 ``iat``: a token issued after ``now`` (beyond the leeway)
  comes from a skewed or forged issuer [TOKEN_ISSUED_IN_FUTURE].
* RFC 7519 §4.1.1 / RFC 8725 §3.8 ``iss``: exact string equality, no
  normalisation [TOKEN_ISSUER_MISMATCH].
* RFC 7519 §4.1.3 ``aud``: "Each principal intended to process the JWT MUST
  identify itself with a value in the audience claim. If the principal
  processing the claim does not identify itself with a value in the "aud"
  claim when this claim is present, then the JWT MUST be rejected" - an
  accepted audience must equal one of the values exactly, no substring or
  prefix matching (PyJWT CVE-2024-53861) [TOKEN_AUDIENCE_MISMATCH].
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final, NamedTuple

from agentauth._jose._errors import JoseError, TokenReason

__all__ = ["MAX_LEEWAY", "MAX_NUMERIC_DATE", "CheckedClaims", "check_claims", "numeric_date"]

#: "usually no more than a few minutes" (RFC 7519 §4.1.4).
MAX_LEEWAY: Final = 300.0
MAX_NUMERIC_DATE: Final = 2**53 - 1
_R: Final = TokenReason


class CheckedClaims(NamedTuple):
    """What :func:`check_claims` established.

    ``[valid_from, valid_until]`` is the window in which the same check gives
    the same answer: what a verified-token cache may use. (A named tuple, not a
    frozen dataclass: it is built once per verified token, on the hot path.)
    """

    audience: tuple[str, ...]
    expires_at: float | None
    issued_at: float | None
    valid_from: float
    valid_until: float


def _invalid(claim: str) -> JoseError:
    return JoseError(_R.TOKEN_CLAIM_INVALID, f"{claim} is invalid", {"claim": claim})


def numeric_date(claims: Mapping[str, Any], name: str) -> float:
    """The claim as an RFC 7519 NumericDate, or JoseError(TOKEN_CLAIM_INVALID)."""
    value = claims.get(name)
    if type(value) is int or type(value) is float:  # bool is an int subclass: excluded
        if 0 <= value <= MAX_NUMERIC_DATE:  # NaN fails both comparisons
            return float(value)
    raise _invalid(name)


def _audience(value: object) -> tuple[str, ...]:
    # RFC 7519 §4.1.3: "an array of case-sensitive strings ... In the special
    # case when the JWT has one audience, the "aud" value MAY be a single
    # case-sensitive string".
    if type(value) is str:
        return (value,)
    if type(value) is list and value and all(type(item) is str for item in value):
        return tuple(value)
    raise _invalid("aud")


def check_claims(
    claims: Mapping[str, Any],
    *,
    now: float,
    leeway: float,
    issuer: str | None = None,
    audience: str | Collection[str] | None = None,
    required: Iterable[str] = ("exp",),
) -> CheckedClaims:
    """Check the registered claims at time ``now``; JoseError names the first failure.

    In order: every ``required`` claim is present [TOKEN_CLAIM_MISSING];
    ``iss`` equals ``issuer`` when one is given; ``aud`` holds ``audience``
    (or one of several accepted audiences) when given; ``exp``, ``nbf`` and
    ``iat``, where present, are NumericDates and ``now`` lies within them,
    ``leeway`` seconds either side. ``leeway`` must be in ``[0, MAX_LEEWAY]``
    (a configuration error otherwise: ValueError).
    """
    if not 0 <= leeway <= MAX_LEEWAY:
        raise ValueError(f"leeway must be between 0 and {MAX_LEEWAY:g} seconds")
    for name in required:
        if name not in claims:
            raise JoseError(_R.TOKEN_CLAIM_MISSING, f"{name} missing", {"claim": name})
    if issuer is not None:
        if "iss" not in claims:
            raise JoseError(_R.TOKEN_CLAIM_MISSING, "iss missing", {"claim": "iss"})
        iss = claims["iss"]
        if type(iss) is not str:
            raise _invalid("iss")
        if iss != issuer:
            raise JoseError(_R.TOKEN_ISSUER_MISMATCH, "another issuer")
    aud: tuple[str, ...] = ()
    if audience is not None:
        if "aud" not in claims:
            raise JoseError(_R.TOKEN_CLAIM_MISSING, "aud missing", {"claim": "aud"})
        aud = _audience(claims["aud"])
        if type(audience) is str:
            ours = audience in aud
        else:
            ours = any(accepted in aud for accepted in audience)
        if not ours:
            raise JoseError(_R.TOKEN_AUDIENCE_MISMATCH, "not for this audience")
    exp = numeric_date(claims, "exp") if "exp" in claims else None
    iat = numeric_date(claims, "iat") if "iat" in claims else None
    nbf = numeric_date(claims, "nbf") if "nbf" in claims else -math.inf
    valid_until = math.inf if exp is None else exp + leeway
    if now > valid_until:
        raise JoseError(_R.TOKEN_EXPIRED, "expired")
    if now < nbf - leeway:
        raise JoseError(_R.TOKEN_NOT_YET_VALID, "not valid yet")
    if iat is not None and iat > now + leeway:
        raise JoseError(_R.TOKEN_ISSUED_IN_FUTURE, "issued in the future")
    valid_from = max(nbf, -math.inf if iat is None else iat) - leeway
    return CheckedClaims(aud, exp, iat, valid_from, valid_until)
