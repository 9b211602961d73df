"""Verifying a workload's JWT (Kubernetes, SPIFFE, any OIDC issuer) against trust policies.

RFC 8725 §3.1: algorithms come from the policy, never from the token; §3.8/§3.9:
issuer and audience are checked exactly; §3.11/§3.12: a token typed as an access
token (``at+jwt``) is not a workload identity. ``jku``/``x5u``/``jwk`` headers are
never followed: keys come only from the policy's static set or its discovery URL.

:func:`verify_external` is the policy-independent part (keys, signature, iss,
aud, times), shared with user assertions from an org's identity provider.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from control_plane.domain.trust import subject_matches
from control_plane.services.external_keys import (
    ExternalKey,
    IssuerKeyCache,
    KeysUnavailable,
    single_key,
)
from control_plane.services.identity import CompiledPolicy
from control_plane.strict_json import parse_json_object
from control_plane.tokens.encoding import b64url_decode

MAX_TOKEN_BYTES = 16 * 1024
LEEWAY = 30
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})


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
    """Strict structure checks before any key lookup (sizes, encoding, duplicates).

    A header typed ``at+jwt`` is refused unless ``access_token_ok``: only a caller
    that was told it is handling an access token may accept one (RFC 8725 §3.11).
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
    typ = header.get("typ")
    if not access_token_ok and isinstance(typ, str) and typ.lower() in ACCESS_TOKEN_TYPES:
        raise Rejected("access token presented as workload identity")
    return Unverified(header, claims)


def _numeric(claims: Mapping[str, Any], name: str, required: bool) -> None:
    value = claims.get(name)
    if value is None:
        if required:
            raise Rejected(f"missing {name}")
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Rejected(f"{name} is not a NumericDate")


@dataclass(frozen=True, slots=True)
class Expected:
    """What an external JWT must satisfy, whoever configured it (a trust policy, an IdP)."""

    issuer: str  # exact "iss"; empty only for SPIFFE JWT-SVIDs, which may have none
    audience: str
    algorithms: tuple[str, ...]
    discovery_url: str
    static_keys: Mapping[str, ExternalKey] = field(default_factory=dict)
    required: tuple[str, ...] = ("exp", "sub")


async def verify(
    token: str,
    parsed: Unverified,
    policy: CompiledPolicy,
    issuer_keys: IssuerKeyCache,
    now: float,
) -> dict[str, Any]:
    """Verify ``token`` under ``policy``; return its claims or raise Rejected."""
    p = policy.view
    expected = Expected(p.issuer, p.audience, p.algorithms, p.discovery_url, policy.static_keys)
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
    """Signature, ``iss``, ``aud`` and times of ``token``; its claims or Rejected."""
    p = expected
    alg = parsed.header["alg"]
    if alg not in p.algorithms:
        raise Rejected("algorithm not allowed by policy")
    if p.issuer and parsed.claims.get("iss") != p.issuer:
        raise Rejected("issuer")
    kid = parsed.header.get("kid", "")
    if not isinstance(kid, str):
        raise Rejected("kid")
    key: ExternalKey | None
    if p.discovery_url:
        try:
            key = await issuer_keys.key(p.discovery_url, kid)
        except KeysUnavailable:
            raise Rejected("issuer keys unavailable") from None
    else:
        keys = p.static_keys
        key = keys.get(kid) if kid else single_key(keys)
    if key is None:
        raise Rejected("unknown kid")
    if key.alg and key.alg != alg:
        raise Rejected("header alg differs from the key's alg")
    for name, required in (("exp", True), ("nbf", False), ("iat", False)):
        _numeric(parsed.claims, name, required)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            audience=p.audience,
            issuer=p.issuer or None,
            leeway=LEEWAY,
            options={"require": list(p.required), "verify_iat": True},
        )
    except jwt.PyJWTError as exc:
        raise Rejected(type(exc).__name__) from None
    iat = claims.get("iat")
    if isinstance(iat, int | float) and iat > now + LEEWAY:
        raise Rejected("issued in the future")
    return claims
