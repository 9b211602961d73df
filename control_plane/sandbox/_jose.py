"""Signing keys and JWS compact serialization for the sandbox issuers.

Deliberately independent of ``control_plane.tokens``: the emulators stand in
for *other* systems (the Kubernetes API server, SPIRE), which sign with RSA as
well as ECDSA, while our own token code only verifies what agentauth issues.
Signing is done here with ``cryptography`` directly, so a test can put any
header it likes on a token (``alg: HS256``, no ``kid``, ...) and still get a
real signature from the issuer's key: the raw material for alg-confusion and
key-selection attacks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = [
    "ALGORITHMS",
    "IssuerKey",
    "PrivateKey",
    "PublicKey",
    "b64url",
    "compact_jws",
    "der_sha256_kid",
    "generate_key",
    "merge",
    "random_kid",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_HASHES: Mapping[str, Callable[[], hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
#: RFC 7518 §3.4: ES256/384/512 use P-256/P-384/P-521 and fixed-size R || S.
_CURVES: Mapping[str, tuple[Callable[[], ec.EllipticCurve], str, int]] = {
    "ES256": (ec.SECP256R1, "P-256", 32),
    "ES384": (ec.SECP384R1, "P-384", 48),
    "ES512": (ec.SECP521R1, "P-521", 66),
}
#: The JWS algorithms the SPIFFE JWT-SVID spec allows; Kubernetes uses a subset.
ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", *_CURVES})
_RSA_BITS = 2048


def b64url(data: bytes) -> str:
    """RFC 7515 §2 base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int, size: int | None = None) -> str:
    size = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(size, "big"))


def der_sha256_kid(public_key: PublicKey) -> str:
    """base64url(SHA-256(SubjectPublicKeyInfo DER)).

    This is how the Kubernetes API server derives ``kid`` from a service-account
    signing key (``keyIDFromPublicKey`` in ``pkg/serviceaccount/jwt.go``), so the
    same key always publishes the same kid.
    """
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b64url(hashlib.sha256(der).digest())


def random_kid(length: int = 32) -> str:
    """An opaque random key id, as SPIRE uses for its JWT signing keys."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` updated with ``overrides``; an override of ``None`` deletes the member."""
    merged = dict(base)
    for name, value in (overrides or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


@dataclass(frozen=True, slots=True)
class IssuerKey:
    """One signing key of an emulated issuer and the algorithm it signs with."""

    alg: str
    kid: str
    private_key: PrivateKey = field(repr=False)

    def public_jwk(self) -> dict[str, str]:
        """RFC 7517/7518 §6 public members plus ``kid``; callers add ``use``/``alg``."""
        public = self.private_key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            numbers = public.public_numbers()
            return {"kty": "RSA", "kid": self.kid, "n": _uint(numbers.n), "e": _uint(numbers.e)}
        _, crv, size = _CURVES[self.alg]
        point = public.public_numbers()
        return {
            "kty": "EC",
            "kid": self.kid,
            "crv": crv,
            "x": _uint(point.x, size),
            "y": _uint(point.y, size),
        }

    def sign(self, signing_input: bytes) -> bytes:
        """The JWS signature over ``signing_input`` (RFC 7518 §3.3-§3.5)."""
        digest = _HASHES[self.alg[2:]]()
        key = self.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            if self.alg.startswith("PS"):
                # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash.
                pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
                return key.sign(signing_input, pss, digest)
            return key.sign(signing_input, padding.PKCS1v15(), digest)
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(digest)))
        size = _CURVES[self.alg][2]
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def generate_key(alg: str, kid: Callable[[PublicKey], str] | None = None) -> IssuerKey:
    """A fresh key for ``alg`` (2048-bit RSA or the alg's NIST curve)."""
    if alg not in ALGORITHMS:
        raise ValueError(f"unsupported algorithm {alg!r}; expected one of {sorted(ALGORITHMS)}")
    private: PrivateKey
    if alg in _CURVES:
        private = ec.generate_private_key(_CURVES[alg][0]())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    key_id = kid(private.public_key()) if kid is not None else random_kid()
    return IssuerKey(alg=alg, kid=key_id, private_key=private)


def _json(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def compact_jws(key: IssuerKey, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """RFC 7515 §7.1 compact serialization, signed with ``key`` whatever ``header`` says."""
    signing_input = f"{b64url(_json(header))}.{b64url(_json(claims))}".encode("ascii")
    return f"{signing_input.decode('ascii')}.{b64url(key.sign(signing_input))}"
