"""Strict verification of compact JWS (RFC 7515 §7.1), the core every token check builds on.

What this module decides, and why (RFC 8725 "JSON Web Token Best Current Practices"):

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
  is rejected, as is ``b64: false`` (RFC 7797), which changes what is signed.
* §2.6 / §3.7: one encoding per token - canonical unpadded base64url, UTF-8,
  JSON without duplicate member names (header, and payload when it is JSON).
* The size cap applies before any decoding, so oversized input costs nothing.
* RFC 7518 §3.4: an ES256 signature is the 64-octet ``R || S``; anything else
  (DER, truncated, padded) is refused, and ``r``/``s`` must lie in ``[1, n-1]``
  (CVE-2022-21449, "psychic signatures").

Compact serialization only: the JSON serializations (RFC 7515 §7.2) are
rejected. Empty payloads are rejected too: our tokens always carry claims.
Claims (``exp``, ``aud``, ``typ``...) are validated by the caller, on the
returned payload bytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentauth import TokenReason
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from control_plane.domain.errors import Unauthenticated
from control_plane.tokens.encoding import DuplicateKeyError, b64url_decode, parse_json_object
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
    "TOKEN_ALGORITHM_NOT_ALLOWED",
    "TOKEN_HEADER_UNSUPPORTED",
    "TOKEN_KEY_MISMATCH",
    "TOKEN_KEY_UNKNOWN",
    "TOKEN_MALFORMED",
    "TOKEN_SIGNATURE_INVALID",
    "TOKEN_TOO_LARGE",
    "JwkSet",
    "JwksInvalid",
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
_SIGNATURE_BYTES = 64  # ES256 (RFC 7518 §3.4) and Ed25519 (RFC 8032 §5.1.6)
#: Header parameters that would change how the token is processed; we implement none.
_UNSUPPORTED_HEADERS = ("crit", "zip", "enc")


class TokenInvalid(Unauthenticated):
    """The token is not a valid JWS from a trusted key. ``reason`` says which check failed."""

    default_reason = TOKEN_MALFORMED
    default_message = "the token is invalid"

    def __init__(self, reason: str, *, debug: str | None = None) -> None:
        super().__init__(reason=reason, debug=debug)


def _allowed(algorithms: Sequence[str]) -> frozenset[str]:
    if isinstance(algorithms, str | bytes):
        # "ES256" is a Sequence[str] too; a set of letters must not pass as config.
        raise TypeError("algorithms must be a sequence of algorithm names")
    allowed = frozenset(algorithms)
    if not allowed or not allowed <= ALLOWED_ALGORITHMS:
        raise ValueError(f"algorithms must be a non-empty subset of {sorted(ALLOWED_ALGORITHMS)}")
    return allowed


def _verify_with(key: PublicKey, signing_input: bytes, signature: bytes) -> bool:
    if len(signature) != _SIGNATURE_BYTES:
        return False
    try:
        if key.alg == "ES256" and isinstance(key.key, ec.EllipticCurvePublicKey):
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            if not (0 < r < P256_ORDER and 0 < s < P256_ORDER):
                return False
            der = encode_dss_signature(r, s)
            key.key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
            return True
        if key.alg == "EdDSA" and isinstance(key.key, ed25519.Ed25519PublicKey):
            key.key.verify(signature, signing_input)
            return True
    except InvalidSignature:
        return False
    return False


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
    return _verify_with(key, bytes(signing_input), bytes(signature))


def _decode(segment: str, what: str) -> bytes:
    if not segment:
        raise TokenInvalid(TOKEN_MALFORMED, debug=f"empty {what}")
    try:
        return b64url_decode(segment)
    except ValueError:
        raise TokenInvalid(TOKEN_MALFORMED, debug=f"{what} is not canonical base64url") from None


def _parse_header(raw: bytes) -> dict[str, Any]:
    try:
        return parse_json_object(raw)
    except DuplicateKeyError:
        raise TokenInvalid(TOKEN_MALFORMED, debug="duplicate header member") from None
    except ValueError:
        raise TokenInvalid(TOKEN_MALFORMED, debug="header is not a JSON object") from None


def _check_header(header: Mapping[str, Any], allowed: frozenset[str]) -> tuple[str, str]:
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise TokenInvalid(TOKEN_MALFORMED, debug="alg missing")
    if alg.lower() == "none" or alg not in allowed:
        raise TokenInvalid(TOKEN_ALGORITHM_NOT_ALLOWED, debug="alg not allowed")
    for name in _UNSUPPORTED_HEADERS:
        if name in header:
            raise TokenInvalid(TOKEN_HEADER_UNSUPPORTED, debug=f"{name} not supported")
    if "b64" in header and header["b64"] is not True:
        raise TokenInvalid(TOKEN_HEADER_UNSUPPORTED, debug="unencoded payload not supported")
    kid = header.get("kid")
    if kid is None:
        raise TokenInvalid(TOKEN_KEY_UNKNOWN, debug="kid missing")
    if not isinstance(kid, str):
        raise TokenInvalid(TOKEN_MALFORMED, debug="kid is not a string")
    return alg, kid


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
        parse_json_object(payload)
    except DuplicateKeyError:
        raise TokenInvalid(TOKEN_MALFORMED, debug="duplicate payload member") from None
    except ValueError:
        return  # not a JSON object: a JWS payload may be any octets; claims checks decide


def verify_compact(
    token: str,
    jwks: Mapping[str, Any] | JwkSet,
    *,
    algorithms: Sequence[str],
    max_token_bytes: int = MAX_TOKEN_BYTES,
) -> tuple[dict[str, Any], bytes]:
    """Verify a compact JWS and return ``(protected header, payload bytes)``.

    RFC 7515 §5.2 steps, each failing closed with :class:`TokenInvalid`:
    split into exactly three non-empty canonical base64url parts, parse the
    header as strict JSON, refuse what we do not implement, select the key by
    ``kid`` only, check ``alg`` against configuration and the key, and verify
    the signature over ``ASCII(header '.' payload)``. ``algorithms`` and
    ``max_token_bytes`` are configuration: a bad value raises TypeError/ValueError.
    """
    allowed = _allowed(algorithms)
    if not isinstance(max_token_bytes, int) or max_token_bytes <= 0:
        raise ValueError("max_token_bytes must be a positive integer")
    if not isinstance(token, str):
        raise TokenInvalid(TOKEN_MALFORMED, debug="token is not text")
    if len(token) > max_token_bytes:
        raise TokenInvalid(TOKEN_TOO_LARGE, debug="token exceeds the size limit")
    if not token.isascii():
        raise TokenInvalid(TOKEN_MALFORMED, debug="token is not ASCII")
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenInvalid(TOKEN_MALFORMED, debug="not three segments (compact JWS only)")
    header_b64, payload_b64, signature_b64 = parts
    header = _parse_header(_decode(header_b64, "header"))
    alg, kid = _check_header(header, allowed)
    payload = _decode(payload_b64, "payload")
    signature = _decode(signature_b64, "signature")
    key = _key_set(jwks).get(kid)
    if key is None:
        raise TokenInvalid(TOKEN_KEY_UNKNOWN, debug="no key with this kid")
    if key.alg != alg:
        raise TokenInvalid(TOKEN_KEY_MISMATCH, debug="alg does not match the key")
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    if not _verify_with(key, signing_input, signature):
        raise TokenInvalid(TOKEN_SIGNATURE_INVALID, debug="signature check failed")
    _check_payload_json(payload)
    return header, payload
