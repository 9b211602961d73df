"""Verifying a workload's JWT (Kubernetes, SPIFFE, any OIDC issuer) against trust policies.

Every check is the JOSE core's (:mod:`agentauth._jose`), at the ``now`` the
caller read from the injected clock - never the wall clock. RFC 8725 §3.1:
algorithms come from the policy, never from the token, and each key verifies
with its one algorithm; §3.8/§3.9: issuer and audience are checked exactly;
§3.11/§3.12: a token typed as an access token (``at+jwt``) is not a workload
identity. ``jku``/``x5u``/``jwk`` headers are never followed: keys come only
from the policy's static set or its discovery URL, selected by ``kid`` (or,
without one, the only key of a one-key set).

:func:`verify_external` is the policy-independent part (keys, signature, iss,
aud, times), shared with user assertions from an org's identity provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentauth._jose import (
    ACCESS_TOKEN_TYPES,
    ALGORITHMS,
    JoseError,
    Typ,
    check_claims,
    parse_claims,
    parse_compact,
    select_key,
    typ_allowed,
    verify_signature,
)

from control_plane.domain.trust import subject_matches
from control_plane.services.external_keys import (
    ExternalKey,
    IssuerKeyCache,
    KeysUnavailable,
)
from control_plane.services.identity import CompiledPolicy
from control_plane.strict_json import parse_json_object
from control_plane.tokens.encoding import b64url_decode

__all__ = [
    "ACCESS_TOKEN_TYPES",
    "FOREIGN_CLAIMS_DEPTH",
    "LEEWAY",
    "MAX_TOKEN_BYTES",
    "Expected",
    "Rejected",
    "Unverified",
    "parse_unverified",
    "verify",
    "verify_external",
]

MAX_TOKEN_BYTES = 16 * 1024
LEEWAY = 30
#: A foreign issuer's claims are its own JSON (RFC 8693 §4.1 sets no depth for
#: the ``act`` a workload token may carry, and we never copy it): their nesting
#: is bounded by the size cap and the parser's recursion guard, not by a limit
#: of ours. Our own tokens and the SDK's are held to the core's default (64).
FOREIGN_CLAIMS_DEPTH = MAX_TOKEN_BYTES


class Rejected(Exception):
    """The token is not acceptable; ``why`` is private debug detail, never sent."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass(frozen=True, slots=True)
class Unverified:
    header: dict[str, Any]
    claims: dict[str, Any]


def parse_unverified(token: str, *, access_token_ok: bool = False) -> Unverified:
    """Structure checks before any key lookup (sizes, encoding, duplicates): no verification.

    What this returns routes a request (whose token is it?) and picks the
    policies worth trying; :func:`verify_external` then verifies the token
    itself through the JOSE core. A header typed ``at+jwt`` is refused unless
    ``access_token_ok``: only a caller that was told it is handling an access
    token may accept one (RFC 8725 §3.11).
    """
    if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
        raise Rejected("size")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise Rejected("segments")
    try:
        header = parse_json_object(b64url_decode(parts[0]))
        claims = parse_json_object(b64url_decode(parts[1]))
        b64url_decode(parts[2])
    except ValueError:
        raise Rejected("encoding") from None
    if "crit" in header:
        raise Rejected("crit")
    if not isinstance(header.get("alg"), str):
        raise Rejected("alg")
    if not typ_allowed(header.get("typ"), Typ.ANY if access_token_ok else Typ.NOT_ACCESS_TOKEN):
        raise Rejected("access token presented as workload identity")
    return Unverified(header, claims)


@dataclass(frozen=True, slots=True)
class Expected:
    """What an external JWT must satisfy, whoever configured it (a trust policy, an IdP)."""

    org_id: str  # whose configuration this is: its discovery fetches are on its budget
    issuer: str  # exact "iss"; empty only for SPIFFE JWT-SVIDs, which may have none
    audience: str
    algorithms: tuple[str, ...]
    discovery_url: str
    static_keys: Mapping[str, ExternalKey] = field(default_factory=dict)
    required: tuple[str, ...] = ("exp", "sub")
    #: RFC 8725 §3.11: only a caller told it holds an access token accepts ``typ: at+jwt``.
    access_token_ok: bool = False


async def verify(
    token: str,
    parsed: Unverified,
    policy: CompiledPolicy,
    issuer_keys: IssuerKeyCache,
    now: float,
) -> dict[str, Any]:
    """Verify ``token`` under ``policy`` at time ``now``; return its claims or raise Rejected."""
    p = policy.view
    expected = Expected(
        p.org_id, p.issuer, p.audience, p.algorithms, p.discovery_url, policy.static_keys
    )
    claims = await verify_external(token, parsed, expected, issuer_keys, now)
    if not subject_matches(claims, p.subject, policy.subject_regex, p.claim_equals):
        raise Rejected("claims do not match the policy")
    return claims


async def verify_external(
    token: str,
    parsed: Unverified,
    expected: Expected,
    issuer_keys: IssuerKeyCache,
    now: float,
) -> dict[str, Any]:
    """Signature, ``iss``, ``aud`` and times of ``token`` at ``now``; its claims or Rejected.

    ``now`` is epoch seconds from the caller's injected clock. The leeway is
    :data:`LEEWAY` either side of ``exp``/``nbf``/``iat``; the ``required``
    claims must be present; ``sub`` and ``jti``, when present, are strings.
    """
    p = expected
    try:
        jws = parse_compact(
            token,
            algorithms=frozenset(p.algorithms) & ALGORITHMS.keys(),
            max_bytes=MAX_TOKEN_BYTES,
            typ=Typ.ANY if p.access_token_ok else Typ.NOT_ACCESS_TOKEN,
            require_kid=False,
            header_first=True,
        )
    except JoseError as exc:
        raise Rejected(exc.detail) from None
    # Only tokens that claim this issuer get as far as its keys: a policy for
    # another issuer must not make us fetch (or wait for) that issuer's keys.
    if p.issuer and parsed.claims.get("iss") != p.issuer:
        raise Rejected("issuer")
    key: ExternalKey | None
    if p.discovery_url:
        try:
            key = await issuer_keys.key(p.org_id, p.discovery_url, jws.kid)
        except KeysUnavailable:
            raise Rejected("issuer keys unavailable") from None
    else:
        key = select_key(p.static_keys, jws.kid, allow_single=True)
    if key is None:
        raise Rejected("unknown kid")
    try:
        verify_signature(jws, key)
        claims = parse_claims(jws.payload, max_depth=FOREIGN_CLAIMS_DEPTH)
        check_claims(
            claims,
            now=now,
            leeway=LEEWAY,
            issuer=p.issuer or None,
            audience=p.audience,
            required=p.required,
        )
    except JoseError as exc:
        raise Rejected(exc.detail) from None
    for name in ("sub", "jti"):
        if name in claims and not isinstance(claims[name], str):
            raise Rejected(f"{name} is not a string")
    return claims
