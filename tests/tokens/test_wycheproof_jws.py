"""Wycheproof JWS vectors through :func:`control_plane.tokens.jws.verify_compact`.

Source: C2SP/wycheproof ``testvectors_v1/json_web_signature_test.json``
(byte-for-byte under ``tests/vectors/wycheproof/``).

Applicable groups are those whose key is one our verifier can hold: EC P-256
(ES256) or OKP Ed25519 (EdDSA) - the ``es256``, ``SpecialCaseEs256`` and the
two ``ec_key_for_encryption`` groups (the file has no EdDSA group). Each of
their vectors is one test, with ``algorithms=[that alg]`` and a JWKS holding
the group's public key: valid -> verifies and returns the payload; invalid
(alg none, HS256 keyed with our EC key bytes, embedded attacker ``jwk``, r/s
edge values, DER or padded signatures, missing parts, a key marked for
encryption) -> :class:`TokenInvalid`. JSON-serialization cases would be
must-reject too: we accept the compact form only.

Not applicable: the HS256/384/512, RS*, PS* and ES512 (P-521) groups. Our
algorithms are configured as a subset of {ES256, EdDSA} and never include
them (RFC 8725 §3.1; HMAC in particular would turn our public key set into
shared secrets), so their "valid" vectors must *not* verify for us. One test
checks that every one of those tokens is rejected, both against our own key
set and against the group's own keys (which :func:`load_jwks` refuses).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from control_plane.tokens.encoding import b64url_decode
from control_plane.tokens.jws import ALLOWED_ALGORITHMS, TokenInvalid, verify_compact
from tests.wycheproof import load_vectors

VECTORS_FILE = "json_web_signature_test.json"


DOC: dict[str, Any] = load_vectors(VECTORS_FILE)

_SHAPES: dict[tuple[object, object], str] = {("EC", "P-256"): "ES256", ("OKP", "Ed25519"): "EdDSA"}


def _key(group: dict[str, Any]) -> dict[str, Any]:
    key = group.get("public") or group["private"]
    assert isinstance(key, dict)
    return key


def _alg(group: dict[str, Any]) -> str | None:
    key = _key(group)
    return _SHAPES.get((key.get("kty"), key.get("crv")))


def _token(vector: dict[str, Any]) -> str:
    jws = vector["jws"]
    return jws if isinstance(jws, str) else json.dumps(jws)


APPLICABLE = [
    pytest.param(alg, {"keys": [group["public"]]}, test, id=f"tc{test['tcId']}")
    for group in DOC["testGroups"]
    if (alg := _alg(group)) is not None
    for test in group["tests"]
]
NOT_APPLICABLE = [
    (group, test) for group in DOC["testGroups"] if _alg(group) is None for test in group["tests"]
]
OUR_KEYS = {"keys": [next(g["public"] for g in DOC["testGroups"] if g["comment"] == "es256")]}


def test_every_vector_is_accounted_for() -> None:
    assert len(APPLICABLE) + len(NOT_APPLICABLE) == DOC["numberOfTests"] == 401
    assert len(APPLICABLE) == 41


@pytest.mark.parametrize(("alg", "jwks", "vector"), APPLICABLE)
def test_vector(alg: str, jwks: dict[str, Any], vector: dict[str, Any]) -> None:
    assert vector["result"] in ("valid", "invalid")
    token = _token(vector)
    if vector["result"] == "valid":
        header, payload = verify_compact(token, jwks, algorithms=[alg])
        assert header["alg"] == alg
        assert payload == b64url_decode(token.split(".")[1])
    else:
        with pytest.raises(TokenInvalid):
            verify_compact(token, jwks, algorithms=[alg])


def test_tokens_of_algorithms_we_never_accept_are_all_rejected() -> None:
    assert len(NOT_APPLICABLE) == 360
    ours = sorted(ALLOWED_ALGORITHMS)
    for group, vector in NOT_APPLICABLE:
        token = _token(vector)
        for jwks in (OUR_KEYS, {"keys": [_key(group)]}):
            with pytest.raises(TokenInvalid):
                verify_compact(token, jwks, algorithms=ours)
