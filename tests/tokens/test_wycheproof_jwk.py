"""Wycheproof JWK-set vectors through :func:`control_plane.tokens.jws.load_jwks`.

Source: C2SP/wycheproof ``testvectors_v1/json_web_key_test.json``
(byte-for-byte under ``tests/vectors/wycheproof/``). Each vector gives a key set (we use
``public`` when the group has one, else ``private``) and a token. Every one of
the 26 vectors runs, one test each.

Applicable - the key set concerns EC P-256, OKP or set structure, and our
verdict must equal Wycheproof's (all of these are "invalid") with a specific
reason, and the token must not verify against the set either:

=====  ===============================================  =====================
tc     case                                             our reason
=====  ===============================================  =====================
1      HMAC key mixed into an ES256 set (MixedKeySet)   JWKS_PRIVATE_MEMBER
4      two keys share a kid (DuplicateKid)              JWKS_DUPLICATE_KID
19     alg ES521 on a P-256 key                         JWKS_ALG_MISMATCH
20     alg ES224 on a P-256 key                         JWKS_ALG_MISMATCH
21     P-256 key with use=enc                           JWKS_WRONG_USE
22     P-256 point not on the curve                     JWKS_INVALID_KEY
23     P-256 coordinates labelled crv P-384             JWKS_KEY_UNSUPPORTED
24     EC members labelled kty RSA                      JWKS_KEY_UNSUPPORTED
25-26  AES (A256GCM / A256KW) key marked use=sig        JWKS_PRIVATE_MEMBER
=====  ===============================================  =====================

Not applicable - they test HMAC key length and RSA key quality (tc2-3, 5-18:
short/empty/long HMAC keys, 1024-bit, ROCA and e=1 RSA keys, an RSA key for
encryption). We never verify with HMAC or RSA (algorithms are a subset of
{ES256, EdDSA}), so those rules cannot apply. They still run: whatever
Wycheproof's verdict, our loader must refuse the set - a symmetric key (``k``)
is a secret that has no place in a public set (JWKS_PRIVATE_MEMBER), and RSA
is not a key type we hold (JWKS_KEY_UNSUPPORTED). Wycheproof's "valid" cases
among them (tc2, 5, 13-15) are therefore rejected on purpose.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from control_plane.tokens.jws import JwksInvalid, TokenInvalid, load_jwks, verify_compact
from tests.wycheproof import load_vectors

VECTORS_FILE = "json_web_key_test.json"


DOC: dict[str, Any] = load_vectors(VECTORS_FILE)

APPLICABLE = {
    1: "JWKS_PRIVATE_MEMBER",
    4: "JWKS_DUPLICATE_KID",
    19: "JWKS_ALG_MISMATCH",
    20: "JWKS_ALG_MISMATCH",
    21: "JWKS_WRONG_USE",
    22: "JWKS_INVALID_KEY",
    23: "JWKS_KEY_UNSUPPORTED",
    24: "JWKS_KEY_UNSUPPORTED",
    25: "JWKS_PRIVATE_MEMBER",
    26: "JWKS_PRIVATE_MEMBER",
}
HMAC_ONLY = "JWKS_PRIVATE_MEMBER"  # symmetric keys: never in a verification set
RSA_ONLY = "JWKS_KEY_UNSUPPORTED"  # RSA: not a key type we verify with
NOT_APPLICABLE = {
    2: HMAC_ONLY,
    3: HMAC_ONLY,
    5: RSA_ONLY,
    6: RSA_ONLY,
    7: RSA_ONLY,
    8: RSA_ONLY,
    9: RSA_ONLY,
    10: HMAC_ONLY,
    11: HMAC_ONLY,
    12: HMAC_ONLY,
    13: HMAC_ONLY,
    14: HMAC_ONLY,
    15: HMAC_ONLY,
    16: HMAC_ONLY,
    17: HMAC_ONLY,
    18: HMAC_ONLY,
}

CASES = [
    pytest.param(group.get("public") or group["private"], test, id=f"tc{test['tcId']}")
    for group in DOC["testGroups"]
    for test in group["tests"]
]


def test_every_vector_is_classified() -> None:
    ids = [test["tcId"] for group in DOC["testGroups"] for test in group["tests"]]
    assert len(ids) == DOC["numberOfTests"] == 26
    assert sorted(ids) == sorted([*APPLICABLE, *NOT_APPLICABLE])
    assert not set(APPLICABLE) & set(NOT_APPLICABLE)


@pytest.mark.parametrize(("keyset", "vector"), CASES)
def test_vector(keyset: dict[str, Any], vector: dict[str, Any]) -> None:
    tc = vector["tcId"]
    if tc in APPLICABLE:
        assert vector["result"] == "invalid"
        expected = APPLICABLE[tc]
    else:
        expected = NOT_APPLICABLE[tc]
    with pytest.raises(JwksInvalid) as excinfo:
        load_jwks(keyset)
    assert excinfo.value.reason == expected
    # The same set given as JSON text is refused the same way.
    with pytest.raises(JwksInvalid):
        load_jwks(json.dumps(keyset))
    with pytest.raises(TokenInvalid):
        verify_compact(vector["jws"], keyset, algorithms=["ES256", "EdDSA"])
