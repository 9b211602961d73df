"""Claims of a verified access token, checked against RFC 9068, and the result type.

The registered claims - ``iss``, ``aud``, ``exp``, ``nbf``, ``iat``, their
NumericDate types and the leeway - are checked by the JOSE core
(:func:`agentauth._jose.check_claims`), with the validator's clock as
``now``. What is specific to an agentauth access token is here:

RFC 9068 §2.2 makes ``iss``, ``exp``, ``aud``, ``sub``, ``client_id``, ``iat``
and ``jti`` REQUIRED; agentauth adds ``org_id``. RFC 9068 §4: "The issuer
identifier for the authorization server ... MUST exactly match the value of
the "iss" claim", and the resource server "MUST validate that the "aud" claim
contains a resource indicator value corresponding to an identifier the
resource server expects for itself".

RFC 8693 §4.1: "A chain of delegation can be expressed by nesting one "act"
claim within another. The outermost "act" claim represents the current actor
while nested "act" claims represent prior actors." Each level must be an
object naming its actor in ``sub``; the chain is bounded by ``max_act_depth``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from agentauth._jose import JoseError
from agentauth._jose import check_claims as check_registered_claims
from agentauth._validator_errors import TokenReason, from_jose, token_error

__all__ = ["VerifiedToken", "authorize", "check_claims"]

_REQUIRED: Final = ("iss", "aud", "sub", "exp", "iat", "jti", "client_id", "org_id")
_ABSENT: Final = object()


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """An access token whose signature, type and claims were all checked.

    ``actor_chain`` lists the actors' ``sub`` values, the current actor (the
    outermost ``act``) first; authorize on ``subject`` and :attr:`actor` only,
    the rest is history for the audit trail. ``claims`` is a deep read-only
    copy of the whole claims set (objects become read-only mappings, arrays
    tuples); ``dict(token.claims)`` gives a plain top level.
    """

    org_id: str
    subject: str
    client_id: str
    actor_chain: tuple[str, ...]
    scopes: frozenset[str]
    audience: tuple[str, ...]
    issuer: str
    jti: str
    expires_at: float
    issued_at: float
    claims: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def actor(self) -> str | None:
        """The agent currently acting for ``subject`` (outermost ``act``), if any."""
        return self.actor_chain[0] if self.actor_chain else None

    def has_scopes(self, *scopes: str) -> bool:
        """True if the token grants every one of ``scopes``."""
        return self.scopes.issuperset(scopes)


def _invalid(claim: str) -> Exception:
    return token_error(TokenReason.TOKEN_CLAIM_INVALID, {"claim": claim})


def _text(claims: Mapping[str, Any], name: str) -> str:
    value = claims[name]
    if type(value) is not str or not value:
        raise _invalid(name)
    return value


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    # RFC 9068 §2.2.3 / RFC 8693 §4.2: "scope" is a space-delimited list;
    # RFC 6749 §3.3: scope = scope-token *( SP scope-token ).
    value = claims.get("scope", _ABSENT)
    if value is _ABSENT:
        return frozenset()
    if type(value) is not str:
        raise _invalid("scope")
    if not value:
        return frozenset()
    tokens = value.split(" ")
    if "" in tokens:
        raise _invalid("scope")
    return frozenset(tokens)


def _actor_chain(claims: Mapping[str, Any], max_depth: int) -> tuple[str, ...]:
    chain: list[str] = []
    node = claims.get("act", _ABSENT)
    while node is not _ABSENT:
        if len(chain) >= max_depth:
            raise token_error(TokenReason.TOKEN_ACT_TOO_DEEP)
        if type(node) is not dict:
            raise _invalid("act")
        sub = node.get("sub")
        if type(sub) is not str or not sub:
            raise _invalid("act")
        chain.append(sub)
        node = node.get("act", _ABSENT)
    return tuple(chain)


def _freeze(value: Any) -> Any:
    # Only containers recurse; scalars (most claims) are copied as they are.
    if type(value) is dict:
        return MappingProxyType(
            {
                name: _freeze(item) if type(item) is dict or type(item) is list else item
                for name, item in value.items()
            }
        )
    if type(value) is list:
        return tuple(
            _freeze(item) if type(item) is dict or type(item) is list else item for item in value
        )
    return value


def check_claims(
    claims: dict[str, Any],
    *,
    issuer: str,
    audience: str,
    leeway: float,
    now: float,
    max_act_depth: int,
) -> tuple[VerifiedToken, float, float]:
    """Check the claims set; return the token and the ``[from, until]`` window it is valid in.

    The window is what a verified-token cache may use: inside it, checking the
    same claims again at another time gives the same answer.
    """
    try:
        checked = check_registered_claims(
            claims, now=now, leeway=leeway, issuer=issuer, audience=audience, required=_REQUIRED
        )
    except JoseError as exc:
        raise from_jose(exc) from None
    verified = VerifiedToken(
        org_id=_text(claims, "org_id"),
        subject=_text(claims, "sub"),
        client_id=_text(claims, "client_id"),
        actor_chain=_actor_chain(claims, max_act_depth),
        scopes=_scopes(claims),
        audience=checked.audience,
        issuer=issuer,
        jti=_text(claims, "jti"),
        # Both required, so the core has read them as NumericDates already.
        expires_at=float(claims["exp"]),
        issued_at=float(claims["iat"]),
        claims=_freeze(claims),
    )
    return verified, checked.valid_from, checked.valid_until


def authorize(
    token: VerifiedToken, required_scopes: Iterable[str], expected_org: str | None
) -> VerifiedToken:
    """Per-call checks, run on cache hits too: the org, then the scopes."""
    if expected_org is not None and token.org_id != expected_org:
        raise token_error(TokenReason.TOKEN_ORG_MISMATCH)
    if required_scopes:
        if isinstance(required_scopes, str):
            # "read write" would be iterated letter by letter.
            raise TypeError("required_scopes must be an iterable of scope strings, not a str")
        wanted = (
            required_scopes
            if isinstance(required_scopes, frozenset | set)
            else frozenset(required_scopes)  # iterate a generator once
        )
        if not token.scopes.issuperset(wanted):
            raise token_error(
                TokenReason.TOKEN_SCOPE_INSUFFICIENT,
                {"requiredScopes": " ".join(sorted(wanted))},
            )
    return token
