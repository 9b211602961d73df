"""Public JSON Web Keys, each bound to exactly one algorithm, and the signature primitives.

RFC 8725 §3.1: "each key MUST be used with exactly one algorithm, and this
MUST be checked when the cryptographic operation is performed." A key's one
algorithm is its JWK ``alg`` when present; otherwise the one its shape
implies - ``EC`` by curve, ``OKP`` ``Ed25519`` -> ``EdDSA`` - and, for an
``RSA`` key without ``alg``, ``RS256`` (RFC 7518 §3.1 marks it "Recommended";
it is what Kubernetes, SPIRE and the OIDC providers we meet sign with). An
RSA key meant for PS256 or RS384 must say so in ``alg``. The verifier
(:meth:`VerificationKey.verify`) implements only that one algorithm.

=========  =====================  ==============================================
alg        key                    signature (RFC 7518 §3.3-§3.5, RFC 8037 §3.1)
=========  =====================  ==============================================
RS256/384  RSA, n >= 2048 bits    RSASSA-PKCS1-v1_5, SHA-256/384/512
/512
PS256/384  RSA, n >= 2048 bits    RSASSA-PSS, MGF1 with the same hash, salt as
/512                              long as the hash
ES256      EC P-256               R || S, 32 octets each
ES384      EC P-384               R || S, 48 octets each
ES512      EC P-521               R || S, 66 octets each
EdDSA      OKP Ed25519            64 octets (RFC 8032 §5.1.7)
=========  =====================  ==============================================

Refused, with the :class:`JwkError` reason in brackets:

* Private or symmetric members (``d``, the RSA CRT members, ``k``): a key
  set holding them is a leak, and a symmetric key is no public key
  [JWKS_PRIVATE_MEMBER].
* RFC 7517 §4.2/§4.3: ``use`` other than the caller's verification uses,
  ``key_ops`` that is not a list naming "verify" [JWKS_WRONG_USE].
* RFC 7517 §4.4 ``alg`` other than the one the key's type implies
  [JWKS_ALG_MISMATCH]; key types, curves or algorithms the caller does not
  accept [JWKS_KEY_UNSUPPORTED].
* RFC 7518 §6.2.1.2: "The length of this octet string MUST be the full size
  of a coordinate for the curve specified in the "crv" parameter" - and the
  point must be on the curve; RFC 7518 §2 Base64urlUInt: "The octet sequence
  MUST utilize the minimum number of octets needed to represent the value"
  (RSA ``n`` and ``e``); RFC 7518 §3.3: "A key of size 2048 bits or larger
  MUST be used with these algorithms" (RSA, and PSS likewise)
  [JWKS_INVALID_KEY].

What a caller does with a refused key - refuse the whole set (our own JWKS,
an operator's configuration) or skip it (RFC 7517 §5: "Implementations SHOULD
ignore JWKs within a JWK Set that use "kty" (key type) values that are not
understood by them") - is its policy, not this module's.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from agentauth._jose._encoding import b64url_decode
from agentauth._jose._errors import JwkError

__all__ = [
    "ALGORITHMS",
    "MAX_KID_LENGTH",
    "PRIVATE_MEMBERS",
    "PublicKeyType",
    "VerificationKey",
    "algorithm_set",
    "parse_jwk",
    "select_key",
]

PublicKeyType = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

#: Members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2).
PRIVATE_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
MAX_KID_LENGTH: Final = 256
MIN_RSA_BITS: Final = 2048
#: A bound on verification cost: a configured 64k-bit modulus would make every check slow.
MAX_RSA_BITS: Final = 16384

# Orders of the NIST curves' base points (FIPS 186-4 §D.1.2.3-§D.1.2.5).
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P384_ORDER: Final = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
    "C7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
    16,
)
_P521_ORDER: Final = int(
    "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
    "FFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16,
)

_Verify = Callable[[Any, bytes, bytes], bool]


def _ecdsa(size: int, order: int, digest: hashes.HashAlgorithm) -> _Verify:
    scheme = ec.ECDSA(digest)

    def verify(key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
        # RFC 7518 §3.4: "If the JWS Signature value is not a 64-octet sequence
        # [for ES256], the validation has failed"; r and s outside [1, n-1]
        # are refused before any arithmetic (CVE-2022-21449, "psychic signatures").
        if len(signature) != 2 * size:
            return False
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        if not (0 < r < order and 0 < s < order):
            return False
        try:
            key.verify(encode_dss_signature(r, s), data, scheme)
        except InvalidSignature:
            return False
        return True

    return verify


def _rsa(pad: Callable[[], padding.AsymmetricPadding], digest: hashes.HashAlgorithm) -> _Verify:
    scheme = pad()

    def verify(key: rsa.RSAPublicKey, data: bytes, signature: bytes) -> bool:
        # RFC 8017 §8.2.2 step 1: "If the length of the signature S is not k
        # octets, output "invalid signature""; §8.1.2 the same for PSS.
        if len(signature) != (key.key_size + 7) // 8:
            return False
        try:
            key.verify(signature, data, scheme, digest)
        except InvalidSignature:
            return False
        return True

    return verify


def _pss(digest: hashes.HashAlgorithm) -> _Verify:
    # RFC 7518 §3.5: "The size of the salt value is the same size as the hash
    # function output"; MGF1 uses the same hash.
    return _rsa(lambda: padding.PSS(padding.MGF1(digest), digest.digest_size), digest)


def _eddsa(key: ed25519.Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    if len(signature) != 64:  # RFC 8032 §5.1.7
        return False
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Algorithm:
    kty: str
    crv: str | None  # None for RSA
    coordinate: int  # EC coordinate / OKP key length in octets; 0 for RSA
    verify: _Verify = field(repr=False)
    curve: Callable[[], ec.EllipticCurve] | None = field(default=None, repr=False)


_SHA256, _SHA384, _SHA512 = hashes.SHA256(), hashes.SHA384(), hashes.SHA512()

#: Every algorithm the core can verify, and the key shape it needs.
ALGORITHMS: Final[Mapping[str, _Algorithm]] = {
    "RS256": _Algorithm("RSA", None, 0, _rsa(padding.PKCS1v15, _SHA256)),
    "RS384": _Algorithm("RSA", None, 0, _rsa(padding.PKCS1v15, _SHA384)),
    "RS512": _Algorithm("RSA", None, 0, _rsa(padding.PKCS1v15, _SHA512)),
    "PS256": _Algorithm("RSA", None, 0, _pss(_SHA256)),
    "PS384": _Algorithm("RSA", None, 0, _pss(_SHA384)),
    "PS512": _Algorithm("RSA", None, 0, _pss(_SHA512)),
    "ES256": _Algorithm("EC", "P-256", 32, _ecdsa(32, _P256_ORDER, _SHA256), ec.SECP256R1),
    "ES384": _Algorithm("EC", "P-384", 48, _ecdsa(48, _P384_ORDER, _SHA384), ec.SECP384R1),
    "ES512": _Algorithm("EC", "P-521", 66, _ecdsa(66, _P521_ORDER, _SHA512), ec.SECP521R1),
    "EdDSA": _Algorithm("OKP", "Ed25519", 32, _eddsa),
}
_BY_CURVE: Final = {(a.kty, a.crv): name for name, a in ALGORITHMS.items() if a.crv is not None}
_RSA_DEFAULT: Final = "RS256"


def algorithm_set(
    algorithms: Collection[str], supported: Collection[str] = ALGORITHMS
) -> frozenset[str]:
    """Validate a configured algorithm list: a non-empty subset of ``supported``.

    RFC 8725 §3.1: "Libraries MUST enable the caller to specify a supported
    set of algorithms and MUST NOT use any other algorithms". A bad value is a
    configuration error (TypeError / ValueError), never a token refusal.
    """
    if isinstance(algorithms, str | bytes):
        # "ES256" is a Collection[str] too; a set of letters must not pass as config.
        raise TypeError("algorithms must be a collection of algorithm names, not a string")
    allowed = frozenset(algorithms)
    if not allowed or not allowed <= frozenset(supported):
        raise ValueError(
            f"algorithms must be a non-empty subset of {sorted(supported)}, "
            f"got {sorted(map(str, allowed))}"
        )
    return allowed


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """One public key and the only algorithm it verifies.

    ``material`` holds the decoded public members (EC ``x``/``y``, OKP ``x``,
    RSA ``n``/``e``): two keys with the same ``kid`` and material are the same key.
    """

    kid: str | None
    alg: str
    key: PublicKeyType = field(repr=False, compare=False)
    material: tuple[bytes, ...] = field(repr=False)

    def verify(self, signing_input: bytes, signature: bytes) -> bool:
        """True only if ``signature`` is this key's ``alg`` signature over ``signing_input``."""
        return ALGORITHMS[self.alg].verify(self.key, signing_input, signature)


def _fail(reason: str, detail: str) -> JwkError:
    return JwkError(reason, detail)


def _octets(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    try:
        raw = b64url_decode(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if not raw:
        raise _fail("JWKS_INVALID_KEY", f"{name} is not a base64url value")
    return raw


def _coordinate(jwk: Mapping[str, Any], name: str, size: int) -> bytes:
    raw = _octets(jwk, name)
    if len(raw) != size:
        raise _fail("JWKS_INVALID_KEY", f"{name} is not a {size}-octet coordinate")
    return raw


def _uint(jwk: Mapping[str, Any], name: str) -> bytes:
    raw = _octets(jwk, name)
    if raw[0] == 0:
        raise _fail("JWKS_INVALID_KEY", f"{name} is not in the minimum number of octets")
    return raw


def _bind(jwk: Mapping[str, Any], kty: str, allowed: Collection[str]) -> str:
    """The one algorithm of this key (RFC 8725 §3.1), or JwkError."""
    declared = jwk.get("alg")
    if kty == "RSA":
        alg = _RSA_DEFAULT if declared is None else declared
        spec = ALGORITHMS.get(alg) if isinstance(alg, str) else None
        if spec is None or spec.kty != "RSA":
            raise _fail("JWKS_ALG_MISMATCH", "alg is not an RSA signature algorithm")
    else:
        crv = jwk.get("crv")
        implied = _BY_CURVE.get((kty, crv)) if isinstance(crv, str) else None
        if implied is None or implied not in allowed:
            raise _fail("JWKS_KEY_UNSUPPORTED", "unsupported curve for kty")
        if declared is not None and declared != implied:
            raise _fail("JWKS_ALG_MISMATCH", "alg does not match kty/crv")
        alg = implied
    if alg not in allowed:
        raise _fail("JWKS_KEY_UNSUPPORTED", "the key's algorithm is not accepted")
    return alg


def parse_jwk(
    jwk: object,
    *,
    algorithms: Collection[str] = ALGORITHMS,
    uses: Collection[str] = ("sig",),
    require_kid: bool = True,
) -> VerificationKey:
    """Validate one public JWK (RFC 7517 §4) and build its key, bound to one algorithm.

    ``algorithms`` are the ones the caller accepts: a key for any other is
    JWKS_KEY_UNSUPPORTED. ``uses`` are the acceptable ``use`` values. Without
    ``require_kid`` a key may lack ``kid`` (a one-key set selected without
    one); a present ``kid`` is always a string of at most 256 characters.
    Raises :class:`JwkError`.
    """
    if not isinstance(jwk, Mapping) or not all(isinstance(name, str) for name in jwk):
        raise _fail("JWKS_MALFORMED", "a key is not a JSON object")
    if not PRIVATE_MEMBERS.isdisjoint(jwk):
        raise _fail("JWKS_PRIVATE_MEMBER", "a key carries private or symmetric key material")
    kid = jwk.get("kid")
    if kid is None and not require_kid:
        pass
    elif not isinstance(kid, str) or len(kid) > MAX_KID_LENGTH or (require_kid and not kid):
        raise _fail("JWKS_MALFORMED", "kid missing or not a short string")
    kty = jwk.get("kty")
    if not isinstance(kty, str) or not any(ALGORITHMS[a].kty == kty for a in algorithms):
        raise _fail("JWKS_KEY_UNSUPPORTED", "unsupported kty")
    if "use" in jwk and jwk["use"] not in uses:
        raise _fail("JWKS_WRONG_USE", "use is not signature verification")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise _fail("JWKS_WRONG_USE", "key_ops does not include verify")
    alg = _bind(jwk, kty, algorithms)
    spec = ALGORITHMS[alg]
    key: PublicKeyType
    try:
        if kty == "EC":
            assert spec.curve is not None
            x = _coordinate(jwk, "x", spec.coordinate)
            y = _coordinate(jwk, "y", spec.coordinate)
            # Raises ValueError for a point that is not on the curve.
            key = ec.EllipticCurvePublicKey.from_encoded_point(spec.curve(), b"\x04" + x + y)
            material: tuple[bytes, ...] = (x, y)
        elif kty == "OKP":
            x = _coordinate(jwk, "x", spec.coordinate)
            key = ed25519.Ed25519PublicKey.from_public_bytes(x)
            material = (x,)
        else:
            n, e = _uint(jwk, "n"), _uint(jwk, "e")
            modulus = int.from_bytes(n, "big")
            if not MIN_RSA_BITS <= modulus.bit_length() <= MAX_RSA_BITS:
                raise _fail("JWKS_INVALID_KEY", "RSA modulus under 2048 or over 16384 bits")
            # Raises ValueError for an even modulus or an exponent outside [3, n).
            key = rsa.RSAPublicNumbers(int.from_bytes(e, "big"), modulus).public_key()
            material = (n, e)
    except ValueError as exc:
        if isinstance(exc, JwkError):
            raise
        raise _fail("JWKS_INVALID_KEY", f"not a valid {kty} public key") from None
    return VerificationKey(kid if isinstance(kid, str) else None, alg, key, material)


def select_key(
    keys: Mapping[str, VerificationKey], kid: str, *, allow_single: bool = False
) -> VerificationKey | None:
    """The key ``kid`` names - by ``kid`` only (RFC 8725 §3.10: never ``jku``,
    ``x5u``, ``x5c`` or an embedded ``jwk``).

    A token without a ``kid`` (or with an empty one) may use the only key of a
    one-key set when the caller allows it (``allow_single``): RFC 7515
    §4.1.4 leaves ``kid`` optional, and static keys configured for one
    workload issuer or one agent often come without one.
    """
    if kid:
        return keys.get(kid)
    if allow_single and len(keys) == 1:
        return next(iter(keys.values()))
    return None
