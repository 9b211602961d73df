"""Verification of our own compact JWS tokens: the control plane's entry to the JOSE core.

The rules are the JOSE core's (:mod:`agentauth._jose`, shared with the SDK's
``TokenValidator`` and with every other JWT the server accepts); this module
fixes the configuration for tokens agentauth signed itself and keeps the
server's error type. What that means (RFC 8725, "JSON Web Token Best Current
Practices"):

* §3.1 "Libraries MUST enable the caller to specify a supported set of
  algorithms and MUST NOT use any other algorithms": ``algorithms`` comes from
  configuration and is a subset of ``{"ES256", "EdDSA"}``; the header's ``alg``
  must be in it *and* equal the one algorithm the selected key allows. ``none``
  is never accepted, in any spelling.
* §3.10 / §2.9: the key is chosen only by ``kid`` from the key set the caller
  passes. ``jku``, ``x5u``, ``x5c`` and an embedded ``jwk`` are ignored: never
  fetched, never parsed, never trusted (CVE-2018-0114).
* RFC 7515 §4.1.11: "If any of the listed extension Header Parameters are not
  understood and supported by the recipient, then the JWS is invalid." We
  support no extensions, so any ``crit`` (even ``[]``, which §4.1.11 forbids)
  is rejected, as is ``b64`` (RFC 7797), which changes what is signed.
* §2.6 / §3.7: one encoding per token - canonical unpadded base64url, UTF-8,
  JSON without duplicate member names (header, and payload when it is JSON).
* The size cap applies before any decoding, so oversized input costs nothing.
* RFC 7518 §3.4: an ES256 signature is the 64-octet ``R || S``; anything else
  (DER, truncated, padded) is refused, and ``r``/``s`` must lie in ``[1, n-1]``
  (CVE-2022-21449, "psychic signatures").

Checks run in RFC 7515 §5.2 order (``header_first``): the header is read and
checked before payload and signature are decoded, so ``alg: none`` with an
empty signature is reported as the algorithm it is.

Compact serialization only: the JSON serializations (RFC 7515 §7.2) are
rejected. Empty payloads are rejected too: our tokens always carry claims.
Claims (``exp``, ``aud``, ``typ``...) are validated by the caller, on the
returned payload bytes (see ``control_plane.services.own_tokens``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentauth import TokenReason
from agentauth._jose import (
    DuplicateMemberError,
    JoseError,
    algorithm_set,
    loads_strict,
    parse_compact,
)
from agentauth._jose import verify_signature as verify_with_key

from control_plane.domain.errors import Unauthenticated

# The strict decoders stay importable from here, as before; tokens are decoded
# by the core, after its size check.
from control_plane.tokens.encoding import b64url_decode, parse_json_object  # noqa: F401
from control_plane.tokens.jwk import (
    ALGORITHMS,
    JwkSet,
    JwksInvalid,
    PublicKey,
    load_jwks,
    parse_public_jwk,
)

__all__ = [
    "ALLOWED_ALGORITHMS",
    "MAX_TOKEN_BYTES",
    "P256_ORDER",
    "TOKEN_ALGORITHM_NOT_ALLOWED",
    "TOKEN_HEADER_UNSUPPORTED",
    "TOKEN_KEY_MISMATCH",
    "TOKEN_KEY_UNKNOWN",
    "TOKEN_MALFORMED",
    "TOKEN_SIGNATURE_INVALID",
    "TOKEN_TOO_LARGE",
    "JwkSet",
    "JwksInvalid",
    "PublicKey",
    "TokenInvalid",
    "load_jwks",
    "verify_compact",
    "verify_signature",
]

ALLOWED_ALGORITHMS = frozenset(ALGORITHMS)
MAX_TOKEN_BYTES = 8192

# Reasons on the wire are the SDK's shared vocabulary (agentauth.TokenReason), so
# a caller sees the same reason whether the server or TokenValidator refused the
# token. The finer names below say which check fired; ``debug`` keeps the detail.
TOKEN_MALFORMED = TokenReason.TOKEN_MALFORMED
TOKEN_TOO_LARGE = TokenReason.TOKEN_MALFORMED
TOKEN_HEADER_UNSUPPORTED = TokenReason.TOKEN_MALFORMED
TOKEN_ALGORITHM_NOT_ALLOWED = TokenReason.TOKEN_ALGORITHM_NOT_ALLOWED
TOKEN_KEY_UNKNOWN = TokenReason.TOKEN_KEY_UNKNOWN
TOKEN_KEY_MISMATCH = TokenReason.TOKEN_ALGORITHM_NOT_ALLOWED
TOKEN_SIGNATURE_INVALID = TokenReason.TOKEN_SIGNATURE_INVALID

#: Order of the P-256 group (FIPS 186-4 §D.1.2.3).
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class TokenInvalid(Unauthenticated):
    """The token is not a valid JWS from a trusted key. ``reason`` says which check failed."""

    default_reason = TOKEN_MALFORMED
    default_message = "the token is invalid"

    def __init__(self, reason: str, *, debug: str | None = None) -> None:
        super().__init__(reason=reason, debug=debug)


def _allowed(algorithms: Sequence[str]) -> frozenset[str]:
    return algorithm_set(algorithms, ALLOWED_ALGORITHMS)


def verify_signature(
    alg: str, public_key_jwk: Mapping[str, Any], signing_input: bytes, signature: bytes
) -> bool:
    """True only if ``signature`` is valid for ``signing_input`` under the key and ``alg``.

    Never raises for bad input: an unsupported ``alg``, an unusable key, or a
    key whose type or ``alg`` does not match ``alg`` all give False.
    """
    if alg not in ALLOWED_ALGORITHMS:
        return False
    try:
        key = parse_public_jwk(public_key_jwk, require_kid=False)
    except JwksInvalid:
        return False
    if key.alg != alg:
        return False
    return key.verification_key.verify(bytes(signing_input), bytes(signature))


def _key_set(jwks: Mapping[str, Any] | JwkSet) -> JwkSet:
    if isinstance(jwks, JwkSet):
        return jwks
    try:
        return load_jwks(jwks)
    except JwksInvalid as exc:
        # Fail closed: a key set we refuse offers no trusted key for any kid.
        raise TokenInvalid(TOKEN_KEY_UNKNOWN, debug=f"key set refused: {exc.reason}") from None


def _check_payload_json(payload: bytes) -> None:
    try:
        loads_strict(payload)
    except DuplicateMemberError:
        raise TokenInvalid(TOKEN_MALFORMED, debug="duplicate payload member") from None
    except (ValueError, RecursionError):
        return  # not JSON: a JWS payload may be any octets; claims checks decide


def verify_compact(
    token: str,
    jwks: Mapping[str, Any] | JwkSet,
    *,
    algorithms: Sequence[str],
    max_token_bytes: int = MAX_TOKEN_BYTES,
) -> tuple[dict[str, Any], bytes]:
    """Verify a compact JWS and return ``(protected header, payload bytes)``.

    RFC 7515 §5.2 steps, each failing closed with :class:`TokenInvalid`:
    split into exactly three canonical base64url parts, parse the header as
    strict JSON, refuse what we do not implement, check ``alg`` against
    configuration, select the key by ``kid`` only, check ``alg`` against the
    key, and verify the signature over ``ASCII(header '.' payload)``.
    ``algorithms`` and ``max_token_bytes`` are configuration: a bad value
    raises TypeError/ValueError.
    """
    allowed = _allowed(algorithms)
    if not isinstance(max_token_bytes, int) or max_token_bytes <= 0:
        raise ValueError("max_token_bytes must be a positive integer")
    try:
        parsed = parse_compact(
            token, algorithms=allowed, max_bytes=max_token_bytes, header_first=True
        )
    except JoseError as exc:
        raise TokenInvalid(exc.reason, debug=exc.detail) from None
    key = _key_set(jwks).get(parsed.kid)
    if key is None:
        raise TokenInvalid(TOKEN_KEY_UNKNOWN, debug="no key with this kid")
    try:
        verify_with_key(parsed, key.verification_key)
    except JoseError as exc:
        raise TokenInvalid(exc.reason, debug=exc.detail) from None
    _check_payload_json(parsed.payload)
    return dict(parsed.header), parsed.payload
