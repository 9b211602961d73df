"""Key-set validation, the signature primitive and the strict encodings, case by case."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from control_plane.tokens.encoding import (
    DuplicateKeyError,
    b64url_decode,
    b64url_encode,
    parse_json,
)
from control_plane.tokens.jwk import MAX_KEYS, public_jwk_from_key, thumbprint
from control_plane.tokens.jws import JwksInvalid, load_jwks, verify_signature

EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()
EC_JWK = {**public_jwk_from_key(EC_KEY.public_key()), "kid": "ec", "alg": "ES256", "use": "sig"}
ED_JWK = {**public_jwk_from_key(ED_KEY.public_key()), "kid": "ed", "alg": "EdDSA", "use": "sig"}
MESSAGE = b"header.payload"


def es256(message: bytes = MESSAGE) -> bytes:
    r, s = decode_dss_signature(EC_KEY.sign(message, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def reason(obj: Any) -> str:
    with pytest.raises(JwksInvalid) as excinfo:
        load_jwks(obj)
    return excinfo.value.reason


def test_a_good_set_loads_and_round_trips() -> None:
    key_set = load_jwks({"keys": [EC_JWK, ED_JWK]})
    assert key_set.to_dict() == {"keys": [EC_JWK, ED_JWK]}
    ec_key, ed_key = key_set.get("ec"), key_set.get("ed")
    assert ec_key is not None and ed_key is not None
    assert (ec_key.alg, ed_key.alg) == ("ES256", "EdDSA")
    assert key_set.get("missing") is None
    # alg/use are optional; key_ops ["verify"] is fine; unknown members are ignored.
    bare = {k: v for k, v in EC_JWK.items() if k not in ("alg", "use")}
    loaded = load_jwks({"keys": [{**bare, "key_ops": ["verify"], "x5t": "ignored"}]})
    assert loaded.keys[0].alg == "ES256"
    assert load_jwks(json.dumps({"keys": [EC_JWK]}).encode()).get("ec") is not None


@pytest.mark.parametrize(
    ("keyset", "expected"),
    [
        ({"keys": []}, "JWKS_MALFORMED"),
        ({"keys": "nope"}, "JWKS_MALFORMED"),
        ([EC_JWK], "JWKS_MALFORMED"),
        ({"keys": [EC_JWK, EC_JWK]}, "JWKS_DUPLICATE_KID"),
        ({"keys": [{**EC_JWK, "kid": str(i)} for i in range(MAX_KEYS + 1)]}, "JWKS_MALFORMED"),
        ({"keys": ["not-an-object"]}, "JWKS_MALFORMED"),
        ({"keys": [{k: v for k, v in EC_JWK.items() if k != "kid"}]}, "JWKS_MALFORMED"),
        ({"keys": [{**EC_JWK, "kid": ""}]}, "JWKS_MALFORMED"),
        ({"keys": [{**EC_JWK, "kid": 5}]}, "JWKS_MALFORMED"),
        ({"keys": [{**EC_JWK, "kid": "k" * 257}]}, "JWKS_MALFORMED"),
        ({"keys": [EC_JWK, {**ED_JWK, "kid": "ec"}]}, "JWKS_DUPLICATE_KID"),
        ({"keys": [{**EC_JWK, "d": "AAAA"}]}, "JWKS_PRIVATE_MEMBER"),
        ({"keys": [{**ED_JWK, "d": "AAAA"}]}, "JWKS_PRIVATE_MEMBER"),
        ({"keys": [{"kty": "oct", "k": "AAAA", "kid": "h"}]}, "JWKS_PRIVATE_MEMBER"),
        ({"keys": [{**EC_JWK, "kty": "RSA"}]}, "JWKS_KEY_UNSUPPORTED"),
        ({"keys": [{**EC_JWK, "kty": None}]}, "JWKS_KEY_UNSUPPORTED"),
        ({"keys": [{**EC_JWK, "crv": "P-384"}]}, "JWKS_KEY_UNSUPPORTED"),
        ({"keys": [{**EC_JWK, "crv": "secp256k1"}]}, "JWKS_KEY_UNSUPPORTED"),
        ({"keys": [{**ED_JWK, "crv": "X25519"}]}, "JWKS_KEY_UNSUPPORTED"),
        ({"keys": [{**ED_JWK, "crv": "Ed448"}]}, "JWKS_KEY_UNSUPPORTED"),
        ({"keys": [{**EC_JWK, "use": "enc"}]}, "JWKS_WRONG_USE"),
        ({"keys": [{**EC_JWK, "key_ops": ["sign"]}]}, "JWKS_WRONG_USE"),
        ({"keys": [{**EC_JWK, "key_ops": ["verify", "encrypt"]}]}, "JWKS_WRONG_USE"),
        ({"keys": [{**EC_JWK, "alg": "EdDSA"}]}, "JWKS_ALG_MISMATCH"),
        ({"keys": [{**ED_JWK, "alg": "ES256"}]}, "JWKS_ALG_MISMATCH"),
        ({"keys": [{**ED_JWK, "alg": "Ed25519"}]}, "JWKS_ALG_MISMATCH"),
        ({"keys": [{**EC_JWK, "alg": "HS256"}]}, "JWKS_ALG_MISMATCH"),
        ({"keys": [{**EC_JWK, "x": EC_JWK["x"][:-2]}]}, "JWKS_INVALID_KEY"),
        (
            {"keys": [{**EC_JWK, "x": b64url_encode(b"\x00" + b64url_decode(EC_JWK["x"]))}]},
            "JWKS_INVALID_KEY",
        ),
        ({"keys": [{**EC_JWK, "x": EC_JWK["x"] + "="}]}, "JWKS_INVALID_KEY"),
        ({"keys": [{**EC_JWK, "y": None}]}, "JWKS_INVALID_KEY"),
        ({"keys": [{**EC_JWK, "y": EC_JWK["x"]}]}, "JWKS_INVALID_KEY"),
        ({"keys": [{**ED_JWK, "x": b64url_encode(bytes(31))}]}, "JWKS_INVALID_KEY"),
    ],
)
def test_bad_sets_are_refused_with_a_reason(keyset: Any, expected: str) -> None:
    assert reason(keyset) == expected


def test_json_text_is_parsed_strictly() -> None:
    text = '{"keys":[' + json.dumps(EC_JWK) + '],"keys":[]}'
    assert reason(text) == "JWKS_MALFORMED"
    assert reason(b"\xff") == "JWKS_MALFORMED"
    assert reason("[]") == "JWKS_MALFORMED"


def test_verify_signature_checks_alg_key_and_signature() -> None:
    signature = es256()
    assert verify_signature("ES256", EC_JWK, MESSAGE, signature)
    assert not verify_signature("ES256", EC_JWK, MESSAGE + b"!", signature)
    assert not verify_signature("EdDSA", EC_JWK, MESSAGE, signature)
    assert not verify_signature("ES384", EC_JWK, MESSAGE, signature)
    assert not verify_signature("ES256", {**EC_JWK, "alg": "EdDSA"}, MESSAGE, signature)
    assert not verify_signature("ES256", {**EC_JWK, "d": "AAAA"}, MESSAGE, signature)
    ed_signature = ED_KEY.sign(MESSAGE)
    assert verify_signature("EdDSA", ED_JWK, MESSAGE, ed_signature)
    assert not verify_signature("EdDSA", ED_JWK, MESSAGE, ed_signature[:-1])
    assert not verify_signature("ES256", ED_JWK, MESSAGE, ed_signature)


@given(st.binary(max_size=80))
def test_verify_signature_never_raises_on_junk(junk: bytes) -> None:
    assert not verify_signature("ES256", EC_JWK, MESSAGE, junk)
    assert not verify_signature("EdDSA", ED_JWK, MESSAGE, junk)


def test_thumbprint_matches_rfc_8037_appendix_a_3() -> None:
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert thumbprint(jwk) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    assert thumbprint({**EC_JWK, "kid": "other", "use": "enc"}) == thumbprint(EC_JWK)


@given(st.binary(max_size=64))
def test_b64url_round_trips_and_has_one_encoding(data: bytes) -> None:
    encoded = b64url_encode(data)
    assert b64url_decode(encoded) == data
    assert "=" not in encoded
    for variant in (encoded + "=", " " + encoded, encoded + "\n"):
        with pytest.raises(ValueError):
            b64url_decode(variant)


@pytest.mark.parametrize("bad", ["A", "AAAAA", "ab+c", "ab/c", "ab=c", "QR", "QUJ", "\u0661\u0662"])
def test_b64url_refuses_non_canonical_input(bad: str) -> None:
    with pytest.raises(ValueError):
        b64url_decode(bad)


def test_parse_json_refuses_duplicates_constants_and_bad_utf8() -> None:
    with pytest.raises(DuplicateKeyError):
        parse_json(b'{"a":{"b":1,"b":2}}')
    for bad in (b'{"a":NaN}', b'{"a":Infinity}', b"\xff", b'{"a":1', b""):
        with pytest.raises(ValueError):
            parse_json(bad)
    assert parse_json(b'{"a":[1,2.5,"\\u00e9"]}') == {"a": [1, 2.5, "\u00e9"]}
