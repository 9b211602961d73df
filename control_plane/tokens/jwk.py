"""Our own verification key set: public JWKs validated before any signature is checked.

Each key is parsed by the JOSE core (:func:`agentauth._jose.parse_jwk`), which
binds it to exactly one algorithm (RFC 8725 §3.1: "each key MUST be used with
exactly one algorithm"). agentauth signs with two key shapes only, so that is
all this set accepts:

* ``kty: EC``, ``crv: P-256`` -> ``ES256`` (RFC 7518 §3.4, §6.2)
* ``kty: OKP``, ``crv: Ed25519`` -> ``EdDSA`` (RFC 8037 §2, §3.1)

Everything else in a verification key set is refused rather than skipped: a key
set is our own JWKS or one an operator configured, so an odd member there is a
bug or an attack, and refusing surfaces it (Wycheproof ``json_web_key_test``
marks duplicate kids and mixed public/private sets as "best practice is to
reject"). On top of the core's rules:

* RFC 7517 §4.3 ``key_ops``: when present it must be exactly ``["verify"]``.
* RFC 7517 §4.5: "When "kid" values are used within a JWK Set, different keys
  within the JWK Set SHOULD use distinct "kid" values" - we make it MUST, since
  keys are selected only by ``kid``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from agentauth._jose import MAX_KID_LENGTH, PRIVATE_MEMBERS, JwkError, VerificationKey, parse_jwk
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from control_plane.domain.errors import InvalidArgument
from control_plane.tokens.encoding import b64url_encode, parse_json

__all__ = [
    "ALGORITHMS",
    "MAX_KEYS",
    "MAX_KID_LENGTH",
    "PRIVATE_MEMBERS",
    "JwkSet",
    "JwksInvalid",
    "PublicKey",
    "PublicKeyObject",
    "load_jwks",
    "parse_public_jwk",
    "public_jwk_from_key",
    "thumbprint",
]

#: The algorithms agentauth signs and verifies with, and the key shape each needs.
ALGORITHMS: Mapping[str, tuple[str, str]] = {"ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519")}
MAX_KEYS = 64
_COORDINATE_BYTES = 32

PublicKeyObject = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class JwksInvalid(InvalidArgument):
    """A key set (or one key in it) is not acceptable for verifying our tokens."""

    default_reason = "JWKS_INVALID"
    default_message = "the key set is not valid"


@dataclass(frozen=True, slots=True)
class PublicKey:
    """One validated verification key. ``alg`` is explicit or implied by kty/crv."""

    kid: str | None
    alg: str
    jwk: Mapping[str, str]
    verification_key: VerificationKey = field(repr=False, compare=False)

    @property
    def key(self) -> Any:
        """The ``cryptography`` public key object."""
        return self.verification_key.key


def _fail(reason: str, debug: str) -> JwksInvalid:
    return JwksInvalid(reason=reason, debug=debug)


def parse_public_jwk(jwk: object, *, require_kid: bool = True) -> PublicKey:
    """Validate one public JWK and build its key object. Raises :class:`JwksInvalid`."""
    try:
        key = parse_jwk(jwk, algorithms=ALGORITHMS, require_kid=require_kid)
    except JwkError as exc:
        raise _fail(exc.reason, exc.detail) from None
    source = cast(Mapping[str, Any], jwk)  # parse_jwk refused anything else
    if "key_ops" in source and source["key_ops"] != ["verify"]:
        raise _fail("JWKS_WRONG_USE", "key_ops is not [verify]")
    kty, crv = ALGORITHMS[key.alg]
    members: dict[str, str] = {"kty": kty, "crv": crv, "x": source["x"]}
    if kty == "EC":
        members["y"] = source["y"]
    normalized = {**members, "alg": key.alg, "use": "sig"}
    if key.kid is not None:
        normalized["kid"] = key.kid
    return PublicKey(kid=key.kid, alg=key.alg, jwk=normalized, verification_key=key)


@dataclass(frozen=True, slots=True)
class JwkSet:
    """A validated verification key set, keyed by kid. Build with :func:`load_jwks`."""

    keys: tuple[PublicKey, ...]
    _by_kid: Mapping[str, PublicKey] = field(repr=False, compare=False)

    def get(self, kid: str) -> PublicKey | None:
        return self._by_kid.get(kid)

    def to_dict(self) -> dict[str, Any]:
        return {"keys": [dict(k.jwk) for k in self.keys]}


def load_jwks(obj: Mapping[str, Any] | str | bytes) -> JwkSet:
    """Validate a JWK Set (RFC 7517 §5) for verifying ES256/EdDSA tokens.

    Accepts the parsed object or its JSON text (parsed strictly: duplicate
    member names are refused). Raises :class:`JwksInvalid` with a specific
    ``reason``; never returns a partially trusted set.
    """
    if isinstance(obj, str | bytes):
        try:
            obj = parse_json(obj)
        except ValueError:
            raise _fail("JWKS_MALFORMED", "key set is not strict JSON") from None
    if not isinstance(obj, Mapping):
        raise _fail("JWKS_MALFORMED", "key set is not a JSON object")
    entries = obj.get("keys")
    if not isinstance(entries, list) or not entries:
        raise _fail("JWKS_MALFORMED", "keys is not a non-empty array")
    if len(entries) > MAX_KEYS:
        raise _fail("JWKS_MALFORMED", "too many keys")
    # Set-level structure first, so a duplicate kid is reported as such.
    seen: set[str] = set()
    for entry in entries:
        kid = entry.get("kid") if isinstance(entry, Mapping) else None
        if isinstance(kid, str):
            if kid in seen:
                raise _fail("JWKS_DUPLICATE_KID", "two keys share a kid")
            seen.add(kid)
    keys = tuple(parse_public_jwk(entry) for entry in entries)
    return JwkSet(keys=keys, _by_kid={k.kid: k for k in keys if k.kid is not None})


def public_jwk_from_key(key: PublicKeyObject) -> dict[str, str]:
    """The public members (kty, crv, x[, y]) of one of our key objects."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("only P-256 EC keys are supported")
        numbers = key.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url_encode(numbers.x.to_bytes(_COORDINATE_BYTES, "big")),
            "y": b64url_encode(numbers.y.to_bytes(_COORDINATE_BYTES, "big")),
        }
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}


def thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, no whitespace."""
    required = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in required}, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())
