"""The validator's key-set policy over the JOSE core, and its signature-check seam.

Each key is parsed and bound to exactly one algorithm by
:func:`agentauth._jose.parse_jwk` (RFC 8725 §3.1: "each key MUST be used with
exactly one algorithm"); what this module adds is how a fetched set is used.

RFC 7517 §5: "Implementations SHOULD ignore JWKs within a JWK Set that use
"kty" (key type) values that are not understood by them, that are missing
required members, or for which values are out of the supported ranges." So
one odd key is skipped, not fatal; but a set that yields no usable key at all
is treated as a failed fetch, so the last good set stays in use. Also skipped:
keys for another ``use``/``key_ops`` (RFC 7517 §4.2, §4.3), keys whose private
half was published (a leaked key must not be trusted), keys for algorithms
this validator was not configured with, and every key of a ``kid`` that
appears twice (RFC 7517 §4.5: "different keys within the JWK Set SHOULD use
distinct "kid" values"; we select by ``kid`` alone, so a duplicate is ambiguous).

Key objects are built once per fetched set, never per token.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

from agentauth._jose import MAX_KID_LENGTH as MAX_KID_LENGTH
from agentauth._jose import (
    JoseError,
    JwkError,
    ParsedJws,
    VerificationKey,
    loads_strict,
    parse_jwk,
    verify_signature,
)
from agentauth._validator_errors import from_jose

__all__ = [
    "MAX_JWKS_BYTES",
    "MAX_KID_LENGTH",
    "SUPPORTED_ALGORITHMS",
    "JwksError",
    "SignatureVerifier",
    "VerificationKey",
    "parse_jwks",
]

_log = logging.getLogger("agentauth.validator")

#: The algorithms agentauth signs with, and the key shape each one requires.
SUPPORTED_ALGORITHMS: Final[Mapping[str, tuple[str, str]]] = {
    "ES256": ("EC", "P-256"),
    "EdDSA": ("OKP", "Ed25519"),
}
MAX_JWKS_BYTES: Final = 1 << 20
_MAX_KEYS: Final = 100


class JwksError(ValueError):
    """A fetched document is not a key set we can use; the previous set stays in use."""


def parse_jwks(raw: bytes, algorithms: frozenset[str]) -> dict[str, VerificationKey]:
    """The usable keys of a JWK Set document, by kid. Raises :class:`JwksError`."""
    if len(raw) > MAX_JWKS_BYTES:
        raise JwksError("key set too large")
    try:
        document = loads_strict(raw)
    except (ValueError, RecursionError):
        raise JwksError("key set is not strict JSON") from None
    members = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(members, list) or len(members) > _MAX_KEYS:
        raise JwksError("key set has no keys array, or too many keys")
    keys: dict[str, VerificationKey] = {}
    ambiguous: set[str] = set()
    for member in members:
        if not isinstance(member, dict):
            continue
        try:
            key = parse_jwk(member, algorithms=algorithms)
        except JwkError as exc:
            if exc.reason == "JWKS_PRIVATE_MEMBER":
                kid = member.get("kid")
                _log.warning(
                    "JWKS key %r publishes private key material; ignoring it",
                    kid[:64] if isinstance(kid, str) else None,
                )
            elif exc.reason == "JWKS_INVALID_KEY":
                _log.warning("JWKS key with invalid key material ignored")
            continue
        kid = key.kid
        if kid is None:  # not with require_kid, parse_jwk's default
            continue
        if kid in keys:
            ambiguous.add(kid)
        keys[kid] = key
    for kid in ambiguous:
        del keys[kid]
    if not keys:
        raise JwksError("key set has no usable key")
    return keys


class SignatureVerifier:
    """Checks a parsed token's signature with the key its ``kid`` selected.

    The token was parsed exactly once, strictly, by
    :func:`agentauth._jose.parse_compact`; the core checks the header's
    ``alg`` against the key's one algorithm and the signature over those same
    bytes, so no base64 or JSON work is repeated. This class is the seam the
    validator calls through (tests count or interpose verifications here).
    """

    def verify(self, parsed: ParsedJws, key: VerificationKey) -> None:
        try:
            verify_signature(parsed, key)
        except JoseError as exc:
            raise from_jose(exc) from None
