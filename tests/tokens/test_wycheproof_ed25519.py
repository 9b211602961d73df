"""Wycheproof Ed25519 vectors through our EdDSA verifier, one test per vector.

Source: C2SP/wycheproof ``testvectors_v1/ed25519_test.json`` (byte-for-byte
under ``tests/vectors/wycheproof/``). Each group's ``publicKeyJwk`` (RFC 8037 OKP key) goes
through our JWK parser and :func:`control_plane.tokens.jws.verify_signature`:
valid vectors must verify; invalid ones (truncated or extended signatures,
s >= L malleability, bad R) must return False without raising.
"""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.tokens.jws import verify_signature
from tests.wycheproof import load_vectors

VECTORS_FILE = "ed25519_test.json"


DOC: dict[str, Any] = load_vectors(VECTORS_FILE)

CASES = [
    pytest.param(dict(group["publicKeyJwk"]), test, id=f"tc{test['tcId']}")
    for group in DOC["testGroups"]
    for test in group["tests"]
]


def test_every_vector_is_collected() -> None:
    assert len(CASES) == DOC["numberOfTests"] == 151


@pytest.mark.parametrize(("jwk", "vector"), CASES)
def test_vector(jwk: dict[str, str], vector: dict[str, Any]) -> None:
    assert vector["result"] in ("valid", "invalid")
    ok = verify_signature("EdDSA", jwk, bytes.fromhex(vector["msg"]), bytes.fromhex(vector["sig"]))
    assert ok is (vector["result"] == "valid"), vector["comment"]
