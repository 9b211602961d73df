"""Security regressions for compact-JWS verification, named after the section they guard.

RFC 8725 (JWT BCP) and RFC 7515 (JWS); perf_security.md §B2.1 J1-J7, J12-J14.
Attack tokens are kept as literals where practical. They are signed with
throwaway test keys generated for this file (never used anywhere else); the
few attacks whose bytes depend on a key encoding are built in the test.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import io
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from control_plane.domain.errors import Unauthenticated
from control_plane.tokens import jws
from control_plane.tokens.encoding import b64url_decode, b64url_encode
from control_plane.tokens.jws import (
    P256_ORDER,
    TOKEN_ALGORITHM_NOT_ALLOWED,
    TOKEN_HEADER_UNSUPPORTED,
    TOKEN_KEY_MISMATCH,
    TOKEN_KEY_UNKNOWN,
    TOKEN_MALFORMED,
    TOKEN_SIGNATURE_INVALID,
    TOKEN_TOO_LARGE,
    TokenInvalid,
    verify_compact,
)

# Throwaway test keys (private parts only to build attack tokens below).
OUR_EC = {
    "kty": "EC",
    "crv": "P-256",
    "x": "vE34uTr_-bYyd_eozgiJqbixR347SH9zz2ZeQfh14YY",
    "y": "yEKsGrmoxej5CSMXVA11_A35hz9IAiE4t4mK_7OLmXU",
    "kid": "test-es256",
    "alg": "ES256",
    "use": "sig",
}
OUR_EC_D = "8YaMrJNmuEMA--13eTqMi6XKb3qzDuQjvRbyFNqvxMU"
OUR_ED = {
    "kty": "OKP",
    "crv": "Ed25519",
    "x": "-zNI9gwh5v9BNzfpMSMgqziWEjUvdiRu_xjPMUQ8aFU",
    "kid": "test-eddsa",
    "alg": "EdDSA",
    "use": "sig",
}
OUR_ED_D = "YA4urcNXQgr37GddhmavMLH9BCT_JVjq2nnJwHShjKs"
ATTACKER_EC_D = "X0IifsMTmd2pzmocoTpYXiuG1MoPFB0vDCx4RSc2GRw"

JWKS = {"keys": [OUR_EC, OUR_ED]}
BOTH = ["ES256", "EdDSA"]
PAYLOAD = '{"sub":"user-1"}'

VALID = (
    "eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMyNTYifQ.eyJzdWIiOiJ1c2VyLTEifQ."
    "9ZCO5nRbgflyXzqIhm722jbSr3aas5TNhpMZ3vZOGv9YuBOMymULs5povwnF2IajbyrK9beEQar_lq2NZzc50g"
)


def _ec_private(d: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(b64url_decode(d), "big"), ec.SECP256R1())


def sign_es256(header: str, payload: str = PAYLOAD, d: str = OUR_EC_D) -> str:
    """A correctly signed ES256 token over the exact header/payload text given."""
    signing_input = f"{b64url_encode(header.encode())}.{b64url_encode(payload.encode())}"
    return sign_segments(signing_input, d)


def sign_segments(signing_input: str, d: str = OUR_EC_D) -> str:
    der = _ec_private(d).sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def reason_of(token: str, *, jwks: Any = JWKS, algorithms: list[str] = BOTH, **kw: Any) -> str:
    with pytest.raises(TokenInvalid) as excinfo:
        verify_compact(token, jwks, algorithms=algorithms, **kw)
    return excinfo.value.reason


def test_the_baseline_token_verifies() -> None:
    header, payload = verify_compact(VALID, JWKS, algorithms=["ES256"])
    assert header == {"alg": "ES256", "kid": "test-es256"}
    assert payload == PAYLOAD.encode()


# ---------------------------------------------------------------- RFC 8725 §2.1, §3.1 (J1)

ALG_NONE = [
    "eyJhbGciOiJub25lIiwia2lkIjoidGVzdC1lczI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.",  # none
    "eyJhbGciOiJOb25lIiwia2lkIjoidGVzdC1lczI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.",  # None
    "eyJhbGciOiJOT05FIiwia2lkIjoidGVzdC1lczI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.",  # NONE
    "eyJhbGciOiJuT25FIiwia2lkIjoidGVzdC1lczI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.",  # nOnE
    # none, no kid, with a real signature copied from VALID
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyLTEifQ."
    "9ZCO5nRbgflyXzqIhm722jbSr3aas5TNhpMZ3vZOGv9YuBOMymULs5povwnF2IajbyrK9beEQar_lq2NZzc50g",
]


@pytest.mark.parametrize("token", ALG_NONE)
def test_rfc8725_3_1_alg_none_is_never_accepted(token: str) -> None:
    assert reason_of(token) == TOKEN_ALGORITHM_NOT_ALLOWED


def test_rfc8725_3_1_none_cannot_even_be_configured() -> None:
    for bad in (["none"], ["ES256", "none"], ["HS256"], ["RS256"], []):
        with pytest.raises(ValueError):
            verify_compact(VALID, JWKS, algorithms=bad)
    with pytest.raises(TypeError):
        verify_compact(VALID, JWKS, algorithms="ES256")  # a str is a Sequence[str] too


# ---------------------------------------------------------------- RFC 8725 §3.1, key confusion (J2)

HS256_KEYED_WITH_OUR_PEM = (
    "eyJhbGciOiJIUzI1NiIsImtpZCI6InRlc3QtZXMyNTYifQ.eyJzdWIiOiJ1c2VyLTEifQ."
    "S4RMMaMnqRcZ1WEtz18l0o7vgNTMqG5HqjcnRVPesKI"
)


def _public_key_encodings() -> dict[str, bytes]:
    x, y = b64url_decode(OUR_EC["x"]), b64url_decode(OUR_EC["y"])
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return {
        "pem": key.public_bytes(serialization.Encoding.PEM, spki),
        "der": key.public_bytes(serialization.Encoding.DER, spki),
        "openssh": key.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "jwk-json": json.dumps(OUR_EC).encode(),
        "jwks-json": json.dumps(JWKS, sort_keys=True, separators=(",", ":")).encode(),
        "raw-x||y": x + y,
        "uncompressed-point": b"\x04" + x + y,
    }


def test_rfc8725_3_1_hs256_literal_with_our_pem_is_rejected() -> None:
    pem = _public_key_encodings()["pem"]
    signing_input, _, mac = HS256_KEYED_WITH_OUR_PEM.rpartition(".")
    # The literal really is a correct HMAC under our public key's PEM text.
    assert hmac.new(pem, signing_input.encode(), hashlib.sha256).digest() == b64url_decode(mac)
    assert reason_of(HS256_KEYED_WITH_OUR_PEM) == TOKEN_ALGORITHM_NOT_ALLOWED


@pytest.mark.parametrize("encoding", sorted(_public_key_encodings()))
def test_rfc8725_3_1_hs256_keyed_with_our_public_key_bytes_is_rejected(encoding: str) -> None:
    secret = _public_key_encodings()[encoding]
    for kid in ("test-es256", "test-eddsa"):
        header = b64url_encode(json.dumps({"alg": "HS256", "kid": kid}).encode())
        signing_input = f"{header}.{b64url_encode(PAYLOAD.encode())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        token = f"{signing_input}.{b64url_encode(mac)}"
        assert reason_of(token) == TOKEN_ALGORITHM_NOT_ALLOWED


# ---------------------------------------------------------------- RFC 8725 §3.1, alg/kid mismatch (J3)

ES384_HEADER_ON_ES256_KEY = (
    "eyJhbGciOiJFUzM4NCIsImtpZCI6InRlc3QtZXMyNTYifQ.eyJzdWIiOiJ1c2VyLTEifQ."
    "9ZCO5nRbgflyXzqIhm722jbSr3aas5TNhpMZ3vZOGv9YuBOMymULs5povwnF2IajbyrK9beEQar_lq2NZzc50g"
)


def test_rfc8725_3_1_alg_not_configured_is_rejected() -> None:
    assert reason_of(ES384_HEADER_ON_ES256_KEY) == TOKEN_ALGORITHM_NOT_ALLOWED
    # Allowed by configuration is not enough when the caller configured ES256 only.
    eddsa = _sign_eddsa('{"alg":"EdDSA","kid":"test-eddsa"}')
    assert verify_compact(eddsa, JWKS, algorithms=BOTH)[0]["alg"] == "EdDSA"
    assert reason_of(eddsa, algorithms=["ES256"]) == TOKEN_ALGORITHM_NOT_ALLOWED


def _sign_eddsa(header: str) -> str:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(b64url_decode(OUR_ED_D))
    signing_input = f"{b64url_encode(header.encode())}.{b64url_encode(PAYLOAD.encode())}"
    return f"{signing_input}.{b64url_encode(key.sign(signing_input.encode()))}"


def test_rfc8725_3_1_header_alg_must_be_the_keys_alg() -> None:
    # A valid EdDSA signature, but the kid names our ES256 key.
    eddsa_on_ec_kid = _sign_eddsa('{"alg":"EdDSA","kid":"test-es256"}')
    assert reason_of(eddsa_on_ec_kid) == TOKEN_KEY_MISMATCH
    # A valid ES256 signature, but the kid names our EdDSA key.
    es256_on_ed_kid = sign_es256('{"alg":"ES256","kid":"test-eddsa"}')
    assert reason_of(es256_on_ed_kid) == TOKEN_KEY_MISMATCH
    # A key set that claims another alg for a key is refused as a whole.
    lying = {"keys": [{**OUR_EC, "alg": "EdDSA"}]}
    assert reason_of(VALID, jwks=lying) == TOKEN_KEY_UNKNOWN


# ---------------------------------------------------------------- RFC 8725 §2.9, §3.10 kid (J4)


@contextmanager
def no_io(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record any attempt to open a file or a network connection."""
    attempts: list[str] = []

    def refuse(name: str) -> Any:
        def _refuse(*args: Any, **kwargs: Any) -> Any:
            attempts.append(name)
            raise OSError(f"{name} is not allowed during verification")

        return _refuse

    with monkeypatch.context() as patch:
        patch.setattr(builtins, "open", refuse("open"))
        patch.setattr(io, "open", refuse("io.open"))
        patch.setattr(os, "open", refuse("os.open"))
        patch.setattr(socket.socket, "connect", refuse("socket.connect"))
        patch.setattr(socket, "create_connection", refuse("create_connection"))
        patch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
        yield attempts


HOSTILE_KIDS = [
    "../../../../dev/null",
    "/etc/passwd",
    "' UNION SELECT 'x'--",
    "x\x00y",
    "k\u0130d\u202e",
    "kid-not-in-set",
    "",
]


@pytest.mark.parametrize("kid", HOSTILE_KIDS, ids=range(len(HOSTILE_KIDS)))
def test_rfc8725_3_10_hostile_kid_is_an_unknown_key(
    kid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = sign_es256(json.dumps({"alg": "ES256", "kid": kid}))
    with no_io(monkeypatch) as attempts:
        assert reason_of(token) == TOKEN_KEY_UNKNOWN
    assert attempts == []


def test_rfc8725_3_10_huge_or_odd_kids() -> None:
    huge = sign_es256(json.dumps({"alg": "ES256", "kid": "k" * 10_240}))
    assert reason_of(huge) == TOKEN_TOO_LARGE
    assert reason_of(huge, max_token_bytes=20_000) == TOKEN_KEY_UNKNOWN
    assert reason_of(sign_es256('{"alg":"ES256"}')) == TOKEN_KEY_UNKNOWN
    assert reason_of(sign_es256('{"alg":"ES256","kid":null}')) == TOKEN_KEY_UNKNOWN
    assert reason_of(sign_es256('{"alg":"ES256","kid":7}')) == TOKEN_MALFORMED
    assert reason_of(sign_es256('{"alg":"ES256","kid":["test-es256"]}')) == TOKEN_MALFORMED


# ---------------------------------------------------------------- RFC 8725 §3.10 jku/x5u/x5c/jwk (J5, J6)

# Signed by OUR key, carrying jku -> 127.0.0.1, x5u -> attacker, x5c, and an attacker jwk.
JKU_X5U_X5C_JWK_SIGNED_BY_US = (
    "eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMyNTYiLCJqa3UiOiJodHRwOi8vMTI3LjAuMC4xOjkvandrcy5qc29u"
    "IiwieDV1IjoiaHR0cHM6Ly9hdHRhY2tlci5leGFtcGxlL3g1dS5wZW0iLCJ4NWMiOlsiTUlJQmF0dGFja2VyIl0sImp3"
    "ayI6eyJrdHkiOiJFQyIsImNydiI6IlAtMjU2IiwieCI6IkdIaXlVOUY5cTVhamtyMnQ3dVpoU09qX3N0RXY0TWQ5aTVC"
    "LU13Y0xVd1UiLCJ5IjoiUVNTZ0RBNEZiM1A2WVJZWkIzNnlpMTdBaHdHaVpqLXp4cHF3d2NCSUNwQSIsImtpZCI6InRl"
    "c3QtZXMyNTYifX0.eyJzdWIiOiJ1c2VyLTEifQ.sfOairNyTbHw8DMk6y8jq4PwAcOyMNFqkTbrmLR2iQIAAEqiP8h-HK"
    "GxXcfICWfngYAd8YjY7OPKmFbOsbbIsQ"
)
# Signed by the ATTACKER's key, which it embeds as "jwk" under our kid (CVE-2018-0114).
EMBEDDED_ATTACKER_JWK = (
    "eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMyNTYiLCJqd2siOnsia3R5IjoiRUMiLCJjcnYiOiJQLTI1NiIsIngi"
    "OiJHSGl5VTlGOXE1YWprcjJ0N3VaaFNPal9zdEV2NE1kOWk1Qi1Nd2NMVXdVIiwieSI6IlFTU2dEQTRGYjNQNllSWVpC"
    "MzZ5aTE3QWh3R2laai16eHBxd3djQklDcEEiLCJraWQiOiJ0ZXN0LWVzMjU2In19.eyJzdWIiOiJ1c2VyLTEifQ.25SmO"
    "dqYUweTLXIQF0SUSACwbsEu6lokRCUyZuYcJTsUDI7Tke6VAiw7adqWopDgE9kbyda6ys40eKh8QZGc9w"
)
# Signed by the ATTACKER's key, kid "attacker", jku pointing at a loopback JWKS.
JKU_TO_ATTACKER_KEYS = (
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImF0dGFja2VyIiwiamt1IjoiaHR0cDovLzEyNy4wLjAuMTo5L2p3a3MuanNvbiJ9."
    "eyJzdWIiOiJ1c2VyLTEifQ.0iZUQ1UPUMpTEIspszfXiODqKDSwo6GEZtE56VADQ_j5UcpoVSodQaSiHzj1Mc-1M2PFaV"
    "Cqn06hu4ecQItoOw"
)


def test_rfc8725_3_10_key_url_headers_are_ignored_without_io(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with no_io(monkeypatch) as attempts:
        # Our own signature still verifies, with our key: the headers changed nothing.
        header, _ = verify_compact(JKU_X5U_X5C_JWK_SIGNED_BY_US, JWKS, algorithms=BOTH)
        assert header["jku"] == "http://127.0.0.1:9/jwks.json"
        # The attacker's signatures do not, whatever key they point at or embed.
        assert reason_of(EMBEDDED_ATTACKER_JWK) == TOKEN_SIGNATURE_INVALID
        assert reason_of(JKU_TO_ATTACKER_KEYS) == TOKEN_KEY_UNKNOWN
    assert attempts == []


# ------------------------------------------------------- RFC 7515 §4.1.11 crit; RFC 7797 b64 (J7)

CRIT_AND_B64 = {
    "crit unknown extension": (
        "eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMyNTYiLCJjcml0IjpbImV4cC1leHQiXSwiZXhwLWV4dCI6MX0."
        "eyJzdWIiOiJ1c2VyLTEifQ.ZDTCbhVdohd6HHYmImZX0ZF4QnE7IlHi4mEu4FmMb0hPVPM8yBK5KRglSSs9OaqUeORX"
        "Or-9a7YEQRFYgB8-3Q"
    ),
    "crit empty": (
        "eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMyNTYiLCJjcml0IjpbXX0.eyJzdWIiOiJ1c2VyLTEifQ.oR_o7B7w"
        "c-3ei5qQ1A0u5GgjsGID2JyM6qoAgAJQ5fV5osdQ5Zx3yyul6IenFnTKgGGBRdkJpgnIoRGovfFJAw"
    ),
    "crit names a registered header": (
        "eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMyNTYiLCJjcml0IjpbImtpZCJdfQ.eyJzdWIiOiJ1c2VyLTEifQ.m"
        "JrB-igPF_R5lle-m5ONau_iY_v1UyHspnoH0iqFfqkSkEYu9kq3NXLaFxZ-ga5dd_Dj12KK3ranRP9ILcsCew"
    ),
    "b64 false with crit": (
        "eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMyNTYiLCJiNjQiOmZhbHNlLCJjcml0IjpbImI2NCJdfQ.eyJzdWIi"
        "OiJ1c2VyLTEifQ.XdhF5f-ptcMhQAvVmKDpPTAen-v4SS6oQS3v08KuuoEACHFli6S8CVGr3tpjP6Npbdf_hjzsuhaMi"
        "IjQG324ew"
    ),
    "b64 false without crit": (
        "eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMyNTYiLCJiNjQiOmZhbHNlfQ.eyJzdWIiOiJ1c2VyLTEifQ.W0Z4z"
        "k3AUoaoEchAq1zugXWq2qAFbwO6qx1JGIfVGUIeV4PupZmH3SJPcRpzWWW7LCiyPygTreostt_1Aioftw"
    ),
}


@pytest.mark.parametrize("case", sorted(CRIT_AND_B64))
def test_rfc7515_4_1_11_crit_and_unencoded_payload_are_rejected(case: str) -> None:
    assert reason_of(CRIT_AND_B64[case]) == TOKEN_HEADER_UNSUPPORTED


def test_rfc7515_jwe_only_headers_are_rejected() -> None:
    for header in (
        '{"alg":"ES256","kid":"test-es256","zip":"DEF"}',
        '{"alg":"ES256","kid":"test-es256","enc":"A256GCM"}',
    ):
        assert reason_of(sign_es256(header)) == TOKEN_HEADER_UNSUPPORTED


# ------------------------------------------------------- RFC 8725 §2.6, §3.7 one encoding (J12)

DUPLICATE_ALG_HEADER = (  # {"alg":"ES256","kid":"test-es256","alg":"none"}, correctly signed
    "eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMyNTYiLCJhbGciOiJub25lIn0.eyJzdWIiOiJ1c2VyLTEifQ.f3Zyg"
    "LxE3-nTmMO-aW1lIH6shyYHBNVqs9o3nAJ9IZypmhd4JTKfMjqLb3CxZku3ghB66Z6e4sdjvKiLoCyCIw"
)
DUPLICATE_KID_HEADER = (  # {"alg":"ES256","kid":"attacker","kid":"test-es256"}, correctly signed
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImF0dGFja2VyIiwia2lkIjoidGVzdC1lczI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ."
    "exEWkiw-EKYgdoRZNZay7RUabBFgef7E7wd5cvBS6JHMv7NP1BMyXR4aDlfZjqExAInQr3-ba0Y8qmkWz4crCQ"
)
DUPLICATE_SUB_PAYLOAD = (  # {"sub":"user-1","sub":"admin"}, correctly signed
    "eyJhbGciOiJFUzI1NiIsImtpZCI6InRlc3QtZXMyNTYifQ.eyJzdWIiOiJ1c2VyLTEiLCJzdWIiOiJhZG1pbiJ9.8fw_"
    "HBM5Sar-yQ21cmDT2U6HZwMH5U_07nzQDhu3PtOw9yf5C4ROLwZXHbkr1AbjO8RRaw2HKDqFTSTI7qhEhQ"
)


@pytest.mark.parametrize(
    "token",
    [DUPLICATE_ALG_HEADER, DUPLICATE_KID_HEADER, DUPLICATE_SUB_PAYLOAD],
    ids=["header-alg", "header-kid", "payload-sub"],
)
def test_rfc8725_2_6_duplicate_member_names_are_rejected(token: str) -> None:
    assert reason_of(token) == TOKEN_MALFORMED


def _with_segment(index: int, segment: str) -> str:
    parts = VALID.split(".")
    parts[index] = segment
    return ".".join(parts)


HEADER, BODY, SIG = VALID.split(".")
NOT_UTF8 = b'\xff{"alg":"ES256","kid":"test-es256"}'
MALFORMED = {
    "junk": "!!!!.!!!!.!!!!",
    "two segments": f"{HEADER}.{BODY}",
    "four segments": f"{VALID}.",
    "five segments (JWE shape)": f"{HEADER}.{BODY}.{SIG}.{BODY}.{SIG}",
    "empty header": f".{BODY}.{SIG}",
    "empty payload": f"{HEADER}..{SIG}",
    "empty signature": f"{HEADER}.{BODY}.",
    "empty string": "",
    "padded header": f"{HEADER}=.{BODY}.{SIG}",
    "padded signature": f"{HEADER}.{BODY}.{SIG}==",
    "standard alphabet": f"{HEADER}.{BODY}.{SIG.replace('_', '/')}",
    "space inside": f"{HEADER}. {BODY}.{SIG}",
    "trailing newline": f"{VALID}\n",
    "non-ascii": f"{HEADER}.{BODY}.{SIG}\u00e9",
    "json serialization": json.dumps({"payload": BODY, "protected": HEADER, "signature": SIG}),
    "header not utf-8": sign_segments(b64url_encode(NOT_UTF8) + "." + BODY),
    "header is an array": sign_es256('["alg","ES256"]'),
    "header is a string": sign_es256('"ES256"'),
    "header with NaN": sign_es256('{"alg":"ES256","kid":"test-es256","x":NaN}'),
    "header with BOM": sign_es256('\ufeff{"alg":"ES256","kid":"test-es256"}'),
    "alg not a string": sign_es256('{"alg":["ES256"],"kid":"test-es256"}'),
    # Correctly signed over a payload segment whose unused low bits are not zero
    # ("...fR" decodes to the same bytes as the canonical "...fQ").
    "non-canonical payload bits": sign_segments(f"{HEADER}.{BODY[:-1]}R"),
    "non-canonical header bits": sign_segments(f"{HEADER[:-1]}R.{BODY}"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_rfc8725_2_6_malformed_encodings_are_rejected(case: str) -> None:
    assert reason_of(MALFORMED[case]) == TOKEN_MALFORMED


def test_rfc8725_2_6_non_canonical_literal_really_decodes_the_same() -> None:
    assert b64url_encode(b64url_decode(BODY)) == BODY
    with pytest.raises(ValueError):
        b64url_decode(BODY[:-1] + "R")


# ------------------------------------------------------- RFC 7518 §3.4 ES256 signatures (J13)


def _signature_variants() -> dict[str, bytes]:
    raw = b64url_decode(SIG)
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    n = P256_ORDER

    def rs(r_: int, s_: int) -> bytes:
        return r_.to_bytes(32, "big") + s_.to_bytes(32, "big")

    return {
        "DER instead of R||S": encode_dss_signature(r, s),
        "r = s = 0": bytes(64),
        "r = 0": rs(0, s),
        "s = 0": rs(r, 0),
        "r = n": rs(n, s),
        "s = n": rs(r, n),
        "r + n": (r + n).to_bytes(33, "big") + s.to_bytes(32, "big"),
        "63 bytes": raw[:63],
        "65 bytes (trailing zero)": raw + b"\x00",
        "leading zero": b"\x00" + raw,
        "r and s swapped": rs(s, r),
    }


@pytest.mark.parametrize("case", sorted(_signature_variants()))
def test_rfc7518_3_4_ecdsa_signature_edge_cases_are_rejected(case: str) -> None:
    token = _with_segment(2, b64url_encode(_signature_variants()[case]))
    assert reason_of(token) == TOKEN_SIGNATURE_INVALID


# ---------------------------------------------------------------- size before parsing (J14)


def test_rfc8725_oversize_tokens_are_rejected_before_any_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    big = sign_es256('{"alg":"ES256","kid":"test-es256"}', json.dumps({"pad": "x" * 9000}))
    assert len(big) > jws.MAX_TOKEN_BYTES

    def must_not_decode(*_args: Any) -> bytes:
        raise AssertionError("decoded an oversized token")

    with monkeypatch.context() as patch:
        patch.setattr(jws, "b64url_decode", must_not_decode)
        patch.setattr(jws, "parse_json_object", must_not_decode)
        assert reason_of(big) == TOKEN_TOO_LARGE
        assert reason_of("." * 100_000) == TOKEN_TOO_LARGE
    # The limit is inclusive and configurable.
    verify_compact(VALID, JWKS, algorithms=BOTH, max_token_bytes=len(VALID))
    assert reason_of(VALID, max_token_bytes=len(VALID) - 1) == TOKEN_TOO_LARGE


def test_deeply_nested_header_json_is_malformed_not_a_crash() -> None:
    nested = '{"alg":"ES256","kid":"test-es256","x":' + "[" * 3000 + "]" * 3000 + "}"
    assert reason_of(sign_es256(nested)) == TOKEN_MALFORMED


# ---------------------------------------------------------------- the error type


def test_token_invalid_is_a_safe_unauthenticated_error() -> None:
    with pytest.raises(Unauthenticated) as excinfo:
        verify_compact(DUPLICATE_SUB_PAYLOAD, JWKS, algorithms=BOTH)
    error = excinfo.value
    assert isinstance(error, TokenInvalid)
    assert error.code == "UNAUTHENTICATED"
    assert error.message == "the token is invalid"
    assert "admin" not in str(error) and BODY not in str(error)
