"""Security regressions for TokenValidator, one per attack class, named after what they guard.

perf_security.md §B2.1 J1-J14 (J15/J16 concern HS* keys and JWE, which the
validator refuses outright). Each attack token is a literal or is built in the
test from the fixed throwaway keys in ``conftest.py``, with everything but the
attack valid, so that the refusal can only be due to the attack; where
useful a control token without the attack is shown to pass.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import string
from typing import TYPE_CHECKING, Any

import pytest
from agentauth._validator import TokenValidator
from agentauth._validator_errors import TokenReason
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sdk.conftest import (
    ATTACKER_ES256,
    AUDIENCE,
    DROP,
    ISSUER,
    JWKS_URL,
    NEXT_ES256,
    NOW,
    ORG,
    OUR_ED25519,
    OUR_ES256,
    b64url,
    claims,
    compact_json,
    header,
    refused,
    sign,
    token,
)

if TYPE_CHECKING:
    from tests.sdk.conftest import FakeClock, FetchSpy, LoopbackServer, MakeValidator

R = TokenReason
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED25519_L = 2**252 + 27742317777372353535851937790883648493


def _with_signature(bearer: str, signature: bytes) -> str:
    head, payload, _ = bearer.split(".")
    return f"{head}.{payload}.{b64url(signature)}"


# --------------------------------------------------------------------------
# J1 - RFC 8725 §2.1 / §3.1, CVE-2015-2951: "alg": "none" in every spelling.
# Header {"alg": <spelling>, "typ": "at+jwt", "kid": <our kid>}, payload
# {"iss", "aud", "sub": ".../users/admin", "org_id", "exp"}, no signature.
# --------------------------------------------------------------------------
ALG_NONE_TOKENS = {
    "none": "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0Iiwia2lkIjoiT1J0QUhLbS1kRWNGQ1l5VV9YXzFkSVVoRXhQTmZFcmdoVXlfZXozZnhtWSJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZSIsInN1YiI6Im9yZ3MvMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYvdXNlcnMvYWRtaW4iLCJvcmdfaWQiOiIwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZiIsImV4cCI6MTkwMDAwMDMwMH0.",
    "None": "eyJhbGciOiJOb25lIiwidHlwIjoiYXQrand0Iiwia2lkIjoiT1J0QUhLbS1kRWNGQ1l5VV9YXzFkSVVoRXhQTmZFcmdoVXlfZXozZnhtWSJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZSIsInN1YiI6Im9yZ3MvMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYvdXNlcnMvYWRtaW4iLCJvcmdfaWQiOiIwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZiIsImV4cCI6MTkwMDAwMDMwMH0.",
    "NONE": "eyJhbGciOiJOT05FIiwidHlwIjoiYXQrand0Iiwia2lkIjoiT1J0QUhLbS1kRWNGQ1l5VV9YXzFkSVVoRXhQTmZFcmdoVXlfZXozZnhtWSJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZSIsInN1YiI6Im9yZ3MvMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYvdXNlcnMvYWRtaW4iLCJvcmdfaWQiOiIwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZiIsImV4cCI6MTkwMDAwMDMwMH0.",
    "nOnE": "eyJhbGciOiJuT25FIiwidHlwIjoiYXQrand0Iiwia2lkIjoiT1J0QUhLbS1kRWNGQ1l5VV9YXzFkSVVoRXhQTmZFcmdoVXlfZXozZnhtWSJ9.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZSIsInN1YiI6Im9yZ3MvMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYvdXNlcnMvYWRtaW4iLCJvcmdfaWQiOiIwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZiIsImV4cCI6MTkwMDAwMDMwMH0.",
}


@pytest.mark.parametrize("spelling", sorted(ALG_NONE_TOKENS))
def test_rfc8725_3_1_alg_none_literals_are_what_they_claim(spelling: str) -> None:
    head = json.loads(b64url_to_bytes(ALG_NONE_TOKENS[spelling].split(".")[0]))
    assert head == {"alg": spelling, "typ": "at+jwt", "kid": OUR_ES256.kid}


def b64url_to_bytes(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@pytest.mark.parametrize("spelling", sorted(ALG_NONE_TOKENS))
def test_rfc8725_3_1_alg_none_with_any_signature_is_refused(
    make_validator: MakeValidator, fetch: FetchSpy, spelling: str
) -> None:
    # Both configured algorithms: none is never one of them.
    validator = make_validator(algorithms=("ES256", "EdDSA"))
    # An empty signature is not even a well-formed segment for us.
    refused(validator, ALG_NONE_TOKENS[spelling], R.TOKEN_MALFORMED)
    # With a signature (here: a valid ES256 one over other bytes), the alg decides.
    stolen = token().split(".")[2]
    refused(validator, ALG_NONE_TOKENS[spelling] + stolen, R.TOKEN_ALGORITHM_NOT_ALLOWED)
    # Refused before any key was looked up.
    assert fetch.calls == []


@pytest.mark.parametrize("algorithms", [["none"], ["HS256"], ["ES256", "none"], ["RS256"]])
def test_rfc8725_3_1_unsafe_algorithms_are_refused_at_configuration(
    algorithms: list[str],
) -> None:
    with pytest.raises(ValueError, match="subset"):
        TokenValidator(ISSUER, AUDIENCE, algorithms=algorithms)


# --------------------------------------------------------------------------
# J2 - RFC 8725 §3.1 "each key used with exactly one algorithm"; CVE-2015-9235,
# PyJWT CVE-2017-11424 / CVE-2022-29217, python-jose CVE-2024-33663: HS256
# MAC'd with our *public* key in every encoding a confused verifier might use.
# --------------------------------------------------------------------------
def _public_key_encodings() -> dict[str, bytes]:
    public = OUR_ES256.private.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    point = public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    public_jwk = {k: v for k, v in OUR_ES256.jwk.items()}
    return {
        "pem": public.public_bytes(serialization.Encoding.PEM, spki),
        "der": public.public_bytes(serialization.Encoding.DER, spki),
        "jwk-json": json.dumps(public_jwk).encode(),
        "jwk-json-compact": compact_json(public_jwk),
        "openssh": public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "raw-x||y": point[1:],
        "uncompressed-point": point,
    }


@pytest.mark.parametrize("encoding", sorted(_public_key_encodings()))
def test_cve_2015_9235_hs256_macd_with_our_public_key_is_refused(
    make_validator: MakeValidator, fetch: FetchSpy, encoding: str
) -> None:
    secret = _public_key_encodings()[encoding]
    head = b64url(compact_json(header(alg="HS256")))
    payload = b64url(compact_json(claims()))
    mac = hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    attack = f"{head}.{payload}.{b64url(mac)}"
    for algorithms in (("ES256",), ("ES256", "EdDSA")):
        refused(make_validator(algorithms=algorithms), attack, R.TOKEN_ALGORITHM_NOT_ALLOWED)
    assert fetch.calls == []


# --------------------------------------------------------------------------
# J3 - PyJWT CVE-2026-48523 / GHSA-jq35-7prp-9v3f, jsonwebtoken CVE-2022-23539:
# the header's alg must be the one algorithm bound to the selected key.
# --------------------------------------------------------------------------
@pytest.mark.parametrize("alg", ["ES384", "ES512", "PS256", "RS256", "ES256K", "HS256", "EdDSA"])
def test_cve_2026_48523_header_alg_other_than_configured_is_refused(
    validator: TokenValidator, alg: str
) -> None:
    attack = sign(header(alg=alg), claims(), OUR_ES256)
    refused(validator, attack, R.TOKEN_ALGORITHM_NOT_ALLOWED)


def test_cve_2026_48523_allowed_alg_bound_to_another_key_is_refused(
    both_algorithms: TokenValidator,
) -> None:
    # Both algorithms allowed, but each kid is bound to exactly one of them.
    refused(
        both_algorithms,
        sign(header(OUR_ES256, alg="EdDSA"), claims(), OUR_ED25519),
        R.TOKEN_ALGORITHM_NOT_ALLOWED,
    )
    refused(
        both_algorithms,
        sign(header(OUR_ED25519, alg="ES256"), claims(), OUR_ES256),
        R.TOKEN_ALGORITHM_NOT_ALLOWED,
    )
    both_algorithms.validate(token(OUR_ED25519))
    both_algorithms.validate(token(OUR_ES256))


def test_cve_2026_48523_jwk_declaring_another_alg_is_not_used(
    make_validator: MakeValidator, fetch: FetchSpy
) -> None:
    fetch.body = compact_json({"keys": [{**OUR_ES256.jwk, "alg": "ES384"}, NEXT_ES256.jwk]})
    validator = make_validator()
    refused(validator, token(), R.TOKEN_KEY_UNKNOWN)
    validator.validate(token(NEXT_ES256))


# --------------------------------------------------------------------------
# J4 - RFC 8725 §2.9 / §3.10: kid is an untrusted lookup string, never a path
# or query; unknown kids cost at most the refetch budget.
# --------------------------------------------------------------------------
KID_INJECTIONS = {
    "path-traversal": "../../../../dev/null",
    "sql": "' UNION SELECT 'x'--",
    "nul": "k\x00id",
    "unicode": "k\u00efd\u202e\ufeff",
    "ten-kb": "A" * 10 * 1024,
    "empty": "",
}


@pytest.mark.parametrize("name", sorted(KID_INJECTIONS))
def test_rfc8725_3_10_kid_injection_is_an_unknown_key(
    make_validator: MakeValidator, fetch: FetchSpy, clock: FakeClock, name: str
) -> None:
    validator = make_validator(max_token_bytes=64 * 1024)
    validator.validate(token())  # the key set is fetched once, lazily
    attack = sign(header(kid=KID_INJECTIONS[name]), claims(), OUR_ES256)
    refused(validator, attack, R.TOKEN_KEY_UNKNOWN)
    # Within the refetch interval no unknown kid causes another fetch.
    assert fetch.calls == [JWKS_URL]
    clock.advance(61)
    refused(validator, attack, R.TOKEN_KEY_UNKNOWN)
    refused(validator, attack, R.TOKEN_KEY_UNKNOWN)
    # Past the interval, at most one; a kid longer than any we keep, none at all.
    expected = 1 if name == "ten-kb" else 2
    assert len(fetch.calls) == expected


def test_rfc8725_3_10_kid_that_is_not_a_string_is_malformed(validator: TokenValidator) -> None:
    for kid in (1, ["k"], {"k": 1}, True):
        refused(validator, sign(header(kid=kid), claims(), OUR_ES256), R.TOKEN_MALFORMED)
    refused(validator, sign(header(kid=DROP), claims(), OUR_ES256), R.TOKEN_KEY_UNKNOWN)


# --------------------------------------------------------------------------
# J5 - RFC 8725 §3.10: jku / x5u are an SSRF vector; x5c chains are not trusted.
# --------------------------------------------------------------------------
def test_rfc8725_3_10_jku_x5u_x5c_are_never_fetched_or_trusted(
    validator: TokenValidator, fetch: FetchSpy, loopback: LoopbackServer
) -> None:
    attacker_jwks = compact_json({"keys": [ATTACKER_ES256.jwk]})
    loopback.routes["/jwks.json"] = (200, {"Content-Type": "application/json"}, attacker_jwks)
    attacker_der = ATTACKER_ES256.private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pointers = {
        "jku": f"{loopback.origin}/jwks.json",
        "x5u": f"{loopback.origin}/jwks.json",
        "x5c": [__import__("base64").b64encode(attacker_der).decode()],
    }
    for name, value in pointers.items():
        attack = sign(header(ATTACKER_ES256, **{name: value}), claims(), ATTACKER_ES256)
        refused(validator, attack, R.TOKEN_KEY_UNKNOWN)
        # Our kid, the attacker's signature: the pointer does not supply the key.
        attack = sign(header(OUR_ES256, **{name: value}), claims(), ATTACKER_ES256)
        refused(validator, attack, R.TOKEN_SIGNATURE_INVALID)
        # Ignored, not refused: our own token carrying the member still passes.
        validator.validate(sign(header(OUR_ES256, **{name: value}), claims(), OUR_ES256))
    assert loopback.hits == []
    assert fetch.calls == [JWKS_URL]


# --------------------------------------------------------------------------
# J6 - CVE-2018-0114 (node-jose), Wycheproof JWS tc32: an embedded jwk header.
# --------------------------------------------------------------------------
def test_cve_2018_0114_embedded_jwk_is_ignored(validator: TokenValidator) -> None:
    attacker_jwk = dict(ATTACKER_ES256.jwk)
    attack = sign(header(ATTACKER_ES256, jwk=attacker_jwk), claims(), ATTACKER_ES256)
    refused(validator, attack, R.TOKEN_KEY_UNKNOWN)
    attack = sign(header(OUR_ES256, jwk=attacker_jwk), claims(), ATTACKER_ES256)
    refused(validator, attack, R.TOKEN_SIGNATURE_INVALID)


# --------------------------------------------------------------------------
# J7 - RFC 7515 §4.1.11, PyJWT CVE-2026-32597, Authlib CVE-2025-59420: crit.
# --------------------------------------------------------------------------
CRIT_HEADERS: dict[str, dict[str, Any]] = {
    "unknown-extension": {"crit": ["exp-ext"], "exp-ext": NOW + 10**6},
    "empty-list": {"crit": []},
    "registered-header": {"crit": ["kid"]},
    "b64-false": {"crit": ["b64"], "b64": False},
    "not-a-list": {"crit": "exp-ext"},
    "b64-false-without-crit": {"b64": False},
    "jwe-enc": {"enc": "A256GCM"},
    "zip": {"zip": "DEF"},
}


@pytest.mark.parametrize("name", sorted(CRIT_HEADERS))
def test_rfc7515_4_1_11_crit_and_unsupported_processing_headers_are_refused(
    validator: TokenValidator, name: str
) -> None:
    refused(validator, sign(header(**CRIT_HEADERS[name]), claims(), OUR_ES256), R.TOKEN_MALFORMED)
    validator.validate(sign(header(), claims(), OUR_ES256))  # control


# --------------------------------------------------------------------------
# J8 - RFC 7519 §4.1.4-4.1.6 NumericDate; PyJWT 2.15.1 accepts exp "9999999999".
# --------------------------------------------------------------------------
TIME_CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("expired-by-leeway-plus-1s", {"exp": NOW - 31}, R.TOKEN_EXPIRED),
    ("expired-within-leeway", {"exp": NOW - 30}, None),
    ("nbf-beyond-leeway", {"nbf": NOW + 31}, R.TOKEN_NOT_YET_VALID),
    ("nbf-within-leeway", {"nbf": NOW + 30}, None),
    ("nbf-absent", {"nbf": DROP}, None),
    ("exp-missing", {"exp": DROP}, R.TOKEN_CLAIM_MISSING),
    ("iat-missing", {"iat": DROP}, R.TOKEN_CLAIM_MISSING),
    ("iat-beyond-leeway", {"iat": NOW + 31}, R.TOKEN_ISSUED_IN_FUTURE),
    ("iat-far-future", {"iat": NOW + 10**6, "nbf": DROP}, R.TOKEN_ISSUED_IN_FUTURE),
    ("exp-string", {"exp": "9999999999"}, R.TOKEN_CLAIM_INVALID),
    ("iat-string", {"iat": str(NOW)}, R.TOKEN_CLAIM_INVALID),
    ("nbf-string", {"nbf": str(NOW)}, R.TOKEN_CLAIM_INVALID),
    ("exp-bool", {"exp": True}, R.TOKEN_CLAIM_INVALID),
    ("nbf-bool", {"nbf": False}, R.TOKEN_CLAIM_INVALID),
    ("exp-negative", {"exp": -1}, R.TOKEN_CLAIM_INVALID),
    ("exp-null", {"exp": None}, R.TOKEN_CLAIM_INVALID),
    ("exp-beyond-2**53", {"exp": 2**53}, R.TOKEN_CLAIM_INVALID),
    ("exp-float", {"exp": NOW + 0.5}, None),
    ("exp-object", {"exp": {"$date": NOW + 300}}, R.TOKEN_CLAIM_INVALID),
]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [case[1:] for case in TIME_CASES],
    ids=[case[0] for case in TIME_CASES],
)
def test_rfc7519_4_1_4_numeric_dates(
    validator: TokenValidator, overrides: dict[str, Any], reason: str | None
) -> None:
    bearer = token(**overrides)
    if reason is None:
        validator.validate(bearer)
    else:
        refused(validator, bearer, reason)


@pytest.mark.parametrize("number", ["1e309", "-1e309", "NaN", "Infinity", "1" * 5000])
def test_rfc7519_2_numeric_date_that_json_cannot_carry_is_malformed(
    validator: TokenValidator, number: str
) -> None:
    body = compact_json(claims(exp=0)).replace(b'"exp":0', b'"exp":' + number.encode())
    refused(validator, sign(header(), body, OUR_ES256), R.TOKEN_MALFORMED)


# --------------------------------------------------------------------------
# J9 - RFC 7519 §4.1.3, RFC 8725 §3.8/§3.9, PyJWT CVE-2024-53861: exact aud/iss.
# --------------------------------------------------------------------------
AUDIENCE_CASES: list[tuple[str, Any, str | None]] = [
    ("exact", AUDIENCE, None),
    ("list-with-ours", ["https://other.example", AUDIENCE], None),
    ("suffix-near-match", AUDIENCE + ".evil", R.TOKEN_AUDIENCE_MISMATCH),
    ("trailing-slash", AUDIENCE + "/", R.TOKEN_AUDIENCE_MISMATCH),
    ("prefix", AUDIENCE[:-1], R.TOKEN_AUDIENCE_MISMATCH),
    ("case", AUDIENCE.upper(), R.TOKEN_AUDIENCE_MISMATCH),
    ("substring-of-list-item", [AUDIENCE + "-staging"], R.TOKEN_AUDIENCE_MISMATCH),
    ("list-without-ours", ["https://other.example"], R.TOKEN_AUDIENCE_MISMATCH),
    ("missing", DROP, R.TOKEN_CLAIM_MISSING),
    ("empty-list", [], R.TOKEN_CLAIM_INVALID),
    ("number", 5, R.TOKEN_CLAIM_INVALID),
    ("list-with-non-string", [AUDIENCE, 5], R.TOKEN_CLAIM_INVALID),
    ("null", None, R.TOKEN_CLAIM_INVALID),
]


@pytest.mark.parametrize(
    ("aud", "reason"), [c[1:] for c in AUDIENCE_CASES], ids=[c[0] for c in AUDIENCE_CASES]
)
def test_cve_2024_53861_audience_must_match_exactly(
    validator: TokenValidator, aud: Any, reason: str | None
) -> None:
    if reason is None:
        assert AUDIENCE in validator.validate(token(aud=aud)).audience
    else:
        refused(validator, token(aud=aud), reason)


def test_rfc8725_3_9_short_audience_is_not_a_prefix_match(make_validator: MakeValidator) -> None:
    validator = make_validator(audience="api")
    refused(validator, token(aud="api.evil"), R.TOKEN_AUDIENCE_MISMATCH)
    refused(validator, token(aud="ap"), R.TOKEN_AUDIENCE_MISMATCH)
    refused(validator, token(aud=["apix", "xapi"]), R.TOKEN_AUDIENCE_MISMATCH)
    assert validator.validate(token(aud=["x", "api"])).audience == ("x", "api")


@pytest.mark.parametrize(
    ("iss", "reason"),
    [
        (ISSUER + "/", R.TOKEN_ISSUER_MISMATCH),
        (ISSUER[:-1], R.TOKEN_ISSUER_MISMATCH),
        (ISSUER + ".evil", R.TOKEN_ISSUER_MISMATCH),
        (ISSUER.upper(), R.TOKEN_ISSUER_MISMATCH),
        ("", R.TOKEN_ISSUER_MISMATCH),
        ([ISSUER], R.TOKEN_CLAIM_INVALID),
        (None, R.TOKEN_CLAIM_INVALID),
        (DROP, R.TOKEN_CLAIM_MISSING),
    ],
)
def test_rfc8725_3_8_issuer_must_match_exactly(
    validator: TokenValidator, iss: Any, reason: str
) -> None:
    # Built without PyJWT, which refuses to encode a non-string iss.
    refused(validator, sign(header(), claims(iss=iss), OUR_ES256), reason)


def test_rfc8725_3_8_urn_issuer_partial_match(make_validator: MakeValidator) -> None:
    validator = make_validator(issuer="urn:expected", jwks_url=JWKS_URL)
    refused(validator, token(iss="urn:"), R.TOKEN_ISSUER_MISMATCH)
    refused(validator, token(iss="urn:expected:sub"), R.TOKEN_ISSUER_MISMATCH)
    assert validator.validate(token(iss="urn:expected")).issuer == "urn:expected"


# --------------------------------------------------------------------------
# J10 - RFC 8725 §2.8 / §3.11, RFC 9068 §4: cross-JWT confusion; typ at+jwt.
# --------------------------------------------------------------------------
def test_rfc9068_4_id_token_is_not_an_access_token(validator: TokenValidator) -> None:
    # An OIDC ID token from the same issuer and key: typ "JWT", nonce, no scope.
    id_token = token(headers={"typ": "JWT"}, nonce="n-0S6_WzA2Mj", scope=DROP, act=DROP)
    refused(validator, id_token, R.TOKEN_TYPE_INVALID)


@pytest.mark.parametrize(
    "typ", [DROP, "JWT", "jwt", "dpop+jwt", "secevent+jwt", "at+jwt ", "at+jwt;x", 1, None]
)
def test_rfc8725_3_11_other_types_are_refused(validator: TokenValidator, typ: Any) -> None:
    refused(validator, sign(header(typ=typ), claims(), OUR_ES256), R.TOKEN_TYPE_INVALID)


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"])
def test_rfc9068_4_access_token_types_are_accepted(validator: TokenValidator, typ: str) -> None:
    validator.validate(sign(header(typ=typ), claims(), OUR_ES256))


def test_rfc8725_3_12_token_for_another_resource_is_refused(
    make_validator: MakeValidator,
) -> None:
    # An RFC 8693 subject token minted for the control plane, replayed to a tool.
    validator = make_validator(audience="https://tools.example")
    refused(validator, token(aud="https://issuer.example/token"), R.TOKEN_AUDIENCE_MISMATCH)


# --------------------------------------------------------------------------
# J11 - PyJWT CVE-2026-48524: an unknown-kid storm refetches at most once per interval.
# --------------------------------------------------------------------------
def test_cve_2026_48524_unknown_kid_storm_refetches_once_per_interval(
    make_validator: MakeValidator, fetch: FetchSpy, clock: FakeClock
) -> None:
    validator = make_validator()
    validator.validate(token())
    assert len(fetch.calls) == 1
    rng = random.Random(48524)

    def storm() -> None:
        for _ in range(1000):
            kid = "".join(rng.choices(string.ascii_letters + string.digits + "-_", k=43))
            refused(validator, sign(header(kid=kid), claims(), OUR_ES256), R.TOKEN_KEY_UNKNOWN)

    storm()
    assert len(fetch.calls) == 1  # the budget was spent by the first fetch
    for interval in range(1, 4):
        clock.advance(60)
        storm()
        assert len(fetch.calls) == 1 + interval
        clock.advance(30)
        storm()
        assert len(fetch.calls) == 1 + interval
    validator.validate(token())  # the real key never stopped working


# --------------------------------------------------------------------------
# J12 - RFC 7515 §2/§5.2, RFC 8725 §2.6/§3.7, GHSA-hxm8-2xgr-2p9m: one encoding only.
# --------------------------------------------------------------------------
# {"iss": ..., "sub": "orgs/<ORG>/users/u-1", ..., "sub": "orgs/<ORG>/users/admin"},
# validly signed by our key: a parser that keeps the last "sub" sees admin.
DUPLICATE_SUB_TOKEN = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6Ik9SdEFIS20tZEVjRkNZeVVfWF8xZElVaEV4UE5mRXJnaFV5X2V6M2Z4bVkifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZSIsInN1YiI6Im9yZ3MvMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYvdXNlcnMvdS0xIiwib3JnX2lkIjoiMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYiLCJjbGllbnRfaWQiOiJvcmdzLzAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmL2FnZW50cy9hYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYSIsInNjb3BlIjoidG9vbHMuZXhlY3V0ZSBtYWlsLnJlYWQiLCJqdGkiOiJqdGktMDAwMSIsImlhdCI6MTg5OTk5OTk5MCwibmJmIjoxODk5OTk5OTkwLCJleHAiOjE5MDAwMDAzMDAsImFjdCI6eyJzdWIiOiJvcmdzLzAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmL2FnZW50cy9hYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYSJ9LCJzdWIiOiJvcmdzLzAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmL3VzZXJzL2FkbWluIn0.WY7LCd5mJTdUG4xes8SbCDlPj43M5khSd0yd-Aza6fjOeFDR-ATl1sEbCJLAiCf6murL4aXouS8sS8HQnXY-Cw"


def test_rfc8725_2_6_duplicate_claim_literal_is_validly_signed_and_refused(
    validator: TokenValidator,
) -> None:
    head, payload, signature = DUPLICATE_SUB_TOKEN.split(".")
    public = OUR_ES256.private.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    raw = b64url_to_bytes(signature)
    public.verify(  # the signature is genuine: only the duplicate is wrong
        encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
        f"{head}.{payload}".encode(),
        ec.ECDSA(hashes.SHA256()),
    )
    decoded = b64url_to_bytes(payload)
    assert f'"sub":"orgs/{ORG}/users/u-1"'.encode() in decoded
    assert decoded.endswith(f'"sub":"orgs/{ORG}/users/admin"}}'.encode())
    refused(validator, DUPLICATE_SUB_TOKEN, R.TOKEN_MALFORMED)


def _malformed_cases() -> dict[str, Any]:
    good = token()
    head, payload, signature = good.split(".")
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    last = signature[-1]
    non_canonical = signature[:-1] + alphabet[alphabet.index(last) | 1]
    dup_header = (
        b'{"alg":"ES256","typ":"at+jwt","kid":"' + OUR_ES256.kid.encode() + b'","alg":"none"}'
    )
    return {
        "junk": "!!!!",
        "junk-three-segments": "!!!!.!!!!.!!!!",
        "two-segments": f"{head}.{payload}",
        "four-segments": f"{good}.{signature}",
        "five-segments-jwe-shape": f"{head}.{payload}.{signature}.{signature}.{signature}",
        "empty": "",
        "dots-only": "..",
        "empty-header": f".{payload}.{signature}",
        "empty-payload": f"{head}..{signature}",
        "padding": f"{head}.{payload}.{signature}==",
        "padding-inside": f"{head}=.{payload}.{signature}",
        "non-canonical-trailing-bits": f"{head}.{payload}.{non_canonical}",
        "standard-alphabet": f"{head}.{payload}.{signature.replace('-', '+').replace('_', '/')}"
        if ("-" in signature or "_" in signature)
        else f"{head}.{payload}.{signature[:-2]}+/",
        "leading-space": " " + good,
        "trailing-newline": good + "\n",
        "inner-whitespace": f"{head}.{payload[:10]} {payload[10:]}.{signature}",
        "impossible-length": f"{head}.{payload}A.{signature}"
        if len(payload) % 4 == 0
        else f"{head}.{payload}.{signature}AAA"[: len(good) + 3],
        "json-serialization": json.dumps(
            {"payload": payload, "protected": head, "signature": signature}
        ),
        "non-ascii": good.replace(payload[5], "\u00e9", 1),
        "bytes": good.encode(),
        "none": None,
        "int": 42,
        "header-not-utf8": sign(b"\xff\xfe" + compact_json(header()), claims(), OUR_ES256),
        "header-utf16": sign(compact_json(header()).decode().encode("utf-16"), claims(), OUR_ES256),
        "header-duplicate-alg": sign(dup_header, claims(), OUR_ES256),
        "header-not-object": sign(b'["ES256"]', claims(), OUR_ES256),
        "header-nan": sign(compact_json(header())[:-1] + b',"x":NaN}', claims(), OUR_ES256),
        "payload-not-object": sign(header(), b"[1,2,3]", OUR_ES256),
        "payload-not-json": sign(header(), b"not json", OUR_ES256),
        "payload-trailing-garbage": sign(header(), compact_json(claims()) + b"x", OUR_ES256),
        "payload-nan": sign(header(), compact_json(claims())[:-1] + b',"x":NaN}', OUR_ES256),
        "payload-duplicate": DUPLICATE_SUB_TOKEN,
    }


@pytest.mark.parametrize("name", sorted(_malformed_cases()))
def test_ghsa_hxm8_2xgr_2p9m_malformed_encodings_are_refused(
    validator: TokenValidator, name: str
) -> None:
    refused(validator, _malformed_cases()[name], R.TOKEN_MALFORMED)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(position=st.integers(min_value=0), replacement=st.characters(codec="ascii"))
def test_rfc7515_5_2_any_one_character_change_is_refused(
    validator: TokenValidator, position: int, replacement: str
) -> None:
    good = token()
    position %= len(good)
    if good[position] == replacement:
        return
    tampered = good[:position] + replacement + good[position + 1 :]
    with pytest.raises(Exception) as info:
        validator.validate(tampered)
    assert getattr(info.value, "reason", "").startswith("TOKEN_"), repr(info.value)


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    junk=st.text(max_size=200) | st.from_regex(r"[A-Za-z0-9_\-=]{0,60}(\.[A-Za-z0-9_\-=]{0,60}){2}")
)
def test_rfc8725_2_6_arbitrary_input_is_refused_with_a_token_reason(
    validator: TokenValidator, junk: str
) -> None:
    with pytest.raises(Exception) as info:
        validator.validate(junk)
    assert getattr(info.value, "reason", "").startswith("TOKEN_"), repr(info.value)


# --------------------------------------------------------------------------
# J13 - CVE-2022-21449 "psychic signatures", Wycheproof ECDSA P1363 vectors.
# --------------------------------------------------------------------------
# Our valid header and claims with the all-zero signature r = s = 0.
PSYCHIC_SIGNATURE_TOKEN = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6Ik9SdEFIS20tZEVjRkNZeVVfWF8xZElVaEV4UE5mRXJnaFV5X2V6M2Z4bVkifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5leGFtcGxlIiwiYXVkIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZSIsInN1YiI6Im9yZ3MvMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYvdXNlcnMvdS0xIiwib3JnX2lkIjoiMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWYiLCJjbGllbnRfaWQiOiJvcmdzLzAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmL2FnZW50cy9hYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYSIsInNjb3BlIjoidG9vbHMuZXhlY3V0ZSBtYWlsLnJlYWQiLCJqdGkiOiJqdGktMDAwMSIsImlhdCI6MTg5OTk5OTk5MCwibmJmIjoxODk5OTk5OTkwLCJleHAiOjE5MDAwMDAzMDAsImFjdCI6eyJzdWIiOiJvcmdzLzAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmL2FnZW50cy9hYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYSJ9fQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def test_cve_2022_21449_psychic_signature_is_refused(validator: TokenValidator) -> None:
    assert b64url_to_bytes(PSYCHIC_SIGNATURE_TOKEN.split(".")[2]) == bytes(64)
    refused(validator, PSYCHIC_SIGNATURE_TOKEN, R.TOKEN_SIGNATURE_INVALID)


def _ecdsa_edge_signatures() -> dict[str, bytes]:
    good = token()
    head, payload, signature = good.split(".")
    raw = b64url_to_bytes(signature)
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    n = P256_ORDER

    def p1363(r_: int, s_: int) -> bytes:
        return r_.to_bytes(32, "big") + s_.to_bytes(32, "big")

    return {
        "r=n": p1363(n, s),
        "s=n": p1363(r, n),
        "r=n+r": (n + r).to_bytes(33, "big")[1:] + raw[32:] if n + r < 2**256 else p1363(n, s),
        "r=0": p1363(0, s),
        "s=0": p1363(r, 0),
        "all-ones": b"\xff" * 64,
        "truncated-63": raw[:63],
        "extended-65": raw + b"\x00",
        "der-instead-of-p1363": encode_dss_signature(r, s),
        "swapped-r-s": p1363(s, r),
    }


@pytest.mark.parametrize("name", sorted(_ecdsa_edge_signatures()))
def test_wycheproof_ecdsa_p1363_edge_signatures_are_refused(
    validator: TokenValidator, name: str
) -> None:
    bearer = _with_signature(token(), _ecdsa_edge_signatures()[name])
    refused(validator, bearer, R.TOKEN_SIGNATURE_INVALID)


def test_rfc8032_5_1_7_ed25519_s_not_reduced_is_refused(both_algorithms: TokenValidator) -> None:
    good = token(OUR_ED25519)
    raw = b64url_to_bytes(good.split(".")[2])
    s = int.from_bytes(raw[32:], "little") + ED25519_L
    malleated = raw[:32] + s.to_bytes(32, "little")
    refused(both_algorithms, _with_signature(good, malleated), R.TOKEN_SIGNATURE_INVALID)
    refused(both_algorithms, _with_signature(good, raw[:63]), R.TOKEN_SIGNATURE_INVALID)
    both_algorithms.validate(good)


# --------------------------------------------------------------------------
# J14 - size and depth limits (PyJWT 2.15.1 accepts a 501-deep act).
# --------------------------------------------------------------------------
def test_j14_oversize_token_is_refused_before_any_decoding(
    validator: TokenValidator, fetch: FetchSpy
) -> None:
    refused(validator, "a" * 8193, R.TOKEN_MALFORMED)
    refused(validator, token(jti="x" * 9000), R.TOKEN_MALFORMED)
    assert fetch.calls == []  # not even the key set was needed


def test_j14_size_cap_boundary(validator: TokenValidator) -> None:
    sizes = {}
    for filler in range(5500, 6400):
        sizes[len(token(jti="j" * filler))] = filler
    at_cap = sizes.get(8192)
    over = min(size for size in sizes if size > 8192)
    if at_cap is not None:
        validator.validate(token(jti="j" * at_cap))
    refused(validator, token(jti="j" * sizes[over]), R.TOKEN_MALFORMED)


def _nested_act(depth: int) -> dict[str, Any]:
    act: dict[str, Any] = {"sub": f"orgs/{ORG}/agents/depth-{depth}"}
    for level in range(depth - 1, 0, -1):
        act = {"sub": f"orgs/{ORG}/agents/depth-{level}", "act": act}
    return act


def test_j14_act_chain_at_the_limit_is_accepted(validator: TokenValidator) -> None:
    verified = validator.validate(token(act=_nested_act(8)))
    assert verified.actor_chain == tuple(f"orgs/{ORG}/agents/depth-{i}" for i in range(1, 9))
    assert verified.actor == f"orgs/{ORG}/agents/depth-1"


def test_j14_act_chain_beyond_the_limit_is_refused(make_validator: MakeValidator) -> None:
    refused(make_validator(), token(act=_nested_act(9)), R.TOKEN_ACT_TOO_DEEP)
    refused(make_validator(max_act_depth=2), token(act=_nested_act(3)), R.TOKEN_ACT_TOO_DEEP)
    refused(make_validator(max_act_depth=0), token(), R.TOKEN_ACT_TOO_DEEP)


def test_j14_501_deep_act_is_refused(make_validator: MakeValidator) -> None:
    big = make_validator(max_token_bytes=64 * 1024)
    refused(big, token(act=_nested_act(501)), R.TOKEN_MALFORMED)  # JSON nesting limit
    # The JSON nesting limit follows max_act_depth, which is capped at 64.
    deep = make_validator(max_token_bytes=64 * 1024, max_act_depth=64)
    assert len(deep.validate(token(act=_nested_act(64))).actor_chain) == 64
    refused(deep, token(act=_nested_act(65)), R.TOKEN_ACT_TOO_DEEP)
    refused(deep, token(act=_nested_act(501)), R.TOKEN_MALFORMED)
    with pytest.raises(ValueError, match="max_act_depth"):
        make_validator(max_act_depth=65)


def test_j14_100000_deep_json_is_refused_without_crashing(make_validator: MakeValidator) -> None:
    body = compact_json(claims())[:-1] + b',"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    bearer = sign(header(), body, OUR_ES256)
    refused(make_validator(), bearer, R.TOKEN_MALFORMED)  # over the size cap
    refused(make_validator(max_token_bytes=len(bearer)), bearer, R.TOKEN_MALFORMED)
