"""Attacks on the token endpoint: RFC 8693 exchange, RFC 7523 private_key_jwt,
RFC 7662 introspection and RFC 7009 revocation (perf_security.md §B2.1, §B2.2).

Every refused request must fail with the precise typed error and leave every
table exactly as it was: no issued_tokens row, no used_assertions row.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import io
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt
import pytest
from agentauth import (
    InvalidArgumentError,
    ResourceExhaustedError,
    UnauthenticatedError,
)
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import trust_policy_pb2 as trust
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from sqlalchemy import text

from control_plane.sandbox import KubernetesIssuer
from control_plane.sandbox.kubernetes_issuer import DISCOVERY_PATH, JWKS_PATH
from control_plane.storage.db import Database
from tests.api.exchange_helpers import (
    ACCESS_TOKEN_TYPE,
    AUDIENCE,
    JWT_BEARER,
    JWT_TYPE,
    MINTED_CLAIMS,
    NAMESPACE,
    SA_NAME,
    SCOPES,
    TOKEN_EXCHANGE,
    World,
    assert_oauth_error,
    b64,
    compact,
    ec_key,
    k8s_policy,
    open_world,
    post_form,
    rsa_key,
    rsa_private_key_of,
    setup_agent,
    sign_raw,
)

FORM = "application/x-www-form-urlencoded"
# RFC 8693 §2.2.2: an invalid or unacceptable subject_token / actor_token is
# invalid_request. Over gRPC it is UNAUTHENTICATED (a malformed request is
# INVALID_ARGUMENT); over HTTP only its one fixed description tells it apart.
UNACCEPTABLE = (UnauthenticatedError, "INVALID_REQUEST")
UNACCEPTABLE_DESCRIPTION = "the subject_token or actor_token is not acceptable"
UNACCEPTABLE_BODY = {"error": "invalid_request", "error_description": UNACCEPTABLE_DESCRIPTION}
INVALID_REQUEST = (InvalidArgumentError, "INVALID_REQUEST")
INVALID_CLIENT = (UnauthenticatedError, "INVALID_CLIENT")


@pytest.fixture
async def world(harness: Any) -> AsyncIterator[World]:
    async with KubernetesIssuer() as k8s:
        yield await open_world(harness, k8s)


async def test_control_crafted_tokens_are_admitted(world: World) -> None:
    """Every attack below mutates one thing of a token built like these, which is admitted:
    so a refusal is caused by the mutation, not by the scaffolding."""
    signed = world.k8s.sign(world.claims())
    raw = sign_raw(
        world.k8s, json.dumps(world.header()).encode(), json.dumps(world.claims()).encode()
    )
    for token in (world.workload(), signed, raw):
        resp = await world.exchange(subject_token=token)
        assert resp.scope == " ".join(SCOPES) and resp.issued_token_type == ACCESS_TOKEN_TYPE
    status, headers, body = await post_form(world.token_url, world.form(subject_token=signed))
    assert status == 200 and headers["Cache-Control"] == "no-store", body
    assert len((await world.harness.snapshot())["issued_tokens"]) == 4


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def _unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


async def _served_jwks(k8s: KubernetesIssuer) -> tuple[bytes, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(k8s.url + JWKS_PATH) as r:
            body = await r.read()
    return body, json.loads(body)


def _public_key_forms(jwk_: dict[str, Any], served: bytes) -> dict[str, bytes]:
    """Every spelling of a public key an HMAC-confusion attacker would try (CVE-2015-9235)."""
    public = jwt.PyJWK(jwk_).key
    pem, der = serialization.Encoding.PEM, serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    forms = {
        "pem-spki": public.public_bytes(pem, spki),
        "der-spki": public.public_bytes(der, spki),
        "openssh": public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "jwk-json": json.dumps(jwk_).encode(),
        "jwk-json-compact": json.dumps(jwk_, separators=(",", ":")).encode(),
        "jwks-as-served": served,
    }
    if jwk_["kty"] == "RSA":
        pkcs1 = serialization.PublicFormat.PKCS1
        forms["pem-pkcs1"] = public.public_bytes(pem, pkcs1)
        forms["der-pkcs1"] = public.public_bytes(der, pkcs1)
        forms["raw-n-e"] = _unb64(jwk_["n"]) + _unb64(jwk_["e"])
        forms["raw-n"] = _unb64(jwk_["n"])
    else:
        forms["raw-x-y"] = _unb64(jwk_["x"]) + _unb64(jwk_["y"])
        forms["uncompressed-point"] = public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    return forms


RSA_KEY_FORMS = [
    "pem-spki", "pem-pkcs1", "der-spki", "der-pkcs1", "openssh", "jwk-json",
    "jwk-json-compact", "jwks-as-served", "raw-n-e", "raw-n",
]  # fmt: skip
EC_KEY_FORMS = [
    "pem-spki", "der-spki", "openssh", "jwk-json", "jwk-json-compact", "raw-x-y",
    "uncompressed-point",
]  # fmt: skip


# --------------------------------------------------------------------------
# RFC 8725 §3.1: algorithms come from the policy, never from the token
# --------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["empty", "junk", "issuer-signed"])
async def test_rfc8725_3_1_alg_none_spellings(world: World, alg: str, signature: str) -> None:
    header, claims = world.header(alg=alg), world.claims()
    if signature == "issuer-signed":  # a real RS256 signature under an "alg: none" header
        token = world.k8s.sign(claims, headers={"alg": alg})
    else:
        token = compact(header, claims, b"" if signature == "empty" else b"\x00" * 32)
    assert jwt.get_unverified_header(token)["alg"] == alg
    await world.refused(*UNACCEPTABLE, subject_token=token)


@pytest.mark.parametrize("form", RSA_KEY_FORMS)
async def test_rfc8725_3_1_cve_2015_9235_hs256_macd_with_issuer_public_key(
    world: World, form: str
) -> None:
    served, jwks = await _served_jwks(world.k8s)
    secret = _public_key_forms(jwks["keys"][0], served)[form]
    token = _hs256(world.header(alg="HS256"), world.claims(), secret)
    await world.refused(*UNACCEPTABLE, subject_token=token)


@pytest.mark.parametrize("alg", ["HS256", "HS512", "none", "ES256K"])
async def test_rfc8725_3_1_policy_refuses_hmac_and_none_algorithms(harness: Any, alg: str) -> None:
    org, admin, _ = await harness.new_org()
    async with KubernetesIssuer() as k8s:
        with pytest.raises(InvalidArgumentError) as err:
            await setup_agent(admin, org, algorithms=[alg], **k8s_policy(k8s))
    assert err.value.metadata["field"] == "trust_policy.algorithms"


async def test_pyjwt_cve_2026_48523_header_alg_differs_from_key_alg_pss(harness: Any) -> None:
    """A genuine PS256 signature by the issuer's RS256 key: the JWK pins RS256."""
    async with KubernetesIssuer() as k8s:
        w = await open_world(harness, k8s, algorithms=["RS256", "PS256"])
        header = w.header(alg="PS256")
        signing_input = f"{b64(header)}.{b64(w.claims())}".encode()
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        sig = rsa_private_key_of(k8s).sign(signing_input, pss, hashes.SHA256())
        token = f"{signing_input.decode()}.{b64(sig)}"
        # The signature really is PS256: only the key's pinned alg stops it.
        jwt.decode(token, jwt.PyJWK(k8s.jwks()["keys"][0]).key, algorithms=["PS256"],
                   audience=AUDIENCE)  # fmt: skip
        await w.refused(*UNACCEPTABLE, subject_token=token)


@pytest.mark.parametrize(
    ("policy_algs", "header_alg"),
    [
        (["RS256", "PS256"], "PS256"),  # PKCS#1 v1.5 signature relabelled PS256
        (["RS256", "ES256"], "ES256"),  # RSA key, EC algorithm
        (["RS256", "RS512"], "RS512"),  # same family, other hash
        (["ES256"], "RS256"),  # a policy that allows only ES256 gets RS256
    ],
    ids=[
        "PS256-on-RS256-key",
        "ES256-on-RS256-key",
        "RS512-on-RS256-key",
        "RS256-under-ES256-only",
    ],
)
async def test_rfc8725_3_1_header_alg_not_the_keys_alg(
    harness: Any, policy_algs: list[str], header_alg: str
) -> None:
    async with KubernetesIssuer() as k8s:
        w = await open_world(harness, k8s, algorithms=policy_algs)
        token = k8s.sign(w.claims(), headers={"alg": header_alg})
        await w.refused(*UNACCEPTABLE, subject_token=token)


async def test_rfc8725_3_1_es256_only_policy_refuses_valid_rs256_token(harness: Any) -> None:
    async with KubernetesIssuer() as k8s:
        w = await open_world(harness, k8s, algorithms=["ES256"])
        await w.refused(*UNACCEPTABLE, subject_token=w.workload())


# --------------------------------------------------------------------------
# RFC 8725 §2.9 / §3.10: kid and key-locating headers
# --------------------------------------------------------------------------

EVIL_KIDS = {
    "path-traversal": "../../../../dev/null",
    "sql-injection": "' UNION SELECT 'x'--",
    "ten-kilobytes": "k" * 10 * 1024,
    "nul-byte": "kid\x00../../etc/passwd",
    "unicode": "ключ-🔑-\u202e",
    "number": 0,
    "null": None,
    "list": ["a"],
}


@pytest.mark.parametrize("kid", list(EVIL_KIDS))
async def test_rfc8725_2_9_kid_injection(world: World, kid: str) -> None:
    await world.exchange(subject_token=world.workload())  # warm: keys fetched once
    fetched = world.jwks_fetches
    header = {"alg": "RS256", "kid": EVIL_KIDS[kid], "typ": "JWT"}  # signed by the real key
    token = sign_raw(world.k8s, json.dumps(header).encode(), json.dumps(world.claims()).encode())
    await world.refused(*UNACCEPTABLE, subject_token=token)
    assert world.jwks_fetches - fetched <= 1


def _advance(cache: Any, seconds: float) -> None:
    base = cache._clock  # test-only: IssuerKeyCache takes an injectable monotonic clock
    cache._clock = lambda: base() + seconds


async def test_pyjwt_cve_2026_48524_unknown_kid_storm_refetches_jwks_at_most_once(
    world: World,
) -> None:
    await world.exchange(subject_token=world.workload())
    _advance(world.harness.servers.tokens.issuer_keys, 61)  # the 60 s interval has passed
    fetched = world.jwks_fetches
    storm = [world.k8s.sign(world.claims(), headers={"kid": f"unknown-{i}"}) for i in range(50)]
    before = await world.harness.snapshot()
    results = await asyncio.gather(
        *(world.exchange(subject_token=t) for t in storm), return_exceptions=True
    )
    assert all(isinstance(r, UnauthenticatedError) and r.reason == "INVALID_REQUEST" for r in results)
    # Sequential stragglers within the same interval fetch nothing more.
    for t in storm[:10]:
        await world.refused(*UNACCEPTABLE, subject_token=t)
    assert world.jwks_fetches - fetched == 1
    assert await world.harness.snapshot() == before


async def test_pyjwt_cve_2026_48524_cold_cache_storm_fetches_jwks_once(world: World) -> None:
    storm = [world.k8s.sign(world.claims(), headers={"kid": f"unknown-{i}"}) for i in range(50)]
    results = await asyncio.gather(
        *(world.exchange(subject_token=t) for t in storm), return_exceptions=True
    )
    assert all(isinstance(r, UnauthenticatedError) and r.reason == "INVALID_REQUEST" for r in results)
    assert world.k8s.requests[DISCOVERY_PATH] == 1
    assert world.jwks_fetches == 1


async def test_pyjwt_cve_2026_48524_issuer_down_keeps_last_good_keys(world: World) -> None:
    await world.exchange(subject_token=world.workload())
    world.k8s.fail_next_requests(100)
    fetched = sum(world.k8s.requests.values())
    for _ in range(5):
        assert (await world.exchange(subject_token=world.workload())).access_token
    assert sum(world.k8s.requests.values()) == fetched  # within the TTL: no fetch at all


@pytest.mark.parametrize("cache", ["expired-last-good-set", "never-fetched"])
async def test_pyjwt_cve_2026_48524_issuer_down_refetch_is_rate_limited(
    world: World, cache: str
) -> None:
    if cache == "expired-last-good-set":
        await world.exchange(subject_token=world.workload())
        _advance(world.harness.servers.tokens.issuer_keys, 301)  # past the 300 s TTL
    world.k8s.fail_next_requests(1000)
    attempts = world.k8s.requests[DISCOVERY_PATH]
    for _ in range(20):
        try:
            await world.exchange(subject_token=world.workload())
        except UnauthenticatedError as err:  # never fetched: nothing to verify with
            assert cache == "never-fetched" and err.reason == "INVALID_REQUEST"
    assert world.k8s.requests[DISCOVERY_PATH] - attempts <= 1


@contextlib.asynccontextmanager
async def _attacker_server(jwks: dict[str, Any]) -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback server an attacker controls; records every request it gets."""
    hits: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response(jwks)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", hits
    finally:
        await runner.cleanup()


def _attacker_rsa() -> tuple[Any, dict[str, Any]]:
    return rsa_key("attacker-key")


@pytest.mark.parametrize(
    ("members", "kid"),
    [
        (("jku",), "attacker"),
        (("jku",), "trusted"),
        (("x5u",), "attacker"),
        (("x5u",), "trusted"),
        (("jku", "x5u"), "none"),
    ],
    ids=[
        "jku-attacker-kid",
        "jku-trusted-kid",
        "x5u-attacker-kid",
        "x5u-trusted-kid",
        "both-no-kid",
    ],
)
async def test_rfc8725_3_10_jku_and_x5u_are_never_fetched(
    world: World, members: tuple[str, ...], kid: str
) -> None:
    key, jwk_ = _attacker_rsa()
    async with _attacker_server({"keys": [jwk_]}) as (url, hits):
        headers: dict[str, Any] = {"typ": "JWT"}
        if kid != "none":
            headers["kid"] = jwk_["kid"] if kid == "attacker" else world.k8s.key_id
        for m in members:
            headers[m] = f"{url}/{m}/keys.json"
        token = jwt.encode(world.claims(), key, algorithm="RS256", headers=headers)
        await world.refused(*UNACCEPTABLE, subject_token=token)
        assert hits == []


def _self_signed_x5c(key: Any) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


@pytest.mark.parametrize("variant", ["jwk-attacker-kid", "jwk-trusted-kid", "jwk-no-kid", "x5c"])
async def test_cve_2018_0114_embedded_jwk_and_x5c_are_ignored(world: World, variant: str) -> None:
    key, jwk_ = _attacker_rsa()
    headers: dict[str, Any] = {"typ": "JWT"}
    if variant == "x5c":
        headers["x5c"] = [_self_signed_x5c(key)]
        headers["kid"] = world.k8s.key_id
    else:
        headers["jwk"] = {k: jwk_[k] for k in ("kty", "n", "e", "kid")}
        if variant == "jwk-attacker-kid":
            headers["kid"] = jwk_["kid"]
        elif variant == "jwk-trusted-kid":
            headers["kid"] = world.k8s.key_id
    token = jwt.encode(world.claims(), key, algorithm="RS256", headers=headers)
    await world.refused(*UNACCEPTABLE, subject_token=token)


# --------------------------------------------------------------------------
# RFC 7515 §4.1.11: crit
# --------------------------------------------------------------------------

CRIT_HEADERS = {
    "unknown-extension": {"crit": ["exp-ext"], "exp-ext": 1},
    "empty-list": {"crit": []},
    "names-registered-exp": {"crit": ["exp"], "exp": 1},
    "names-registered-alg": {"crit": ["alg"]},
    "b64-false": {"crit": ["b64"], "b64": False},
    "not-a-list": {"crit": "exp-ext", "exp-ext": 1},
}


@pytest.mark.parametrize("case", list(CRIT_HEADERS))
async def test_rfc7515_4_1_11_crit(world: World, case: str) -> None:
    token = world.k8s.sign(world.claims(), headers=CRIT_HEADERS[case])
    await world.refused(*UNACCEPTABLE, subject_token=token)


async def test_rfc7797_b64_false_without_crit(world: World) -> None:
    token = world.k8s.sign(world.claims(), headers={"b64": False})
    await world.refused(*UNACCEPTABLE, subject_token=token)


# --------------------------------------------------------------------------
# RFC 7519 §4.1.4-4.1.6: time claims are NumericDates, checked with 30 s leeway
# --------------------------------------------------------------------------


def _time_case(w: World, case: str) -> str:
    now = int(time.time())
    sign = w.k8s.sign
    if case == "expired-beyond-leeway":
        return sign(w.claims(exp=now - 45, iat=now - 700, nbf=now - 700))
    if case == "nbf-in-the-future":
        return sign(w.claims(nbf=now + 120))
    if case == "iat-in-the-future":
        return sign(w.claims(iat=now + 120))
    if case == "missing-exp":
        return sign(w.claims(exp=None))
    if case == "exp-string":
        return sign(w.claims(exp="9999999999"))
    if case == "exp-bool":
        return sign(w.claims(exp=True))
    if case == "exp-negative":
        return sign(w.claims(exp=-1))
    if case == "nbf-string":
        return sign(w.claims(nbf="0"))
    if case == "iat-list":
        return sign(w.claims(iat=[now]))
    if case in ("exp-1e309", "exp-null", "exp-minus-1e309", "nbf-minus-1e309"):
        member, literal = {
            "exp-1e309": ("exp", "1e309"),
            "exp-null": ("exp", "null"),
            "exp-minus-1e309": ("exp", "-1e309"),
            "nbf-minus-1e309": ("nbf", "-1e309"),
        }[case]
        payload = json.dumps(w.claims(**{member: "@@"})).replace('"@@"', literal)
        return sign_raw(w.k8s, json.dumps(w.header()).encode(), payload.encode())
    raise AssertionError(case)


TIME_CASES = [
    "expired-beyond-leeway", "nbf-in-the-future", "iat-in-the-future", "missing-exp",
    "exp-string", "exp-bool", "exp-negative", "exp-1e309", "exp-minus-1e309", "exp-null",
    "nbf-string", "nbf-minus-1e309", "iat-list",
]  # fmt: skip


@pytest.mark.parametrize("case", TIME_CASES)
async def test_rfc7519_4_1_4_time_claims(world: World, case: str) -> None:
    await world.refused(*UNACCEPTABLE, subject_token=_time_case(world, case))


async def test_rfc7519_4_1_4_expiry_within_leeway_is_accepted_and_caps_the_minted_token(
    world: World,
) -> None:
    """Control: the leeway is 30 s, and the minted token never outlives its subject token."""
    now = int(time.time())
    resp = await world.exchange(subject_token=world.k8s.sign(world.claims(exp=now + 20)))
    claims = jwt.decode(resp.access_token, options={"verify_signature": False})
    assert claims["exp"] <= now + 20 and resp.expires_in <= 20


@pytest.mark.parametrize("transport", ["grpc", "http"])
@pytest.mark.parametrize("case", ["expired-within-leeway", "under-one-second-left"])
async def test_rfc7519_4_1_4_subject_token_with_no_life_left(
    world: World, case: str, transport: str
) -> None:
    now = int(time.time())
    exp: float = now - 10 if case == "expired-within-leeway" else now + 0.4
    token = world.k8s.sign(world.claims(exp=exp, iat=now - 60, nbf=now - 60))
    if transport == "grpc":
        await world.refused(*UNACCEPTABLE, subject_token=token)
    else:
        body = await world.http_refused(400, "invalid_request", world.form(subject_token=token))
        assert body == UNACCEPTABLE_BODY


@pytest.mark.parametrize("exp", [10**12, 1e300], ids=["year-33658", "1e300"])
async def test_rfc7519_4_1_4_subject_token_exp_beyond_year_9999(world: World, exp: float) -> None:
    token = world.k8s.sign(world.claims(exp=exp))
    before = await world.harness.snapshot()
    try:
        resp = await world.exchange(subject_token=token)
    except UnauthenticatedError as err:  # refusing is acceptable too; failing is not
        assert err.reason == "INVALID_REQUEST"
        assert await world.harness.snapshot() == before
    else:
        assert 0 < resp.expires_in <= 300


# --------------------------------------------------------------------------
# RFC 8725 §3.8 / §3.9: issuer and audience are matched exactly
# --------------------------------------------------------------------------

AUDIENCES: dict[str, Any] = {
    "suffix": "agentauth.evil",
    "prefix": "agentaut",
    "other-list": ["other"],
    "trailing-space": "agentauth ",
    "case": "AgentAuth",
    "superstring-in-list": ["agentauthx", "xagentauth"],
    "empty-list": [],
    "missing": None,
    "object": {"agentauth": True},
}


@pytest.mark.parametrize("case", list(AUDIENCES))
async def test_rfc8725_3_9_audience_near_matches(world: World, case: str) -> None:
    claims = world.claims(aud=AUDIENCES[case])
    if case == "empty-list":
        claims["aud"] = []
    await world.refused(*UNACCEPTABLE, subject_token=world.k8s.sign(claims))


def _issuer_variant(issuer: str, case: str) -> Any:
    host_port = issuer.removeprefix("http://")
    return {
        "trailing-slash": issuer + "/",
        "prefix": issuer[:-1],
        "suffix-path": issuer + "/evil",
        "https-scheme": "https://" + host_port,
        "upper-case-scheme": "HTTP://" + host_port,
        "localhost-spelling": "http://localhost:" + host_port.split(":")[1],
        "list": [issuer],
        "missing": None,
    }[case]


ISSUER_CASES = [
    "trailing-slash", "prefix", "suffix-path", "https-scheme", "upper-case-scheme",
    "localhost-spelling", "list", "missing",
]  # fmt: skip


@pytest.mark.parametrize("case", ISSUER_CASES)
async def test_rfc8725_3_8_issuer_near_matches(world: World, case: str) -> None:
    claims = world.claims(iss=_issuer_variant(world.k8s.issuer, case))
    await world.refused(*UNACCEPTABLE, subject_token=world.k8s.sign(claims))


# --------------------------------------------------------------------------
# RFC 8725 §2.8 / §3.11 / §3.12: cross-JWT confusion; RFC 8693 §3 token types
# --------------------------------------------------------------------------


async def test_rfc8725_2_8_our_access_token_as_subject_token(world: World) -> None:
    ours = (await world.exchange(subject_token=world.workload())).access_token
    assert jwt.get_unverified_header(ours)["typ"] == "at+jwt"
    await world.refused(*UNACCEPTABLE, subject_token=ours)


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt"])
async def test_rfc9068_2_1_access_token_typ_from_trusted_issuer_is_not_a_workload_identity(
    world: World, typ: str
) -> None:
    await world.refused(
        *UNACCEPTABLE, subject_token=world.k8s.sign(world.claims(), headers={"typ": typ})
    )


@pytest.mark.parametrize("case", ["aud-is-the-client", "aud-ours-claims-missing"])
async def test_rfc8725_3_12_id_token_like_jwt_from_trusted_issuer(world: World, case: str) -> None:
    now = int(time.time())
    id_token = {
        "iss": world.k8s.issuer,
        "sub": "user-8d1c",
        "aud": world.agent.name if case == "aud-is-the-client" else AUDIENCE,
        "azp": world.agent.name,
        "nonce": "n-0S6_WzA2Mj",
        "auth_time": now - 5,
        "iat": now,
        "exp": now + 600,
        "email": "admin@example.com",
    }
    await world.refused(*UNACCEPTABLE, subject_token=world.k8s.sign(id_token))


@pytest.mark.parametrize(
    "subject_token_type",
    [
        ACCESS_TOKEN_TYPE,
        "urn:ietf:params:oauth:token-type:id_token",
        "urn:ietf:params:oauth:token-type:refresh_token",
        "urn:ietf:params:oauth:token-type:saml2",
        "URN:IETF:PARAMS:OAUTH:TOKEN-TYPE:JWT",
        JWT_TYPE + " ",
        "",
    ],
    ids=[
        "access_token",
        "id_token",
        "refresh_token",
        "saml2",
        "upper-case-jwt",
        "jwt-trailing-space",
        "missing",
    ],
)
async def test_rfc8693_3_subject_token_type_lies(world: World, subject_token_type: str) -> None:
    await world.refused(
        *INVALID_REQUEST, subject_token=world.workload(), subject_token_type=subject_token_type
    )


@pytest.mark.parametrize(
    "opaque",
    ["rt_" + "A" * 43, "8xLOxBtZp8", "2YotnFZFEjr1zCsicMWpAA", "aa_platform_deadbeef"],
    ids=["rt-prefixed", "short", "rfc6749-example", "api-key-like"],
)
async def test_rfc8693_2_1_refresh_token_like_opaque_subject_token(
    world: World, opaque: str
) -> None:
    await world.refused(*UNACCEPTABLE, subject_token=opaque)


@pytest.mark.parametrize(
    "requested",
    [
        "urn:ietf:params:oauth:token-type:refresh_token",
        "urn:ietf:params:oauth:token-type:id_token",
        JWT_TYPE,
        "urn:ietf:params:oauth:token-type:saml2",
    ],
    ids=["refresh_token", "id_token", "jwt", "saml2"],
)
async def test_rfc8693_2_1_requested_token_type_not_access_token(
    world: World, requested: str
) -> None:
    await world.refused(
        *INVALID_REQUEST, subject_token=world.workload(), requested_token_type=requested
    )


# --------------------------------------------------------------------------
# RFC 7515 §7.1 / RFC 8725 §2.6 / §3.7: one encoding per token
# --------------------------------------------------------------------------


def _non_canonical_last_char(segment: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(segment) % 4 in (2, 3), "needs unused trailing bits"
    flipped = alphabet[alphabet.index(segment[-1]) ^ 1]
    mutated = segment[:-1] + flipped
    assert _unb64(mutated) == _unb64(segment)  # same bytes, second encoding
    return mutated


def _malformed(token: str, case: str) -> str:
    h, p, s = token.split(".")
    std = s.replace("-", "+").replace("_", "/")
    out = {
        "header-padding": f"{h}=.{p}.{s}",
        "payload-padding": f"{h}.{p}==.{s}",
        "signature-padding": f"{h}.{p}.{s}=",
        "standard-alphabet": f"{h}.{p}.{std}",
        "space-inside": f"{h[:8]} {h[8:]}.{p}.{s}",
        "newline-inside": f"{h}.{p[:20]}\n{p[20:]}.{s}",
        "leading-space": f" {token}",
        "trailing-newline": f"{token}\n",
        "two-segments": f"{h}.{p}",
        "four-segments": f"{token}.{s}",
        "five-segments-jwe-shape": f"{h}..{p}.{s}.{s[:22]}",
        "empty-header": f".{p}.{s}",
        "empty-payload": f"{h}..{s}",
        "empty-signature": f"{h}.{p}.",
        "json-serialization": json.dumps({"protected": h, "payload": p, "signature": s}),
        "junk": "!!!!.!!!!.!!!!",
        "non-canonical-trailing-bits": f"{h}.{p}.{_non_canonical_last_char(s)}",
        "bearer-prefix": f"Bearer {token}",
        "header-is-a-string": f"{b64(json.dumps('RS256'))}.{p}.{s}",
    }[case]
    assert out != token
    return out


MALFORMED = [
    "header-padding", "payload-padding", "signature-padding", "standard-alphabet",
    "space-inside", "newline-inside", "leading-space", "trailing-newline", "two-segments",
    "four-segments", "five-segments-jwe-shape", "empty-header", "empty-payload",
    "empty-signature", "json-serialization", "junk", "non-canonical-trailing-bits",
    "bearer-prefix", "header-is-a-string",
]  # fmt: skip


@pytest.mark.parametrize("case", MALFORMED)
async def test_rfc7515_7_1_malformed_compact_serialization(world: World, case: str) -> None:
    token = world.workload()
    if case == "standard-alphabet":
        assert any(c in token.split(".")[2] for c in "-_")
    await world.refused(*UNACCEPTABLE, subject_token=_malformed(token, case))


DUPLICATES = {
    # The attack tokens, kept as literals; KID / ISS / EXP are filled in per run.
    "header-alg": (b'{"alg":"none","alg":"RS256","kid":"KID","typ":"JWT"}', None),
    "header-kid": (b'{"alg":"RS256","kid":"other","kid":"KID","typ":"JWT"}', None),
    "payload-sub": (
        None,
        b'{"aud":["agentauth"],"exp":EXP,"iss":"ISS","sub":"a","sub":"system:serviceaccount:'
        b'billing:billing-agent","kubernetes.io":{"namespace":"billing","serviceaccount":'
        b'{"name":"billing-agent"}}}',
    ),
    "payload-nested-namespace": (
        None,
        b'{"aud":["agentauth"],"exp":EXP,"iss":"ISS","sub":"system:serviceaccount:billing:'
        b'billing-agent","kubernetes.io":{"namespace":"prod","namespace":"billing",'
        b'"serviceaccount":{"name":"billing-agent"}}}',
    ),
    "payload-exp": (
        None,
        b'{"aud":["agentauth"],"exp":1,"exp":EXP,"iss":"ISS","sub":"system:serviceaccount:'
        b'billing:billing-agent","kubernetes.io":{"namespace":"billing","serviceaccount":'
        b'{"name":"billing-agent"}}}',
    ),
}


def _fill(raw: bytes, w: World) -> bytes:
    return (
        raw.replace(b"KID", w.k8s.key_id.encode())
        .replace(b"ISS", w.k8s.issuer.encode())
        .replace(b"EXP", str(int(time.time()) + 600).encode())
    )


@pytest.mark.parametrize("case", list(DUPLICATES))
async def test_rfc8725_2_6_duplicate_json_members(world: World, case: str) -> None:
    header, payload = DUPLICATES[case]
    h = _fill(header, world) if header else json.dumps(world.header()).encode()
    p = _fill(payload, world) if payload else json.dumps(world.claims()).encode()
    # Control: with the duplicate removed (last one wins, as json.loads does) it is admitted.
    last_wins = sign_raw(world.k8s, json.dumps(json.loads(h)).encode(),
                         json.dumps(json.loads(p)).encode())  # fmt: skip
    if case != "header-alg":
        assert (await world.exchange(subject_token=last_wins)).access_token
    await world.refused(*UNACCEPTABLE, subject_token=sign_raw(world.k8s, h, p))


def _non_utf8(w: World, case: str) -> tuple[bytes, bytes]:
    header = json.dumps(w.header()).encode()
    claims = json.dumps(w.claims(jti="@@")).encode()
    if case == "invalid-byte-in-payload":
        return header, claims.replace(b"@@", b"\xff\xfe")
    if case == "overlong-slash-in-payload":
        return header, claims.replace(b"@@", b"\xc0\xaf")
    if case == "latin1-in-header":
        return json.dumps({**w.header(), "x": "@@"}).encode().replace(b"@@", b"caf\xe9"), claims
    if case == "utf16-payload":
        return header, claims.decode().encode("utf-16")
    if case == "bom-prefixed-payload":
        return header, b"\xef\xbb\xbf" + claims
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    ["invalid-byte-in-payload", "overlong-slash-in-payload", "latin1-in-header", "utf16-payload",
     "bom-prefixed-payload"],
)  # fmt: skip
async def test_rfc8725_3_7_non_utf8(world: World, case: str) -> None:
    await world.refused(*UNACCEPTABLE, subject_token=sign_raw(world.k8s, *_non_utf8(world, case)))


# --------------------------------------------------------------------------
# Size: RFC 8693 §5 defines no limit, so ours (16 KiB) applies before parsing
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["junk", "validly-signed"])
async def test_rfc8693_5_oversize_subject_token_rejected_before_parsing(
    world: World, case: str
) -> None:
    if case == "junk":
        token = "a" * 20 * 1024
    else:
        token = world.k8s.sign(world.claims(pad="x" * 20 * 1024))
    await world.refused(*INVALID_REQUEST, subject_token=token)
    assert sum(world.k8s.requests.values()) == 0  # never parsed far enough to look up keys


async def test_rfc8693_5_ten_megabyte_subject_token_over_grpc(world: World) -> None:
    before = await world.harness.snapshot()
    with pytest.raises(ResourceExhaustedError) as err:
        await world.exchange(subject_token="a" * 10 * 1024 * 1024)
    assert err.value.reason == "RESOURCE_EXHAUSTED"
    assert await world.harness.snapshot() == before


async def test_rfc8693_5_oversize_bodies_over_http(world: World) -> None:
    body = await world.http_refused(
        400, "invalid_request", world.form(subject_token="a" * 20 * 1024)
    )
    assert body["error_description"]
    # Past the 64 KiB body cap the transport answers 413 before the form is read.
    before = await world.harness.snapshot()
    big = urlencode(world.form(subject_token="a" * 10 * 1024 * 1024)).encode()
    status, headers, body = await post_form(
        world.token_url, io.BytesIO(big), headers={"Content-Type": FORM}
    )
    assert status == 413 and headers["Cache-Control"] == "no-store"
    assert await world.harness.snapshot() == before


# --------------------------------------------------------------------------
# The trust policy pins the workload
# --------------------------------------------------------------------------


def _mismatch(w: World, case: str) -> str:
    if case == "wrong-namespace":
        return w.workload(namespace="prod")
    if case == "wrong-service-account-name":
        return w.workload(service_account="payroll-agent")
    if case == "both-wrong":
        return w.workload(namespace="prod", service_account="payroll-agent")
    if case == "private-claim-removed":
        return w.workload(extra_claims={"kubernetes.io": None})
    if case == "namespace-not-a-string":
        claims = w.claims()
        claims["kubernetes.io"]["namespace"] = [NAMESPACE]
        return w.k8s.sign(claims)
    if case == "claims-flattened-to-top-level":
        return w.k8s.sign(
            w.claims(**{"kubernetes.io": {"namespace": "prod"}, "namespace": NAMESPACE})
        )
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    ["wrong-namespace", "wrong-service-account-name", "both-wrong", "private-claim-removed",
     "namespace-not-a-string", "claims-flattened-to-top-level"],
)  # fmt: skip
async def test_trust_policy_claims_must_match(world: World, case: str) -> None:
    await world.refused(*UNACCEPTABLE, subject_token=_mismatch(world, case))


async def test_rfc8725_2_6_dotted_claim_name_cannot_shadow_nested_claim(world: World) -> None:
    claims = world.claims(**{
        "kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "payroll-agent"}},
        "kubernetes.io.namespace": NAMESPACE,
        "kubernetes.io.serviceaccount.name": SA_NAME,
    })  # fmt: skip
    await world.refused(*UNACCEPTABLE, subject_token=world.k8s.sign(claims))


# --------------------------------------------------------------------------
# RFC 8693 §2.1 organization; OWASP API1:2023 (BOLA): another org == no org
# --------------------------------------------------------------------------


def _error_shape(e: Any) -> tuple[Any, ...]:
    return type(e), e.code, e.reason, e.message, e.domain, e.metadata


async def test_owasp_api1_2023_other_org_is_identical_to_unknown_org(world: World) -> None:
    org_b, _, _ = await world.harness.new_org("B")
    token = world.workload()
    unknown = "orgs/" + secrets.token_hex(16)
    other = await world.refused(*UNACCEPTABLE, subject_token=token, organization=org_b)
    missing = await world.refused(*UNACCEPTABLE, subject_token=token, organization=unknown)
    assert _error_shape(other) == _error_shape(missing)
    # The same over HTTP: byte-identical RFC 6749 §5.2 bodies.
    b_other = await world.http_refused(
        400, "invalid_request", world.form(subject_token=token, organization=org_b)
    )
    b_missing = await world.http_refused(
        400, "invalid_request", world.form(subject_token=token, organization=unknown)
    )
    assert b_other == b_missing == UNACCEPTABLE_BODY


async def test_rfc6749_5_2_cross_org_client_id_is_an_invalid_request(world: World) -> None:
    """``organization`` and a ``client_id`` of another org contradict each other: a
    malformed request on every grant (one parser, services/grants/request.py), answered
    from the names alone, so an org that does not exist gets the very same answer."""
    org_b, b_admin, _ = await world.harness.new_org("B")
    agent_b, _, _ = await setup_agent(b_admin, org_b, **k8s_policy(world.k8s))
    other = await world.refused(
        *INVALID_REQUEST, subject_token=world.workload(), client_id=agent_b.name
    )
    ghost = f"orgs/{secrets.token_hex(16)}/agents/{secrets.token_hex(16)}"
    missing = await world.refused(*INVALID_REQUEST, subject_token=world.workload(), client_id=ghost)
    assert _error_shape(other) == _error_shape(missing)


# --------------------------------------------------------------------------
# RFC 8693 §4.1 / §4.4: act and may_act are built by the server, never taken
# --------------------------------------------------------------------------


async def test_rfc8693_4_1_caller_supplied_act_and_may_act_are_ignored(world: World) -> None:
    # actor_token is an RFC 8693 §2.1 parameter the endpoint reads (sub-delegation): an
    # attacker's actor token is refused there (test_rfc8693_chain_bad_input.py).
    extra = {
        "act": json.dumps({"sub": "orgs/x/serviceAccounts/admin"}),
        "may_act": json.dumps({"sub": "attacker"}),
        "sub": "orgs/x/serviceAccounts/admin",
        "org_id": "0" * 32,
        "cnf": json.dumps({"jkt": "x"}),
    }
    # The trusted issuer's own token carrying act/may_act is not copied either.
    subject = world.workload(extra_claims={"act": {"sub": "root"}, "may_act": {"sub": "root"}})
    status, headers, body = await post_form(
        world.token_url, {**world.form(subject_token=subject), **extra}
    )
    assert status == 200, body
    assert headers["Cache-Control"] == "no-store"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert set(claims) == MINTED_CLAIMS
    assert claims["sub"] == world.sa.name and claims["client_id"] == world.agent.name
    assert claims["org_id"] == world.org.removeprefix("orgs/")


# --------------------------------------------------------------------------
# RFC 6749 §3.2 / §5.2: request syntax
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grant_type", "reason"),
    [
        ("", "INVALID_REQUEST"),
        ("password", "UNSUPPORTED_GRANT_TYPE"),
        ("authorization_code", "UNSUPPORTED_GRANT_TYPE"),
        ("refresh_token", "UNSUPPORTED_GRANT_TYPE"),
        ("urn:ietf:params:oauth:grant-type:jwt-bearer", "UNSUPPORTED_GRANT_TYPE"),
        (TOKEN_EXCHANGE.upper(), "UNSUPPORTED_GRANT_TYPE"),
        (TOKEN_EXCHANGE + " ", "UNSUPPORTED_GRANT_TYPE"),
    ],
    ids=["missing", "password", "authorization_code", "refresh_token", "jwt-bearer", "upper-case",
         "trailing-space"],
)  # fmt: skip
async def test_rfc6749_5_2_grant_type_missing_or_unsupported(
    world: World, grant_type: str, reason: str
) -> None:
    token = world.workload()
    await world.refused(InvalidArgumentError, reason, subject_token=token, grant_type=grant_type)
    await world.http_refused(
        400, reason.lower(), world.form(subject_token=token, grant_type=grant_type)
    )


@pytest.mark.parametrize(
    "name", ["grant_type", "subject_token", "subject_token_type", "organization", "scope",
             "client_id", "requested_token_type"],
)  # fmt: skip
async def test_rfc6749_3_2_repeated_parameters_over_http(world: World, name: str) -> None:
    token = world.workload()
    pairs = list(world.form(subject_token=token, scope="invoices:read").items())
    value = {"client_id": world.agent.name, "requested_token_type": ACCESS_TOKEN_TYPE}
    same = dict(pairs).get(name) or value[name]
    pairs = [(k, v) for k, v in pairs if k != name] + [(name, same), (name, same)]
    await world.http_refused(400, "invalid_request", pairs)


@pytest.mark.parametrize("kind", ["json", "multipart", "text-plain", "no-content-type"])
async def test_rfc6749_3_2_wrong_content_type_over_http(world: World, kind: str) -> None:
    form = world.form(subject_token=world.workload())
    if kind == "json":
        data: Any = json.dumps(form)
        headers = {"Content-Type": "application/json"}
    elif kind == "multipart":
        data = aiohttp.FormData()
        for k, v in form.items():
            data.add_field(k, v, filename=f"{k}.txt")  # forces multipart/form-data
        headers = {}
    elif kind == "text-plain":
        data = "&".join(f"{k}={v}" for k, v in form.items())
        headers = {"Content-Type": "text/plain"}
    else:
        data = "&".join(f"{k}={v}" for k, v in form.items()).encode()
        headers = {"Content-Type": ""}
    await world.http_refused(400, "invalid_request", data, headers=headers)


@pytest.mark.parametrize(
    "body",
    [
        b"grant_type=%FF%FE&subject_token=x",
        pytest.param(
            b"grant_type=\xff\xfe&subject_token=x",
        ),
    ],
    ids=["percent-encoded-invalid-utf8", "raw-invalid-utf8"],
)
async def test_rfc6749_3_2_non_utf8_form_body_over_http(world: World, body: bytes) -> None:
    before = await world.harness.snapshot()
    status, headers, got = await post_form(world.token_url, body, headers={"Content-Type": FORM})
    assert status == 400, got
    assert_oauth_error(status, headers, got, 400, got["error"])
    assert got["error"] in ("invalid_request", "unsupported_grant_type")
    assert await world.harness.snapshot() == before


async def test_rfc6749_3_2_parameters_in_the_query_string_are_not_read(world: World) -> None:
    query = urlencode(world.form(subject_token=world.workload()))
    before = await world.harness.snapshot()
    got = await post_form(f"{world.token_url}?{query}", b"",
                          headers={"Content-Type": FORM})  # fmt: skip
    assert_oauth_error(*got, 400, "invalid_request")
    assert await world.harness.snapshot() == before


async def test_rfc6749_2_3_presented_client_assertion_is_not_ignored_in_token_exchange(
    world: World,
) -> None:
    before = await world.harness.snapshot()
    with pytest.raises((UnauthenticatedError, InvalidArgumentError)) as err:
        await world.exchange(
            subject_token=world.workload(),
            client_id=world.agent.name,
            client_assertion_type=JWT_BEARER,
            client_assertion=compact({"alg": "none"}, {"iss": world.agent.name}),
        )
    assert err.value.reason in ("INVALID_CLIENT", "INVALID_REQUEST")
    assert await world.harness.snapshot() == before


# --------------------------------------------------------------------------
# Disabled agents and service accounts
# --------------------------------------------------------------------------


async def test_disabled_agent_is_refused_at_once(world: World) -> None:
    # Warm the 5 s identity snapshot, then disable through the same server.
    assert (await world.exchange(subject_token=world.workload())).access_token
    await world.admin.admin.DisableAgent(pb.DisableAgentRequest(name=world.agent.name))
    await world.refused(*UNACCEPTABLE, subject_token=world.workload())
    await world.refused(*UNACCEPTABLE, subject_token=world.workload(), client_id=world.agent.name)


async def test_disabled_service_account_is_refused_at_once(world: World) -> None:
    assert (await world.exchange(subject_token=world.workload())).access_token
    await world.admin.admin.DisableServiceAccount(
        pb.DisableServiceAccountRequest(name=world.sa.name)
    )
    await world.refused(
        InvalidArgumentError, "INVALID_TARGET", subject_token=world.workload(),
        service_account=world.sa.name,
    )  # fmt: skip
    # Without naming it, the policy has no active service account left to choose.
    await world.refused(InvalidArgumentError, "INVALID_TARGET", subject_token=world.workload())


async def test_identity_snapshot_staleness_is_bounded_by_its_ttl(world: World) -> None:
    """A change made by another replica (here: straight in the database) is seen within 5 s."""
    directory = world.harness.servers.tokens.directory
    assert (await world.exchange(subject_token=world.workload())).access_token
    owner = Database(world.harness.database_url, app_role=None)
    try:
        async with owner.engine.begin() as conn:
            await conn.execute(
                text("UPDATE agents SET state = 'DISABLED' WHERE id = :id"),
                {"id": world.agent.name.rsplit("/", 1)[1]},
            )
    finally:
        await owner.dispose()
    base = directory.clock
    directory.clock = lambda: base() + directory.ttl + 0.5
    await world.refused(*UNACCEPTABLE, subject_token=world.workload())


# --------------------------------------------------------------------------
# RFC 7523 private_key_jwt (client_credentials)
# --------------------------------------------------------------------------


@dataclass
class KeyClient:
    harness: Any
    org: str
    admin: Any
    agent: pb.Agent
    sa: pb.ServiceAccount
    key: ec.EllipticCurvePrivateKey
    jwk: dict[str, Any]

    @property
    def audience(self) -> str:
        return str(self.harness.servers.tokens.issuer) + "/oauth2/token"

    def assertion(
        self, key: Any = None, alg: str = "ES256", headers: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> str:  # fmt: skip
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.agent.name,
            "sub": self.agent.name,
            "aud": self.audience,
            "jti": secrets.token_hex(12),
            "iat": now,
            "exp": now + 60,
        }
        for k, v in overrides.items():
            if v is None:
                claims.pop(k, None)
            else:
                claims[k] = v
        h = {"kid": self.jwk["kid"], **(headers or {})}
        h = {k: v for k, v in h.items() if v is not None}
        return jwt.encode(claims, key or self.key, algorithm=alg, headers=h)

    def request(self, assertion: str, **fields: Any) -> tpb.ExchangeTokenRequest:
        base = {
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion,
        }
        base.update(fields)
        return tpb.ExchangeTokenRequest(**base)

    async def exchange(self, assertion: str, **fields: Any) -> tpb.ExchangeTokenResponse:
        return await self.harness.client(None).tokens.ExchangeToken(
            self.request(assertion, **fields)
        )

    async def refused(self, assertion: str, **fields: Any) -> None:
        before = await self.harness.snapshot()
        with pytest.raises(UnauthenticatedError) as err:
            await self.exchange(assertion, **fields)
        assert err.value.reason == "INVALID_CLIENT"
        after = await self.harness.snapshot()
        assert after == before
        assert after["used_assertions"] == before["used_assertions"]


async def _key_client(harness: Any, org: str, admin: Any, name: str = "keyed agent") -> KeyClient:
    key, jwk_ = ec_key()
    agent, sa, _ = await setup_agent(
        admin, org, name, kind=trust.TRUST_POLICY_KIND_PRIVATE_KEY_JWT,
        jwks_json=json.dumps({"keys": [jwk_]}), algorithms=["ES256"],
    )  # fmt: skip
    return KeyClient(harness, org, admin, agent, sa, key, jwk_)


@pytest.fixture
async def keyed(harness: Any) -> KeyClient:
    org, admin, _ = await harness.new_org()
    return await _key_client(harness, org, admin)


async def test_rfc7523_3_assertion_replay(keyed: KeyClient) -> None:
    assertion = keyed.assertion()
    assert (await keyed.exchange(assertion)).access_token
    snap = await keyed.harness.snapshot()
    assert len(snap["used_assertions"]) == 1 and len(snap["issued_tokens"]) == 1
    await keyed.refused(assertion)
    # Replayed over HTTP too: 401 invalid_client, still one row each.
    got = await post_form(
        keyed.harness.http + "/oauth2/token",
        {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER,
         "client_assertion": assertion},
    )  # fmt: skip
    assert_oauth_error(*got, 401, "invalid_client")
    assert await keyed.harness.snapshot() == snap


async def test_rfc7523_3_concurrent_replay_mints_once(keyed: KeyClient) -> None:
    assertion = keyed.assertion()
    results = await asyncio.gather(
        *(keyed.exchange(assertion) for _ in range(10)), return_exceptions=True
    )
    ok = [r for r in results if isinstance(r, tpb.ExchangeTokenResponse)]
    assert len(ok) == 1
    assert all(
        isinstance(r, UnauthenticatedError) and r.reason == "INVALID_CLIENT"
        for r in results if r not in ok
    )  # fmt: skip
    snap = await keyed.harness.snapshot()
    assert len(snap["used_assertions"]) == 1 and len(snap["issued_tokens"]) == 1


@pytest.mark.parametrize("ahead", [336, 3600, 10**10])
async def test_rfc7523_3_assertion_exp_more_than_five_minutes_ahead(
    keyed: KeyClient, ahead: int
) -> None:
    await keyed.refused(keyed.assertion(exp=int(time.time()) + ahead))


def _audience_variant(k: KeyClient, case: str) -> Any:
    base = str(k.harness.servers.tokens.issuer)
    return {
        "other-server": "https://evil.example/oauth2/token",
        "trailing-slash": k.audience + "/",
        "prefix": k.audience[:-1],
        "other-endpoint": base + "/oauth2/introspect",
        "https-scheme": k.audience.replace("http://", "https://"),
        "list-without-ours": ["https://evil.example", base + "/x"],
        "missing": None,
    }[case]


@pytest.mark.parametrize(
    "case",
    ["other-server", "trailing-slash", "prefix", "other-endpoint", "https-scheme",
     "list-without-ours", "missing"],
)  # fmt: skip
async def test_rfc7523_3_assertion_audience_not_ours(keyed: KeyClient, case: str) -> None:
    await keyed.refused(keyed.assertion(aud=_audience_variant(keyed, case)))


@pytest.mark.parametrize("case", ["other-sub", "missing-sub", "missing-iss"])
async def test_rfc7523_3_assertion_iss_must_equal_sub(keyed: KeyClient, case: str) -> None:
    other = await _key_client(keyed.harness, keyed.org, keyed.admin, "other agent")
    overrides = {
        "other-sub": {"sub": other.agent.name},
        "missing-sub": {"sub": None},
        "missing-iss": {"iss": None},
    }[case]
    await keyed.refused(keyed.assertion(**overrides))


async def test_rfc7523_3_client_id_parameter_differs_from_iss(keyed: KeyClient) -> None:
    other = await _key_client(keyed.harness, keyed.org, keyed.admin, "other agent")
    await keyed.refused(keyed.assertion(), client_id=other.agent.name)


@pytest.mark.parametrize("kid", ["same-kid", "no-kid", "other-kid"])
async def test_rfc7523_3_assertion_signed_by_unregistered_key(keyed: KeyClient, kid: str) -> None:
    stranger, _ = ec_key()
    headers = {"same-kid": {}, "no-kid": {"kid": None}, "other-kid": {"kid": "stranger"}}[kid]
    token = keyed.assertion(key=stranger, headers=headers)
    assert ("kid" in jwt.get_unverified_header(token)) is (kid != "no-kid")
    await keyed.refused(token)


@pytest.mark.parametrize("form", EC_KEY_FORMS)
async def test_rfc8725_3_1_hs256_assertion_macd_with_registered_public_key(
    keyed: KeyClient, form: str
) -> None:
    secret = _public_key_forms(keyed.jwk, json.dumps({"keys": [keyed.jwk]}).encode())[form]
    now = int(time.time())
    claims = {"iss": keyed.agent.name, "sub": keyed.agent.name, "aud": keyed.audience,
              "jti": secrets.token_hex(8), "iat": now, "exp": now + 60}  # fmt: skip
    token = _hs256({"alg": "HS256", "kid": keyed.jwk["kid"], "typ": "JWT"}, claims, secret)
    await keyed.refused(token)


@pytest.mark.parametrize("jti", ["missing", "empty", "number", "too-long"])
async def test_rfc7523_3_assertion_jti(keyed: KeyClient, jti: str) -> None:
    value = {"missing": None, "empty": "", "number": 12345, "too-long": "j" * 257}[jti]
    token = keyed.assertion(jti=value)
    if jti == "empty":
        assert jwt.decode(token, options={"verify_signature": False})["jti"] == ""
    await keyed.refused(token)


@pytest.mark.parametrize(
    "assertion_type",
    ["", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer", JWT_BEARER.upper(),
     JWT_BEARER + " "],
    ids=["missing", "saml2-bearer", "upper-case", "trailing-space"],
)  # fmt: skip
async def test_rfc7523_2_2_client_assertion_type_wrong(
    keyed: KeyClient, assertion_type: str
) -> None:
    await keyed.refused(keyed.assertion(), client_assertion_type=assertion_type)


async def test_rfc7523_3_assertion_naming_another_orgs_agent(keyed: KeyClient) -> None:
    org_b, b_admin, _ = await keyed.harness.new_org("B")
    victim = await _key_client(keyed.harness, org_b, b_admin, "victim")
    # Org A's agent signs with its own key, claiming to be org B's agent.
    forged = keyed.assertion(iss=victim.agent.name, sub=victim.agent.name)
    await keyed.refused(forged)
    await keyed.refused(forged, client_id=victim.agent.name)


def _es256_raw(key: ec.EllipticCurvePrivateKey, header: bytes, payload: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}".encode()
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return f"{signing_input.decode()}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _assertion_attack(k: KeyClient, case: str) -> str:
    now = int(time.time())
    if case in ("alg-none", "alg-none-junk-signature"):
        _, p, _ = k.assertion().split(".")
        sig = "" if case == "alg-none" else b64(b"\x00" * 64)
        return f"{b64({'alg': 'none', 'kid': k.jwk['kid']})}.{p}.{sig}"
    if case == "crit-unknown":
        return k.assertion(headers={"crit": ["exp-ext"], "exp-ext": 1})
    if case == "expired":
        return k.assertion(exp=now - 45, iat=now - 100)
    if case == "nbf-in-the-future":
        return k.assertion(nbf=now + 120)
    if case == "iat-in-the-future":
        return k.assertion(iat=now + 120)
    if case == "missing-exp":
        return k.assertion(exp=None)
    if case == "exp-string":
        return k.assertion(exp=str(now + 60))
    if case == "exp-bool":
        return k.assertion(exp=True)
    if case in ("exp-1e309", "duplicate-sub"):
        claims = json.loads(_unb64(k.assertion().split(".")[1]))
        payload = json.dumps({**claims, "exp": "@@"}).replace('"@@"', "1e309")
        if case == "duplicate-sub":
            payload = json.dumps(claims)[:-1] + ',"sub":"orgs/x/agents/y"}'
        header = json.dumps({"alg": "ES256", "kid": k.jwk["kid"]}).encode()
        return _es256_raw(k.key, header, payload.encode())
    if case == "access-token-typ":
        return k.assertion(headers={"typ": "at+jwt"})
    if case == "oversize":
        return k.assertion(pad="x" * 20 * 1024)
    if case == "garbage":
        return "not-a-jwt"
    raise AssertionError(case)


ASSERTION_ATTACKS = [
    "alg-none",
    "alg-none-junk-signature", "crit-unknown", "expired", "nbf-in-the-future", "iat-in-the-future",
    "missing-exp", "exp-string", "exp-bool", "exp-1e309", "duplicate-sub", "access-token-typ",
    "oversize", "garbage",
]  # fmt: skip


@pytest.mark.parametrize("case", ASSERTION_ATTACKS)
async def test_rfc8725_catalogue_applied_to_client_assertion(keyed: KeyClient, case: str) -> None:
    await keyed.refused(_assertion_attack(keyed, case))


async def test_rfc7523_3_disabled_agent_assertion_is_invalid_client(keyed: KeyClient) -> None:
    assert (await keyed.exchange(keyed.assertion())).access_token
    await keyed.admin.admin.DisableAgent(pb.DisableAgentRequest(name=keyed.agent.name))
    await keyed.refused(keyed.assertion())


# --------------------------------------------------------------------------
# RFC 7662 introspection and RFC 7009 revocation
# --------------------------------------------------------------------------


async def _http_call(
    harness: Any, path: str, token: str, authorization: str | None
) -> tuple[int, Any, Any]:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return await post_form(harness.http + path, {"token": token}, headers=headers)


@pytest.mark.parametrize("path", ["/oauth2/introspect", "/oauth2/revoke"])
@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "Bearer aa_forged_key"],
    ids=["absent", "empty", "bearer-without-credential", "basic", "unknown-key"],
)  # fmt: skip
async def test_rfc7662_2_1_and_rfc7009_2_1_callers_must_authenticate_over_http(
    world: World, path: str, authorization: str | None
) -> None:
    token = (await world.exchange(subject_token=world.workload())).access_token
    before = await world.harness.snapshot()
    got = await _http_call(world.harness, path, token, authorization)
    # RFC 6749 §5.2: the challenge matches the scheme the client tried.
    scheme = "Basic" if (authorization or "").startswith("Basic") else "Bearer"
    assert_oauth_error(*got, 401, "invalid_client", challenge=scheme)
    assert await world.harness.snapshot() == before


@pytest.mark.parametrize("rpc", ["IntrospectToken", "RevokeToken"])
@pytest.mark.parametrize(
    ("key", "reason"),
    [(None, "CREDENTIALS_MISSING"), ("aa_forged_key", "CREDENTIALS_INVALID")],
    ids=["no-key", "forged-key"],
)
async def test_rfc7662_2_1_and_rfc7009_2_1_callers_must_authenticate_over_grpc(
    world: World, rpc: str, key: str | None, reason: str
) -> None:
    token = (await world.exchange(subject_token=world.workload())).access_token
    before = await world.harness.snapshot()
    stub = world.harness.client(key).tokens
    request = (tpb.IntrospectTokenRequest if rpc == "IntrospectToken" else tpb.RevokeTokenRequest)(
        token=token
    )
    with pytest.raises(UnauthenticatedError) as err:
        await getattr(stub, rpc)(request)
    assert err.value.reason == reason
    assert await world.harness.snapshot() == before
    assert (
        await world.admin.tokens.IntrospectToken(tpb.IntrospectTokenRequest(token=token))
    ).active


async def _two_orgs(world: World) -> tuple[str, Any, str, str]:
    """Org B with its own agent; returns (B's token, B's admin client, A's key, B's key)."""
    org_b, b_admin, b_key = await world.harness.new_org("B")
    await setup_agent(b_admin, org_b, **k8s_policy(world.k8s))
    token_b = (
        await world.exchange(subject_token=world.workload(), organization=org_b)
    ).access_token
    return token_b, b_admin, world.admin_key, b_key


async def test_rfc7662_2_2_other_orgs_token_is_indistinguishable_from_garbage(
    world: World,
) -> None:
    token_b, b_admin, key_a, _ = await _two_orgs(world)
    a = world.admin.tokens
    other = await a.IntrospectToken(tpb.IntrospectTokenRequest(token=token_b))
    garbage = await a.IntrospectToken(tpb.IntrospectTokenRequest(token="garbage"))
    assert other == garbage == tpb.IntrospectTokenResponse(active=False)
    assert (await b_admin.tokens.IntrospectToken(tpb.IntrospectTokenRequest(token=token_b))).active
    auth = f"Bearer {key_a}"
    got_other = await _http_call(world.harness, "/oauth2/introspect", token_b, auth)
    got_garbage = await _http_call(world.harness, "/oauth2/introspect", "garbage", auth)
    assert got_other[0] == got_garbage[0] == 200
    assert got_other[2] == got_garbage[2] == {"active": False}
    assert got_other[1]["Cache-Control"] == "no-store"


async def test_rfc7009_2_2_revoking_another_orgs_token_is_a_silent_no_op(world: World) -> None:
    token_b, b_admin, key_a, _ = await _two_orgs(world)
    before = await world.harness.snapshot()
    assert await world.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=token_b)) == (
        tpb.RevokeTokenResponse()
    )
    status, headers, _ = await _http_call(
        world.harness, "/oauth2/revoke", token_b, f"Bearer {key_a}"
    )
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert await world.harness.snapshot() == before
    intro = await b_admin.tokens.IntrospectToken(tpb.IntrospectTokenRequest(token=token_b))
    assert intro.active and intro.org_id == intro.sub.split("/")[1]


def _forge(token: str, case: str, jwks: dict[str, Any]) -> str:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    h, p, s = token.split(".")
    if case == "other-key-same-kid":
        key = ec.generate_private_key(ec.SECP256R1())
        return jwt.encode(claims, key, algorithm="ES256", headers=header)
    if case == "alg-none-same-kid":
        return f"{b64({**header, 'alg': 'none'})}.{p}."
    if case == "hs256-with-our-public-jwk":
        ours = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
        return _hs256({**header, "alg": "HS256"}, claims, json.dumps(ours).encode())
    if case == "claims-edited-signature-kept":
        return f"{h}.{b64({**claims, 'scope': 'invoices:read invoices:write admin'})}.{s}"
    if case == "signature-stripped":
        return f"{h}.{p}."
    raise AssertionError(case)


@pytest.mark.parametrize(
    "case",
    ["other-key-same-kid", "alg-none-same-kid", "hs256-with-our-public-jwk",
     "claims-edited-signature-kept", "signature-stripped"],
)  # fmt: skip
async def test_rfc7662_2_2_forged_token_is_inactive(world: World, case: str) -> None:
    resp = await world.exchange(subject_token=world.workload(), scope="invoices:read")
    jwks = json.loads((await world.admin.tokens.GetJwks(tpb.GetJwksRequest())).jwks_json)
    forged = _forge(resp.access_token, case, jwks)
    intro = await world.admin.tokens.IntrospectToken(tpb.IntrospectTokenRequest(token=forged))
    assert intro == tpb.IntrospectTokenResponse(active=False)
    got = await _http_call(world.harness, "/oauth2/introspect", forged, f"Bearer {world.admin_key}")
    assert got[0] == 200 and got[2] == {"active": False}
    # Revoking the forgery does not revoke the genuine token it copied.
    await world.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=forged))
    real = await world.admin.tokens.IntrospectToken(
        tpb.IntrospectTokenRequest(token=resp.access_token)
    )
    assert real.active


# --------------------------------------------------------------------------
# RFC 6749 §5.2 over HTTP: a representative subset of the above
# --------------------------------------------------------------------------

# (form, HTTP status, the RFC 6749 §5.2 body members expected)
HttpExpect = tuple[dict[str, str], int, dict[str, str]]
HttpCase = Callable[[World], Awaitable[HttpExpect]]


async def _h_alg_none(w: World) -> HttpExpect:
    return w.form(subject_token=compact(w.header(alg="none"), w.claims())), 400, UNACCEPTABLE_BODY


async def _h_hs256_pem(w: World) -> HttpExpect:
    served, jwks = await _served_jwks(w.k8s)
    secret = _public_key_forms(jwks["keys"][0], served)["pem-spki"]
    token = _hs256(w.header(alg="HS256"), w.claims(), secret)
    return w.form(subject_token=token), 400, UNACCEPTABLE_BODY


async def _h_kid_sql(w: World) -> HttpExpect:
    token = w.k8s.sign(w.claims(), headers={"kid": EVIL_KIDS["sql-injection"]})
    return w.form(subject_token=token), 400, UNACCEPTABLE_BODY


async def _h_expired(w: World) -> HttpExpect:
    return w.form(subject_token=_time_case(w, "expired-beyond-leeway")), 400, UNACCEPTABLE_BODY


async def _h_exp_string(w: World) -> HttpExpect:
    return w.form(subject_token=_time_case(w, "exp-string")), 400, UNACCEPTABLE_BODY


async def _h_audience(w: World) -> HttpExpect:
    token = w.k8s.sign(w.claims(aud="agentauth.evil"))
    return w.form(subject_token=token), 400, UNACCEPTABLE_BODY


async def _h_our_token(w: World) -> HttpExpect:
    ours = (await w.exchange(subject_token=w.workload())).access_token
    return w.form(subject_token=ours), 400, UNACCEPTABLE_BODY


async def _h_type_lie(w: World) -> HttpExpect:
    form = w.form(subject_token=w.workload(), subject_token_type=ACCESS_TOKEN_TYPE)
    return form, 400, {"error": "invalid_request"}


async def _h_two_segments(w: World) -> HttpExpect:
    return w.form(subject_token=_malformed(w.workload(), "two-segments")), 400, UNACCEPTABLE_BODY


async def _h_duplicate_sub(w: World) -> HttpExpect:
    payload = DUPLICATES["payload-sub"][1]
    assert payload is not None
    token = sign_raw(w.k8s, json.dumps(w.header()).encode(), _fill(payload, w))
    return w.form(subject_token=token), 400, UNACCEPTABLE_BODY


async def _h_wrong_namespace(w: World) -> HttpExpect:
    return w.form(subject_token=w.workload(namespace="prod")), 400, UNACCEPTABLE_BODY


async def _h_refresh_requested(w: World) -> HttpExpect:
    form = w.form(subject_token=w.workload(),
                  requested_token_type="urn:ietf:params:oauth:token-type:refresh_token")  # fmt: skip
    return form, 400, {"error": "invalid_request"}


async def _h_invalid_scope(w: World) -> HttpExpect:
    form = w.form(subject_token=w.workload(), scope="invoices:read admin")
    return form, 400, {"error": "invalid_scope", "error_description": "scope not allowed: admin"}


async def _h_invalid_target(w: World) -> HttpExpect:
    form = {**w.form(subject_token=w.workload()), "audience": "https://evil.example"}
    return form, 400, {"error": "invalid_target"}


async def _h_bad_assertion(w: World) -> HttpExpect:
    form = {"grant_type": "client_credentials", "client_assertion_type": JWT_BEARER,
            "client_assertion": compact({"alg": "none"}, {"iss": w.agent.name, "sub": w.agent.name})}  # fmt: skip
    return form, 401, {"error": "invalid_client"}


HTTP_CASES: dict[str, HttpCase] = {
    "rfc8725_3_1_alg_none": _h_alg_none,
    "rfc8725_3_1_hs256_public_key_pem": _h_hs256_pem,
    "rfc8725_2_9_kid_sql_injection": _h_kid_sql,
    "rfc7519_4_1_4_expired": _h_expired,
    "rfc7519_4_1_4_exp_string": _h_exp_string,
    "rfc8725_3_9_audience_near_match": _h_audience,
    "rfc8725_2_8_our_access_token": _h_our_token,
    "rfc8693_3_subject_token_type_lie": _h_type_lie,
    "rfc7515_7_1_two_segments": _h_two_segments,
    "rfc8725_2_6_duplicate_sub": _h_duplicate_sub,
    "trust_policy_wrong_namespace": _h_wrong_namespace,
    "rfc8693_2_1_requested_refresh_token": _h_refresh_requested,
    "rfc8693_2_2_2_invalid_scope": _h_invalid_scope,
    "rfc8693_2_2_2_invalid_target": _h_invalid_target,
    "rfc7523_3_alg_none_assertion": _h_bad_assertion,
}


@pytest.mark.parametrize("case", list(HTTP_CASES))
async def test_rfc6749_5_2_error_responses_over_http(world: World, case: str) -> None:
    form, status, want = await HTTP_CASES[case](world)
    body = await world.http_refused(status, want["error"], form)
    assert body["error_description"] and want.items() <= body.items()
    # Only an unacceptable token gets the unacceptable-token answer.
    assert (body["error_description"] == UNACCEPTABLE_DESCRIPTION) == (want == UNACCEPTABLE_BODY)
    # The description is the safe, fixed message: no echo of the presented token.
    for value in form.values():
        if len(value) > 40:
            assert value not in body["error_description"]
