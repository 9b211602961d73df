"""Wycheproof ECDSA P-256/SHA-256 vectors in IEEE P1363 form (the JWS ES256 encoding).

Source: C2SP/wycheproof ``testvectors_v1/ecdsa_secp256r1_sha256_p1363_test.json``
(byte-for-byte under ``tests/vectors/wycheproof/``). One test per vector, run through
:func:`control_plane.tokens.jws.verify_signature` - our code path, not just the
library: the 64-byte length rule, the r/s range checks (r = 0, s = 0, r >= n:
CVE-2022-21449) and the P1363 -> DER conversion. Valid vectors must verify,
invalid ones must return False, and nothing may raise.

The public key is the group's ``publicKeyJwk`` when present; nine groups (the
"r + n" arithmetic edge cases) have none, so their JWK is built from the
uncompressed point.
"""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.tokens.encoding import b64url_encode
from control_plane.tokens.jws import verify_signature
from tests.wycheproof import load_vectors

VECTORS_FILE = "ecdsa_secp256r1_sha256_p1363_test.json"


DOC: dict[str, Any] = load_vectors(VECTORS_FILE)


def _jwk(group: dict[str, Any]) -> dict[str, str]:
    if "publicKeyJwk" in group:
        return dict(group["publicKeyJwk"])
    point = bytes.fromhex(group["publicKey"]["uncompressed"])
    assert point[0] == 4 and len(point) == 65
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url_encode(point[1:33]),
        "y": b64url_encode(point[33:]),
    }


CASES = [
    pytest.param(_jwk(group), test, id=f"tc{test['tcId']}")
    for group in DOC["testGroups"]
    for test in group["tests"]
]


def test_every_vector_is_collected() -> None:
    assert len(CASES) == DOC["numberOfTests"] == 262


@pytest.mark.parametrize(("jwk", "vector"), CASES)
def test_vector(jwk: dict[str, str], vector: dict[str, Any]) -> None:
    assert vector["result"] in ("valid", "invalid")
    ok = verify_signature("ES256", jwk, bytes.fromhex(vector["msg"]), bytes.fromhex(vector["sig"]))
    assert ok is (vector["result"] == "valid"), vector["comment"]
