"""Key sets stored by trust policies and identity providers, compiled into an org's snapshot.

The JOSE core is stricter than PyJWT was (RSA under 2048 bits, non-minimal
integers, ``key_ops`` without "verify" are refused). A set accepted before that
and still in the database must not break every exchange of its org: it
compiles to no keys, so its own tokens are refused and nothing else changes.
"""

from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from control_plane.services import identity


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _uint(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _rsa_jwk(bits: int) -> dict[str, str]:
    numbers = rsa.generate_private_key(65537, bits).public_key().public_numbers()
    return {"kty": "RSA", "kid": f"rsa-{bits}", "n": _uint(numbers.n), "e": _uint(numbers.e)}


def test_rfc7518_3_3_a_stored_1024_bit_rsa_set_compiles_to_no_keys() -> None:
    weak = json.dumps({"keys": [_rsa_jwk(1024)]})
    assert identity._static_keys(weak, "o" * 32, "p" * 32) == {}


def test_an_acceptable_stored_set_compiles_to_its_keys() -> None:
    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    ec_jwk = {
        "kty": "EC",
        "crv": "P-256",
        "kid": "ec",
        "x": _b64(point.x.to_bytes(32, "big")),
        "y": _b64(point.y.to_bytes(32, "big")),
    }
    keys = identity._static_keys(json.dumps({"keys": [_rsa_jwk(2048), ec_jwk]}), "o", "p")
    assert {kid: key.alg for kid, key in keys.items()} == {"rsa-2048": "RS256", "ec": "ES256"}
    assert identity._static_keys("", "o", "p") == {}
