"""Public JSON Web Keys and key sets, validated before any signature is checked.

We verify with exactly two key shapes, one algorithm each (RFC 8725 §3.1:
"each key MUST be used with exactly one algorithm"):

* ``kty: EC``, ``crv: P-256`` -> ``ES256`` (RFC 7518 §3.4, §6.2)
* ``kty: OKP``, ``crv: Ed25519`` -> ``EdDSA`` (RFC 8037 §2, §3.1)

Everything else in a verification key set is refused rather than skipped: a key
set is our own JWKS or one an operator configured, so an odd member there is a
bug or an attack, and refusing surfaces it (Wycheproof ``json_web_key_test``
marks duplicate kids and mixed public/private sets as "best practice is to
reject"). In particular:

* RFC 7517 §4.2/§4.3 ``use``/``key_ops``: when present they must say
  signature verification (``"sig"`` / ``["verify"]``).
* RFC 7517 §4.4 ``alg``: optional; when present it must be the one algorithm
  the key type implies.
* RFC 7517 §4.5: "When "kid" values are used within a JWK Set, different keys
  within the JWK Set SHOULD use distinct "kid" values" - we make it MUST, since
  keys are selected only by ``kid``.
* Private members (``d``, RSA CRT members, the symmetric ``k``) never belong in
  a public set: a set holding them is a leak, so it is refused.
* RFC 7518 §6.2.1.2: "The length of this octet string MUST be the full size of
  a coordinate for the curve" - coordinates must be exactly 32 bytes and on the
  curve.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from control_plane.domain.errors import InvalidArgument
from control_plane.tokens.encoding import b64url_decode, b64url_encode, parse_json

__all__ = [
    "ALGORITHMS",
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
_ALG_FOR_SHAPE = {shape: alg for alg, shape in ALGORITHMS.items()}
#: Members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MAX_KEYS = 64
MAX_KID_LENGTH = 256
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
    key: PublicKeyObject = field(repr=False, compare=False)


def _fail(reason: str, debug: str) -> JwksInvalid:
    return JwksInvalid(reason=reason, debug=debug)


def _coordinate(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    try:
        raw = b64url_decode(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) != _COORDINATE_BYTES:
        raise _fail("JWKS_INVALID_KEY", f"{name} is not a {_COORDINATE_BYTES}-byte base64url value")
    return raw


def parse_public_jwk(jwk: object, *, require_kid: bool = True) -> PublicKey:
    """Validate one public JWK and build its key object. Raises :class:`JwksInvalid`."""
    if not isinstance(jwk, Mapping) or not all(isinstance(k, str) for k in jwk):
        raise _fail("JWKS_MALFORMED", "a key is not a JSON object")
    if PRIVATE_MEMBERS & set(jwk):
        raise _fail("JWKS_PRIVATE_MEMBER", "a key carries private or symmetric key material")
    kid = jwk.get("kid")
    if kid is None and not require_kid:
        pass
    elif not isinstance(kid, str) or not 0 < len(kid) <= MAX_KID_LENGTH:
        raise _fail("JWKS_MALFORMED", "kid missing or not a short string")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty not in ("EC", "OKP"):
        raise _fail("JWKS_KEY_UNSUPPORTED", "unsupported kty")
    if "use" in jwk and jwk["use"] != "sig":
        raise _fail("JWKS_WRONG_USE", "use is not sig")
    if "key_ops" in jwk and jwk["key_ops"] != ["verify"]:
        raise _fail("JWKS_WRONG_USE", "key_ops is not [verify]")
    implied = _ALG_FOR_SHAPE.get((kty, crv)) if isinstance(crv, str) else None
    if implied is None:
        raise _fail("JWKS_KEY_UNSUPPORTED", "unsupported curve for kty")
    if "alg" in jwk and jwk["alg"] != implied:
        raise _fail("JWKS_ALG_MISMATCH", "alg does not match kty/crv")
    key: PublicKeyObject
    members: dict[str, str] = {"kty": str(kty), "crv": str(crv)}
    if kty == "EC":
        x, y = _coordinate(jwk, "x"), _coordinate(jwk, "y")
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
        except ValueError:
            raise _fail("JWKS_INVALID_KEY", "point is not on P-256") from None
        members.update(x=jwk["x"], y=jwk["y"])
    else:
        x = _coordinate(jwk, "x")
        try:
            key = ed25519.Ed25519PublicKey.from_public_bytes(x)
        except ValueError:
            raise _fail("JWKS_INVALID_KEY", "not an Ed25519 public key") from None
        members.update(x=jwk["x"])
    normalized = {**members, "alg": implied, "use": "sig"}
    if kid is not None:
        normalized["kid"] = kid
    return PublicKey(kid=kid, alg=implied, jwk=normalized, key=key)


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
