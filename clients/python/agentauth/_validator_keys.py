"""Verification keys from a JWK Set, each bound to exactly one algorithm, and the signature check.

RFC 8725 §3.1: "each key MUST be used with exactly one algorithm, and this
MUST be checked when the cryptographic operation is performed." A key's
algorithm is its JWK ``alg`` when present, otherwise the one its ``kty``/``crv``
implies, and the two must agree:

* ``kty: EC``, ``crv: P-256`` -> ``ES256`` (RFC 7518 §3.4, §6.2)
* ``kty: OKP``, ``crv: Ed25519`` -> ``EdDSA`` (RFC 8037 §2, §3.1)

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
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from agentauth._validator_errors import TokenReason, token_error
from agentauth._validator_jose import ParsedToken, b64url_decode, loads_strict

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
_ALG_FOR_SHAPE: Final = {shape: alg for alg, shape in SUPPORTED_ALGORITHMS.items()}
#: Members only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2).
_PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MAX_JWKS_BYTES: Final = 1 << 20
MAX_KID_LENGTH: Final = 256
_MAX_KEYS: Final = 100
_COORDINATE_BYTES: Final = 32
_SIGNATURE_BYTES: Final = 64  # ES256 R || S (RFC 7518 §3.4) and Ed25519 (RFC 8032 §5.1.6)
#: Order of the P-256 group (FIPS 186-4 §D.1.2.3).
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class JwksError(ValueError):
    """A fetched document is not a key set we can use; the previous set stays in use."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key, the only algorithm it may verify, and its raw coordinates."""

    kid: str
    alg: str
    key: PublicKey = field(repr=False, compare=False)
    #: The decoded coordinates; two keys with the same kid and material are the same key.
    material: tuple[bytes, ...] = field(repr=False)


def _coordinate(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} missing")
    raw = b64url_decode(value)
    # RFC 7518 §6.2.1.2: "The length of this octet string MUST be the full size
    # of a coordinate for the curve specified in the "crv" parameter."
    if len(raw) != _COORDINATE_BYTES:
        raise ValueError(f"{name} has the wrong length")
    return raw


def _key_from_jwk(jwk: Mapping[str, Any], algorithms: frozenset[str]) -> VerificationKey | None:
    """The key, or None when RFC 7517 §5 says to ignore it. Raises ValueError for bad material."""
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        return None
    if _PRIVATE_MEMBERS & jwk.keys():
        _log.warning("JWKS key %r publishes private key material; ignoring it", kid[:64])
        return None
    if "use" in jwk and jwk["use"] != "sig":
        return None
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return None
    kty, crv = jwk.get("kty"), jwk.get("crv")
    implied = (
        _ALG_FOR_SHAPE.get((kty, crv)) if isinstance(kty, str) and isinstance(crv, str) else None
    )
    if implied is None or jwk.get("alg", implied) != implied or implied not in algorithms:
        return None
    key: PublicKey
    if implied == "ES256":
        x, y = _coordinate(jwk, "x"), _coordinate(jwk, "y")
        # Raises ValueError for a point that is not on P-256.
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
        return VerificationKey(kid, implied, key, (x, y))
    x = _coordinate(jwk, "x")
    key = ed25519.Ed25519PublicKey.from_public_bytes(x)
    return VerificationKey(kid, implied, key, (x,))


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
            key = _key_from_jwk(member, algorithms)
        except ValueError:
            _log.warning("JWKS key with invalid key material ignored")
            continue
        if key is None:
            continue
        if key.kid in keys:
            ambiguous.add(key.kid)
        keys[key.kid] = key
    for kid in ambiguous:
        del keys[kid]
    if not keys:
        raise JwksError("key set has no usable key")
    return keys


def _refuse(reason: str) -> Exception:
    return token_error(reason)


class SignatureVerifier:
    """Checks a parsed token's signature with the key its ``kid`` selected.

    The token was parsed exactly once, strictly, by :mod:`agentauth._validator_jose`;
    the signature is checked here with ``cryptography`` over those same bytes,
    so no base64 or JSON work is repeated (handing the token to PyJWT as well
    cost ~40% of the throughput: its base64 alphabet check is per-character
    Python). Two refusals come before the curve arithmetic: a signature of the
    wrong length (RFC 7518 §3.4, ES256: "If the JWS Signature value is not a
    64-octet sequence, the validation has failed"; the same length for Ed25519,
    RFC 8032 §5.1.6) and ES256 ``r`` or ``s`` outside ``[1, n-1]``
    (CVE-2022-21449, "psychic signatures").
    """

    def verify(self, parsed: ParsedToken, key: VerificationKey) -> None:
        # RFC 8725 §3.1: the header's alg must be the key's one algorithm
        # (CVE-2026-48523: checking the allow-list but verifying with another alg).
        if parsed.alg != key.alg:
            raise _refuse(TokenReason.TOKEN_ALGORITHM_NOT_ALLOWED)
        signature = parsed.signature
        if len(signature) != _SIGNATURE_BYTES:
            raise _refuse(TokenReason.TOKEN_SIGNATURE_INVALID)
        public_key = key.key
        try:
            if isinstance(public_key, ec.EllipticCurvePublicKey):
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                if not (0 < r < _P256_ORDER and 0 < s < _P256_ORDER):
                    raise _refuse(TokenReason.TOKEN_SIGNATURE_INVALID)
                public_key.verify(encode_dss_signature(r, s), parsed.signing_input, _ECDSA_SHA256)
            else:
                public_key.verify(signature, parsed.signing_input)
        except InvalidSignature:
            raise _refuse(TokenReason.TOKEN_SIGNATURE_INVALID) from None
