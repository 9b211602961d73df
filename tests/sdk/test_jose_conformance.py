"""One conformance suite for the JOSE core, run through every entry point that uses it.

The same tokens go to

* ``sdk``: :class:`agentauth.TokenValidator` (an RFC 9068 access token),
* ``server-own``: ``OwnTokens`` verifying one of the control plane's own
  tokens (``control_plane.tokens.jws.verify_compact`` plus its claim checks),
* ``server-external``: ``workload_tokens.verify_external``, the path of every
  foreign JWT (workload identities, RFC 7523 assertions, IdP assertions),

each configured for ES256 with the same two keys (two, so that no entry point
may fall back to a lone key for a token without ``kid``), issuer, audience,
a 30 s leeway and the same injected time ``NOW`` (in 2030: while that is in
the future, a path that read the wall clock would refuse every token here). All must
accept and refuse the same tokens; where a reason is given, the SDK and the
server's own-token path must both report it. What the profiles deliberately
differ on (``typ`` at+jwt, claims an access token requires, the size cap,
the nesting depth of claims, the audience of our own tokens) is left out:
those are each entry point's policy, tested in its own suite, not the shared
core.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from agentauth._errors import AgentAuthError
from agentauth._validator import TokenValidator
from agentauth._validator_errors import TokenReason
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from control_plane.clock import FakeClock
from control_plane.services.external_keys import IssuerKeyCache, parse_public_jwks
from control_plane.services.own_tokens import OwnTokens, TokenRejected
from control_plane.services.workload_tokens import (
    Expected,
    Rejected,
    parse_unverified,
    verify_external,
)
from control_plane.tokens.jws import load_jwks
from tests.sdk.conftest import (
    ATTACKER_ES256,
    AUDIENCE,
    DROP,
    ISSUER,
    NEXT_ES256,
    NOW,
    OUR_ED25519,
    OUR_ES256,
    b64url,
    claims,
    compact_json,
    header,
    jwks,
    sign,
    token,
)

R = TokenReason
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
KEY_SET = jwks(OUR_ES256, NEXT_ES256)


# ---------------------------------------------------------------- entry points
def _sdk(bearer: str) -> str | None:
    validator = TokenValidator(
        ISSUER, AUDIENCE, clock=lambda: float(NOW), fetch=lambda _url: KEY_SET, cache_size=0
    )
    try:
        validator.validate(bearer)
    except AgentAuthError as err:
        return err.reason
    return None


class _PublishedKeys:
    """The slice of SigningKeyManager that OwnTokens verifies with."""

    algorithm = "ES256"

    def verification_keys(self) -> Any:
        return load_jwks(KEY_SET)


def _server_own(bearer: str) -> str | None:
    clock = FakeClock(dt.datetime.fromtimestamp(NOW, dt.UTC))
    own = OwnTokens(None, _PublishedKeys(), clock, ISSUER, None)  # type: ignore[arg-type]
    try:
        own._verified_claims(bearer, check_time=True)
    except TokenRejected as err:
        return err.reason
    return None


async def _server_external(bearer: str) -> str | None:
    expected = Expected(
        "org", ISSUER, AUDIENCE, ("ES256",), "", parse_public_jwks(KEY_SET), access_token_ok=True
    )
    unused = IssuerKeyCache(None)  # type: ignore[arg-type]  # static keys: never fetches
    try:
        parsed = parse_unverified(bearer, access_token_ok=True)
        await verify_external(bearer, parsed, expected, unused, float(NOW))
    except Rejected as err:
        return err.why or "refused"
    return None


async def _outcome(entry: str, bearer: str) -> str | None:
    if entry == "sdk":
        return _sdk(bearer)
    if entry == "server-own":
        return _server_own(bearer)
    return await _server_external(bearer)


# ---------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    build: Callable[[], str]
    accepted: bool
    #: The shared reason both the SDK and the server's own-token path report.
    reason: str | None = None
    #: Our own tokens are checked for ``aud`` by their callers, not by OwnTokens.
    own: bool = True


def _with_signature(bearer: str, signature: bytes) -> str:
    head, payload, _ = bearer.split(".")
    return f"{head}.{payload}.{b64url(signature)}"


def _raw_payload(body: bytes) -> str:
    return sign(header(), body, OUR_ES256)


def _hs256_with_our_pem() -> str:
    pem = OUR_ES256.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64url(compact_json(header(alg="HS256")))
    body = b64url(compact_json(claims()))
    mac = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


def _alg_none(signature: str) -> str:
    head = b64url(compact_json(header(alg="none")))
    return f"{head}.{b64url(compact_json(claims()))}.{signature}"


def _signature_edge(name: str) -> str:
    good = token()
    raw = base64.urlsafe_b64decode(good.split(".")[2] + "==")
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")

    def rs(r_: int, s_: int) -> bytes:
        return r_.to_bytes(32, "big") + s_.to_bytes(32, "big")

    signature = {
        "zeros": bytes(64),
        "r=n": rs(P256_ORDER, s),
        "s=n": rs(r, P256_ORDER),
        "s=0": rs(r, 0),
        "der": encode_dss_signature(r, s),
        "truncated": raw[:63],
        "extended": raw + b"\x00",
    }[name]
    return _with_signature(good, signature)


def _malformed(name: str) -> str:
    good = token()
    head, payload, signature = good.split(".")
    return {
        "junk": "!!!!.!!!!.!!!!",
        "two-segments": f"{head}.{payload}",
        "four-segments": f"{good}.{signature}",
        "padding": f"{head}.{payload}.{signature}==",
        "standard-alphabet": f"{head}.{payload}.{signature.replace('-', '+').replace('_', '/')}"
        if "-" in signature or "_" in signature
        else f"{head}.{payload}.{signature[:-2]}+/",
        "leading-space": " " + good,
        "trailing-newline": good + "\n",
        "json-serialization": json.dumps(
            {"protected": head, "payload": payload, "signature": signature}
        ),
        "non-ascii": good.replace(payload[5], "\u00e9", 1),
        "empty-payload": f"{head}..{signature}",
    }[name]


def _non_canonical_bits() -> str:
    """Correctly signed over a payload segment whose unused low bits are not zero."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    head = b64url(compact_json(header()))
    payload = b64url(compact_json(claims(jti="j" * 5)))
    while len(payload) % 4 not in (2, 3):
        payload = b64url(compact_json(claims(jti="j" * (len(payload) % 7 + 6))))
    flipped = payload[:-1] + alphabet[alphabet.index(payload[-1]) | 1]
    signing_input = f"{head}.{flipped}".encode()
    return f"{head}.{flipped}.{b64url(OUR_ES256.sign(signing_input))}"


CASES: dict[str, Case] = {
    # ------------------------------------------------------------ accepted
    "valid": Case(lambda: token(), True),
    "valid-other-published-key": Case(lambda: token(NEXT_ES256), True),
    "exp-within-leeway": Case(lambda: token(exp=NOW - 30), True),
    "nbf-within-leeway": Case(lambda: token(nbf=NOW + 30), True),
    "iat-within-leeway": Case(lambda: token(iat=NOW + 30, nbf=DROP), True),
    "exp-fractional": Case(lambda: token(exp=NOW + 0.5), True),
    "aud-list-with-ours": Case(lambda: token(aud=["https://other.example", AUDIENCE]), True),
    "jku-ignored": Case(
        lambda: sign(header(jku="http://127.0.0.1:9/jwks.json"), claims(), OUR_ES256), True
    ),
    "x5u-ignored": Case(
        lambda: sign(header(x5u="https://attacker.example/x.pem"), claims(), OUR_ES256), True
    ),
    # ----------------------------------------------- RFC 7519 time claims, J8
    "expired-beyond-leeway": Case(lambda: token(exp=NOW - 31), False, R.TOKEN_EXPIRED),
    "nbf-beyond-leeway": Case(lambda: token(nbf=NOW + 31), False, R.TOKEN_NOT_YET_VALID),
    "iat-beyond-leeway": Case(
        lambda: token(iat=NOW + 31, nbf=DROP), False, R.TOKEN_ISSUED_IN_FUTURE
    ),
    "exp-string": Case(lambda: token(exp=str(NOW + 300)), False, R.TOKEN_CLAIM_INVALID),
    "exp-bool": Case(
        lambda: sign(header(), claims(exp=True), OUR_ES256), False, R.TOKEN_CLAIM_INVALID
    ),
    "exp-negative": Case(lambda: token(exp=-1), False, R.TOKEN_CLAIM_INVALID),
    "exp-null": Case(
        lambda: sign(header(), claims(exp=None), OUR_ES256), False, R.TOKEN_CLAIM_INVALID
    ),
    "exp-beyond-2**53": Case(lambda: token(exp=2**53), False, R.TOKEN_CLAIM_INVALID),
    "exp-1e309": Case(
        lambda: _raw_payload(compact_json(claims(exp=0)).replace(b'"exp":0', b'"exp":1e309')),
        False,
        R.TOKEN_MALFORMED,
    ),
    "nbf-string": Case(lambda: token(nbf=str(NOW)), False, R.TOKEN_CLAIM_INVALID),
    "iat-list": Case(lambda: token(iat=[NOW]), False, R.TOKEN_CLAIM_INVALID),
    # ------------------------------------------ RFC 8725 §3.8 / §3.9, J9
    "iss-trailing-slash": Case(lambda: token(iss=ISSUER + "/"), False, R.TOKEN_ISSUER_MISMATCH),
    "iss-prefix": Case(lambda: token(iss=ISSUER[:-1]), False, R.TOKEN_ISSUER_MISMATCH),
    "iss-list": Case(lambda: sign(header(), claims(iss=[ISSUER]), OUR_ES256), False),
    "iss-missing": Case(lambda: token(iss=DROP), False),
    "aud-suffix": Case(lambda: token(aud=AUDIENCE + ".evil"), False, own=False),
    "aud-prefix": Case(lambda: token(aud=AUDIENCE[:-1]), False, own=False),
    "aud-list-without-ours": Case(lambda: token(aud=["https://other.example"]), False, own=False),
    "aud-empty-list": Case(lambda: token(aud=[]), False, own=False),
    "aud-number": Case(lambda: sign(header(), claims(aud=5), OUR_ES256), False, own=False),
    "aud-missing": Case(lambda: token(aud=DROP), False, own=False),
    # -------------------------------------------- RFC 8725 §3.1, J1-J3
    "alg-none-empty-signature": Case(lambda: _alg_none(""), False),
    "alg-none-stolen-signature": Case(
        lambda: _alg_none(token().split(".")[2]), False, R.TOKEN_ALGORITHM_NOT_ALLOWED
    ),
    "hs256-keyed-with-our-pem": Case(_hs256_with_our_pem, False, R.TOKEN_ALGORITHM_NOT_ALLOWED),
    "es384-header-on-es256-key": Case(
        lambda: sign(header(alg="ES384"), claims(), OUR_ES256),
        False,
        R.TOKEN_ALGORITHM_NOT_ALLOWED,
    ),
    "eddsa-not-configured": Case(lambda: token(OUR_ED25519), False, R.TOKEN_ALGORITHM_NOT_ALLOWED),
    # ------------------------------------------- RFC 8725 §3.10, J4-J6
    "attacker-key-our-kid": Case(
        lambda: sign(header(OUR_ES256), claims(), ATTACKER_ES256),
        False,
        R.TOKEN_SIGNATURE_INVALID,
    ),
    "unknown-kid": Case(lambda: token(ATTACKER_ES256), False, R.TOKEN_KEY_UNKNOWN),
    "kid-missing": Case(
        lambda: sign(header(kid=DROP), claims(), OUR_ES256), False, R.TOKEN_KEY_UNKNOWN
    ),
    "kid-null": Case(lambda: sign(header(kid=None), claims(), OUR_ES256), False),
    "kid-number": Case(lambda: sign(header(kid=7), claims(), OUR_ES256), False, R.TOKEN_MALFORMED),
    "embedded-attacker-jwk": Case(
        lambda: sign(header(OUR_ES256, jwk=ATTACKER_ES256.jwk), claims(), ATTACKER_ES256),
        False,
        R.TOKEN_SIGNATURE_INVALID,
    ),
    "jku-to-attacker-keys": Case(
        lambda: sign(
            header(ATTACKER_ES256, jku="http://127.0.0.1:9/jwks.json"), claims(), ATTACKER_ES256
        ),
        False,
        R.TOKEN_KEY_UNKNOWN,
    ),
    # --------------------------------------------- RFC 7515 §4.1.11, J7
    "crit-unknown": Case(
        lambda: sign(header(crit=["exp-ext"], **{"exp-ext": 1}), claims(), OUR_ES256),
        False,
        R.TOKEN_MALFORMED,
    ),
    "crit-empty": Case(
        lambda: sign(header(crit=[]), claims(), OUR_ES256), False, R.TOKEN_MALFORMED
    ),
    "b64-false": Case(
        lambda: sign(header(b64=False), claims(), OUR_ES256), False, R.TOKEN_MALFORMED
    ),
    "b64-true": Case(lambda: sign(header(b64=True), claims(), OUR_ES256), False, R.TOKEN_MALFORMED),
    "zip": Case(lambda: sign(header(zip="DEF"), claims(), OUR_ES256), False, R.TOKEN_MALFORMED),
    "enc": Case(lambda: sign(header(enc="A256GCM"), claims(), OUR_ES256), False, R.TOKEN_MALFORMED),
    # ------------------------------------------- RFC 8725 §2.6 / §3.7, J12
    "duplicate-header-alg": Case(
        lambda: sign(compact_json(header())[:-1] + b',"alg":"none"}', claims(), OUR_ES256),
        False,
        R.TOKEN_MALFORMED,
    ),
    "duplicate-payload-sub": Case(
        lambda: _raw_payload(compact_json(claims())[:-1] + b',"sub":"orgs/x/users/admin"}'),
        False,
        R.TOKEN_MALFORMED,
    ),
    "payload-nan": Case(
        lambda: _raw_payload(compact_json(claims())[:-1] + b',"x":NaN}'), False, R.TOKEN_MALFORMED
    ),
    "payload-not-utf8": Case(
        lambda: _raw_payload(compact_json(claims(jti="@@")).replace(b"@@", b"\xff\xfe")),
        False,
        R.TOKEN_MALFORMED,
    ),
    "non-canonical-payload-bits": Case(_non_canonical_bits, False, R.TOKEN_MALFORMED),
    "oversize": Case(lambda: token(pad="x" * 20 * 1024), False, R.TOKEN_MALFORMED),
    **{
        f"malformed-{name}": Case(lambda name=name: _malformed(name), False, R.TOKEN_MALFORMED)
        for name in (
            "junk",
            "two-segments",
            "four-segments",
            "padding",
            "standard-alphabet",
            "leading-space",
            "trailing-newline",
            "json-serialization",
            "non-ascii",
            "empty-payload",
        )
    },
    # ------------------------------------------- RFC 7518 §3.4, J13
    **{
        f"signature-{name}": Case(
            lambda name=name: _signature_edge(name), False, R.TOKEN_SIGNATURE_INVALID
        )
        for name in ("zeros", "r=n", "s=n", "s=0", "der", "truncated", "extended")
    },
}

ENTRY_POINTS = ("sdk", "server-own", "server-external")
PARAMS = [
    pytest.param(entry, name, id=f"{entry}-{name}")
    for name, case in CASES.items()
    for entry in ENTRY_POINTS
    if case.own or entry != "server-own"
]


@pytest.mark.parametrize(("entry", "name"), PARAMS)
async def test_every_entry_point_agrees(entry: str, name: str) -> None:
    case = CASES[name]
    outcome = await _outcome(entry, case.build())
    if case.accepted:
        assert outcome is None, f"{entry} refused a token the core accepts: {outcome}"
        return
    assert outcome is not None, f"{entry} accepted a token the core refuses"
    if case.reason is not None and entry != "server-external":
        assert outcome == case.reason


def test_the_cases_cover_both_verdicts_and_every_entry_point() -> None:
    assert {case.accepted for case in CASES.values()} == {True, False}
    assert {entry for entry, _ in (p.values for p in PARAMS)} == set(ENTRY_POINTS)
