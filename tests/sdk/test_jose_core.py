"""The JOSE core (agentauth._jose) on its own: what it imports, its key table, its clockless claims.

The attack catalogue runs against the core through both entry points in
tests/sdk/test_jose_conformance.py and through each one's own suite; this
file pins what those cannot see: the dependency boundary, every algorithm's
key binding and signature scheme (RSA and the larger curves appear in no other
suite), the curve orders the ECDSA range check relies on, and that time is
only ever the ``now`` a caller passes.
"""

from __future__ import annotations

import ast
import base64
import functools
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from agentauth import _jose
from agentauth._jose import (
    ALGORITHMS,
    JoseError,
    JwkError,
    TokenReason,
    Typ,
    VerificationKey,
    _encoding,
    _jws,
    algorithm_set,
    check_claims,
    parse_claims,
    parse_compact,
    parse_jwk,
    select_key,
    verify_signature,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

R = TokenReason
NOW = 1_900_000_000.0
CORE = Path(_jose.__file__).parent


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(value: int) -> str:
    return b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


# ------------------------------------------------------------------ the boundary
def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module)
    return roots


@pytest.mark.parametrize("module", sorted(p.name for p in CORE.glob("*.py")))
def test_core_imports_only_the_stdlib_and_cryptography(module: str) -> None:
    """The SDK installs alone and the server builds on it: the core pulls in nothing else."""
    for name in _imported_roots(CORE / module):
        top = name.split(".")[0]
        allowed = top in sys.stdlib_module_names or top == "cryptography"
        assert allowed or name.startswith("agentauth._jose"), (module, name)


def test_public_surface_is_exactly_all() -> None:
    assert sorted(_jose.__all__) == sorted(set(_jose.__all__))
    for name in _jose.__all__:
        assert getattr(_jose, name) is not None


# ------------------------------------------------------- keys and signatures
@functools.cache
def _private(alg: str) -> Any:
    """One throwaway key per algorithm (RSA generation is slow)."""
    if alg.startswith(("RS", "PS")):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
    return ec.generate_private_key(curve)


def _jwk(private: Any, **extra: Any) -> dict[str, Any]:
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        numbers = public.public_numbers()
        return {"kty": "RSA", "n": uint(numbers.n), "e": uint(numbers.e), **extra}
    if isinstance(public, ed25519.Ed25519PublicKey):
        return {"kty": "OKP", "crv": "Ed25519", "x": b64(public.public_bytes_raw()), **extra}
    size = (public.curve.key_size + 7) // 8
    crv = {256: "P-256", 384: "P-384", 521: "P-521"}[public.curve.key_size]
    point = public.public_numbers()
    return {
        "kty": "EC",
        "crv": crv,
        "x": b64(point.x.to_bytes(size, "big")),
        "y": b64(point.y.to_bytes(size, "big")),
        **extra,
    }


def _sign(alg: str, private: Any, data: bytes) -> bytes:
    digest = {"256": hashes.SHA256(), "384": hashes.SHA384(), "512": hashes.SHA512()}.get(alg[2:])
    if alg == "EdDSA":
        return bytes(private.sign(data))
    if alg.startswith("RS"):
        return bytes(private.sign(data, padding.PKCS1v15(), digest))
    if alg.startswith("PS"):
        assert digest is not None
        return bytes(
            private.sign(data, padding.PSS(padding.MGF1(digest), digest.digest_size), digest)
        )
    size = (private.curve.key_size + 7) // 8
    r, s = decode_dss_signature(private.sign(data, ec.ECDSA(digest)))
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _token(alg: str, private: Any, header: dict[str, Any] | None = None, **claims: Any) -> str:
    head = b64(json.dumps({"alg": alg, "kid": "k", **(header or {})}).encode())
    body = b64(json.dumps({"sub": "s", "exp": NOW + 60, **claims}).encode())
    return f"{head}.{body}.{b64(_sign(alg, private, f'{head}.{body}'.encode()))}"


ALL = sorted(ALGORITHMS)


@pytest.mark.parametrize("alg", ALL)
def test_every_algorithm_verifies_with_a_key_bound_to_it(alg: str) -> None:
    private = _private(alg)
    key = parse_jwk(_jwk(private, kid="k", alg=alg))
    assert (key.kid, key.alg) == ("k", alg)
    parsed = parse_compact(_token(alg, private), algorithms=frozenset(ALL), max_bytes=8192)
    verify_signature(parsed, key)
    assert parse_claims(parsed.payload)["sub"] == "s"
    # The same key under any other header alg: RFC 8725 §3.1 (CVE-2026-48523).
    for other in ALL:
        if other != alg:
            relabelled = parse_compact(
                _token(other, _private(other)), algorithms=frozenset(ALL), max_bytes=8192
            )
            with pytest.raises(JoseError) as err:
                verify_signature(relabelled, key)
            assert err.value.reason == R.TOKEN_ALGORITHM_NOT_ALLOWED


@pytest.mark.parametrize(
    ("shape", "implied"),
    [("ES256", "ES256"), ("ES384", "ES384"), ("ES512", "ES512"), ("EdDSA", "EdDSA"),
     ("RS256", "RS256")],
)  # fmt: skip
def test_rfc8725_3_1_a_key_without_alg_is_bound_by_its_shape(shape: str, implied: str) -> None:
    """EC by curve, OKP Ed25519 -> EdDSA, RSA -> RS256 (RFC 7518 §3.1 "Recommended")."""
    assert parse_jwk(_jwk(_private(shape), kid="k")).alg == implied


def test_rsa_key_for_pss_must_say_so() -> None:
    private = _private("PS256")
    bare = parse_jwk(_jwk(private, kid="k"))
    pss = parse_compact(_token("PS256", private), algorithms=frozenset(ALL), max_bytes=8192)
    with pytest.raises(JoseError):
        verify_signature(pss, bare)  # bound to RS256
    verify_signature(pss, parse_jwk(_jwk(private, kid="k", alg="PS256")))


@pytest.mark.parametrize(("alg", "curve"), [("ES384", ec.SECP384R1()), ("ES512", ec.SECP521R1())])
def test_curve_orders_behind_the_ecdsa_range_check(alg: str, curve: ec.EllipticCurve) -> None:
    """(r, n - s) is the other valid signature of the same message, so it verifies only
    if our n is the curve's order; (r, n) and (r, 0) never do (CVE-2022-21449)."""
    private = ec.generate_private_key(curve)
    key = parse_jwk(_jwk(private, kid="k"))
    n = {"ES384": _jose._jwk._P384_ORDER, "ES512": _jose._jwk._P521_ORDER}[alg]
    size = (curve.key_size + 7) // 8
    data = b"header.payload"
    raw = _sign(alg, private, data)
    r, s = int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")

    def rs(r_: int, s_: int) -> bytes:
        return r_.to_bytes(size, "big") + s_.to_bytes(size, "big")

    assert key.verify(data, raw)
    assert key.verify(data, rs(r, n - s))
    for bad in (rs(r, n), rs(r, 0), rs(n, s), rs(0, s), raw[:-1], raw + b"\x00"):
        assert not key.verify(data, bad)


def test_p256_order_matches_the_server_constant() -> None:
    from control_plane.tokens.jws import P256_ORDER

    assert _jose._jwk._P256_ORDER == P256_ORDER


RSA_2048 = _jwk(_private("RS256"), kid="rsa")
EC_P256 = _jwk(_private("ES256"), kid="ec")

JWK_REFUSALS: dict[str, tuple[dict[str, Any], str]] = {
    "rsa-1024": (_jwk(rsa.generate_private_key(65537, 1024), kid="k"), "JWKS_INVALID_KEY"),
    "rsa-n-leading-zero": (
        {**RSA_2048, "n": b64(b"\x00" + base64.urlsafe_b64decode(RSA_2048["n"] + "=="))},
        "JWKS_INVALID_KEY",
    ),  # fmt: skip
    "rsa-e-1": ({**RSA_2048, "e": "AQ"}, "JWKS_INVALID_KEY"),
    "rsa-e-even": ({**RSA_2048, "e": uint(65536)}, "JWKS_INVALID_KEY"),
    "rsa-alg-es256": ({**RSA_2048, "alg": "ES256"}, "JWKS_ALG_MISMATCH"),
    "rsa-alg-hs256": ({**RSA_2048, "alg": "HS256"}, "JWKS_ALG_MISMATCH"),
    "rsa-private": ({**RSA_2048, "d": "AQ"}, "JWKS_PRIVATE_MEMBER"),
    "oct": ({"kty": "oct", "k": "c2VjcmV0", "kid": "k"}, "JWKS_PRIVATE_MEMBER"),
    "ec-alg-es384": ({**EC_P256, "alg": "ES384"}, "JWKS_ALG_MISMATCH"),
    "ec-secp256k1": ({**EC_P256, "crv": "secp256k1"}, "JWKS_KEY_UNSUPPORTED"),
    "ec-p384-short-coordinates": ({**EC_P256, "crv": "P-384"}, "JWKS_INVALID_KEY"),
    "ec-use-enc": ({**EC_P256, "use": "enc"}, "JWKS_WRONG_USE"),
    "ec-key-ops-sign": ({**EC_P256, "key_ops": ["sign"]}, "JWKS_WRONG_USE"),
    "okp-x25519": (
        {"kty": "OKP", "crv": "X25519", "x": b64(bytes(32)), "kid": "k"},
        "JWKS_KEY_UNSUPPORTED",
    ),  # fmt: skip
    "kid-not-a-string": ({**EC_P256, "kid": 7}, "JWKS_MALFORMED"),
    "not-an-object": ([], "JWKS_MALFORMED"),  # type: ignore[dict-item]
}


@pytest.mark.parametrize("case", sorted(JWK_REFUSALS))
def test_unusable_keys_are_refused_with_a_reason(case: str) -> None:
    jwk, reason = JWK_REFUSALS[case]
    with pytest.raises(JwkError) as err:
        parse_jwk(jwk)
    assert err.value.reason == reason


def test_a_key_for_an_algorithm_the_caller_does_not_accept_is_unsupported() -> None:
    with pytest.raises(JwkError) as err:
        parse_jwk(RSA_2048, algorithms={"ES256", "EdDSA"})
    assert err.value.reason == "JWKS_KEY_UNSUPPORTED"
    with pytest.raises(JwkError) as err:
        parse_jwk({**RSA_2048, "alg": "PS256"}, algorithms={"RS256"})
    assert err.value.reason == "JWKS_KEY_UNSUPPORTED"


def test_select_key_by_kid_only_and_a_lone_key_only_when_allowed() -> None:
    one = {"k": parse_jwk(EC_P256 | {"kid": "k"})}
    two = {**one, "rsa": parse_jwk(RSA_2048)}
    assert select_key(one, "k") is one["k"]
    assert select_key(one, "other") is None
    assert select_key(one, "") is None
    assert select_key(one, "", allow_single=True) is one["k"]
    assert select_key(two, "", allow_single=True) is None
    assert isinstance(one["k"], VerificationKey)


# ------------------------------------------------------------------ parsing
def test_the_size_cap_comes_before_any_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    private = _private("ES256")
    big = _token("ES256", private, pad="x" * 9000)

    def must_not_run(*_args: Any) -> Any:
        raise AssertionError("decoded an oversized token")

    for target in (_jws, _encoding):
        for name in ("b64url_decode", "decode_checked", "loads_strict"):
            if hasattr(target, name):
                monkeypatch.setattr(target, name, must_not_run)
    for header_first in (False, True):
        with pytest.raises(JoseError) as err:
            parse_compact(big, algorithms=frozenset(ALL), max_bytes=8192, header_first=header_first)
        assert err.value.reason == R.TOKEN_MALFORMED


def test_both_check_orders_refuse_the_same_tokens_only_reasons_differ() -> None:
    """alg none with an empty signature: malformed when segments are decoded first,
    the algorithm when the header is read first (RFC 7515 §5.2 order)."""
    head = b64(b'{"alg":"none","kid":"k"}')
    token = f"{head}.{b64(b'{}')}."
    reasons = []
    for header_first in (False, True):
        with pytest.raises(JoseError) as err:
            parse_compact(token, algorithms=frozenset({"ES256"}), max_bytes=8192,
                          header_first=header_first)  # fmt: skip
        reasons.append(err.value.reason)
    assert reasons == [R.TOKEN_MALFORMED, R.TOKEN_ALGORITHM_NOT_ALLOWED]


@pytest.mark.parametrize(
    ("typ", "policy", "accepted"),
    [
        ("at+jwt", Typ.ACCESS_TOKEN, True),
        ("Application/AT+JWT", Typ.ACCESS_TOKEN, True),
        ("JWT", Typ.ACCESS_TOKEN, False),
        (None, Typ.ACCESS_TOKEN, False),
        ("at+jwt", Typ.NOT_ACCESS_TOKEN, False),
        ("application/at+jwt", Typ.NOT_ACCESS_TOKEN, False),
        ("JWT", Typ.NOT_ACCESS_TOKEN, True),
        (None, Typ.NOT_ACCESS_TOKEN, True),
        (7, Typ.NOT_ACCESS_TOKEN, True),
        ("at+jwt", Typ.ANY, True),
        (None, Typ.ANY, True),
    ],
)
def test_rfc9068_4_and_rfc8725_3_11_typ_policy(typ: Any, policy: Typ, accepted: bool) -> None:
    private = _private("ES256")
    header = {} if typ is None else {"typ": typ}
    token = _token("ES256", private, header)
    try:
        parse_compact(token, algorithms=frozenset({"ES256"}), max_bytes=8192, typ=policy)
    except JoseError as err:
        assert not accepted and err.reason == R.TOKEN_TYPE_INVALID
    else:
        assert accepted


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "ES256K"])
def test_rfc8725_3_1_alg_outside_the_core_is_refused_even_if_configured(alg: str) -> None:
    """A caller that built its algorithm set by hand still cannot admit none or HMAC."""
    head = b64(json.dumps({"alg": alg, "kid": "k"}).encode())
    token = f"{head}.{b64(b'{}')}.{b64(bytes(64))}"
    with pytest.raises(JoseError) as err:
        parse_compact(token, algorithms=frozenset({alg, "ES256"}), max_bytes=8192)
    assert err.value.reason == R.TOKEN_ALGORITHM_NOT_ALLOWED


def test_kid_may_be_absent_only_where_allowed_and_never_null() -> None:
    private = _private("ES256")
    without = _token("ES256", private, {"kid": None}).split(".")
    without[0] = b64(b'{"alg":"ES256"}')
    no_kid = ".".join(without)
    null_kid = _token("ES256", private, {"kid": None})
    common: dict[str, Any] = {"algorithms": frozenset({"ES256"}), "max_bytes": 8192}
    assert parse_compact(no_kid, require_kid=False, **common).kid == ""
    for token, require_kid, reason in [
        (no_kid, True, R.TOKEN_KEY_UNKNOWN),
        (null_kid, True, R.TOKEN_KEY_UNKNOWN),
        (null_kid, False, R.TOKEN_MALFORMED),
    ]:
        with pytest.raises(JoseError) as err:
            parse_compact(token, require_kid=require_kid, **common)
        assert err.value.reason == reason


# ------------------------------------------------------------------ claims
def test_algorithm_set_is_configuration() -> None:
    assert algorithm_set(["ES256"]) == frozenset({"ES256"})
    with pytest.raises(TypeError):
        algorithm_set("ES256")
    for bad in ([], ["none"], ["HS256"], ["ES256", "ES256K"]):
        with pytest.raises(ValueError):
            algorithm_set(bad)
    with pytest.raises(ValueError):
        algorithm_set(["RS256"], supported={"ES256", "EdDSA"})


CLAIMS = {"iss": "https://i.example", "aud": ["a", "b"], "exp": NOW + 60, "iat": NOW, "nbf": NOW}


def test_check_claims_reads_no_clock_only_now() -> None:
    """The same claims are valid at one ``now`` and expired at another: there is no other time."""
    checked = check_claims(CLAIMS, now=NOW, leeway=30, issuer="https://i.example", audience="b")
    assert (checked.valid_from, checked.valid_until) == (NOW - 30, NOW + 90)
    assert checked.audience == ("a", "b")
    for now, reason in [
        (NOW + 91, R.TOKEN_EXPIRED),
        (NOW - 31, R.TOKEN_NOT_YET_VALID),
    ]:
        with pytest.raises(JoseError) as err:
            check_claims(CLAIMS, now=now, leeway=30)
        assert err.value.reason == reason
    assert check_claims(CLAIMS, now=NOW + 90, leeway=30).expires_at == NOW + 60


@pytest.mark.parametrize(
    "value", ["9999999999", True, False, None, -1, 2**53, math.nan, math.inf, [NOW], {"t": 1}]
)
def test_rfc7519_2_numeric_date_types(value: Any) -> None:
    for name in ("exp", "nbf", "iat"):
        with pytest.raises(JoseError) as err:
            check_claims({**CLAIMS, name: value}, now=NOW, leeway=30)
        assert (err.value.reason, err.value.metadata) == (R.TOKEN_CLAIM_INVALID, {"claim": name})


@pytest.mark.parametrize("leeway", [-1, 301, math.nan, math.inf])
def test_leeway_is_bounded(leeway: float) -> None:
    with pytest.raises(ValueError):
        check_claims(CLAIMS, now=NOW, leeway=leeway)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"required": ("jti",)}, R.TOKEN_CLAIM_MISSING),
        ({"issuer": "https://i.example/"}, R.TOKEN_ISSUER_MISMATCH),
        ({"audience": "ab"}, R.TOKEN_AUDIENCE_MISMATCH),
        ({"audience": {"c", "d"}}, R.TOKEN_AUDIENCE_MISMATCH),
    ],
)
def test_required_issuer_and_audience(kwargs: dict[str, Any], reason: str) -> None:
    with pytest.raises(JoseError) as err:
        check_claims(CLAIMS, now=NOW, leeway=30, **kwargs)
    assert err.value.reason == reason
    assert check_claims(CLAIMS, now=NOW, leeway=30, audience={"x", "a"}).audience == ("a", "b")


def test_parse_claims_is_strict_and_depth_bounded() -> None:
    assert parse_claims(b'{"a":{"b":[1]}}') == {"a": {"b": [1]}}
    deep = b'{"a":' + b'{"a":' * 64 + b"{}" + b"}" * 65
    for bad in (b'{"a":1,"a":2}', b'{"a":NaN}', b'{"a":1e309}', b"[1]", b"\xff", deep):
        with pytest.raises(JoseError) as err:
            parse_claims(bad)
        assert err.value.reason == R.TOKEN_MALFORMED


# ------------------------------------------------------------ the header memo
def test_a_remembered_header_yields_what_parsing_it_yields() -> None:
    private = _private("ES256")
    memo: dict[str, Any] = {}
    common: dict[str, Any] = {"algorithms": frozenset({"ES256"}), "max_bytes": 8192}
    first, second = _token("ES256", private), _token("ES256", private, sub="t")
    assert first.split(".")[0] == second.split(".")[0]
    fresh = parse_compact(second, **common)
    parse_compact(first, header_memo=memo, **common)
    assert len(memo) == 1
    remembered = parse_compact(second, header_memo=memo, **common)
    assert remembered[:5] == fresh[:5] and dict(remembered.header) == dict(fresh.header)
    with pytest.raises(TypeError):
        remembered.header["alg"] = "none"  # type: ignore[index]
    # A remembered header does not excuse the other segments.
    head, payload, _ = second.split(".")
    with pytest.raises(JoseError) as err:
        parse_compact(f"{head}.{payload}.", header_memo=memo, **common)
    assert err.value.reason == R.TOKEN_MALFORMED


def test_a_refused_header_is_never_remembered_and_the_memo_stays_bounded() -> None:
    private = _private("ES256")
    memo: dict[str, Any] = {}
    common: dict[str, Any] = {"algorithms": frozenset({"ES256"}), "max_bytes": 65536}
    for header in ({"typ": "JWT"}, {"crit": ["x"]}, {"kid": 7}):
        with pytest.raises(JoseError):
            parse_compact(_token("ES256", private, header), typ=Typ.ACCESS_TOKEN,
                          header_memo=memo, **common)  # fmt: skip
    assert memo == {}
    for n in range(200):
        parse_compact(_token("ES256", private, {"kid": f"k{n}"}), header_memo=memo, **common)
        assert len(memo) <= 64
    parse_compact(_token("ES256", private, {"kid": "k" * 600}), header_memo=memo, **common)
    assert all(len(segment) <= 512 for segment in memo)
