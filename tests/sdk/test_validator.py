"""TokenValidator / AsyncTokenValidator: what a valid token yields, every refusal reason,
the verified-token cache, configuration checks and the error types.

Attack classes (RFC 8725, perf_security.md §B2.1) are in test_validator_rfc8725.py,
key-set behaviour in test_validator_jwks.py, framework adapters in
test_validator_integrations.py.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from agentauth._errors import PermissionDeniedError, UnauthenticatedError, UnavailableError
from agentauth._revocation_list import RevocationList
from agentauth._validator import AsyncTokenValidator, TokenValidator
from agentauth._validator_claims import VerifiedToken
from agentauth._validator_errors import (
    JwksUnavailableError,
    RevocationsUnavailableError,
    TokenForbiddenError,
    TokenInvalidError,
    TokenReason,
    token_error,
)

from tests.sdk.conftest import (
    AUDIENCE,
    CLIENT_ID,
    DROP,
    ISSUER,
    NOW,
    ORG,
    OTHER_ORG,
    OUR_ED25519,
    OUR_ES256,
    SUBAGENT,
    SUBJECT,
    claims,
    header,
    refused,
    refused_async,
    sign,
    token,
)

if TYPE_CHECKING:
    from tests.sdk.conftest import FakeClock, FetchSpy, MakeAsyncValidator, MakeValidator

R = TokenReason

#: The reasons the control plane and the SDK share (the brief's list, verbatim).
SHARED_REASONS = {
    "TOKEN_MALFORMED",
    "TOKEN_TYPE_INVALID",
    "TOKEN_ALGORITHM_NOT_ALLOWED",
    "TOKEN_KEY_UNKNOWN",
    "TOKEN_SIGNATURE_INVALID",
    "TOKEN_EXPIRED",
    "TOKEN_NOT_YET_VALID",
    "TOKEN_ISSUED_IN_FUTURE",
    "TOKEN_ISSUER_MISMATCH",
    "TOKEN_AUDIENCE_MISMATCH",
    "TOKEN_CLAIM_MISSING",
    "TOKEN_CLAIM_INVALID",
    "TOKEN_ORG_MISMATCH",
    "TOKEN_SCOPE_INSUFFICIENT",
    "TOKEN_ACT_TOO_DEEP",
    "TOKEN_REVOKED",
    "JWKS_UNAVAILABLE",
    "REVOCATIONS_UNAVAILABLE",
}


# ----------------------------------------------------------------- happy paths
def _assert_delegated(verified: VerifiedToken) -> None:
    assert verified.org_id == ORG
    assert verified.subject == SUBJECT
    assert verified.client_id == CLIENT_ID
    assert verified.actor_chain == (CLIENT_ID,)
    assert verified.actor == CLIENT_ID
    assert verified.scopes == frozenset({"tools.execute", "mail.read"})
    assert verified.audience == (AUDIENCE,)
    assert verified.issuer == ISSUER
    assert verified.jti == "jti-0001"
    assert verified.expires_at == NOW + 300.0
    assert verified.issued_at == NOW - 10.0
    assert isinstance(verified.expires_at, float)
    assert verified.claims["org_id"] == ORG


def test_es256_token_is_valid(validator: TokenValidator) -> None:
    _assert_delegated(validator.validate(token(), required_scopes=["mail.read"]))


def test_eddsa_token_is_valid(make_validator: MakeValidator) -> None:
    _assert_delegated(make_validator(algorithms=["EdDSA"]).validate(token(OUR_ED25519)))


async def test_async_es256_and_eddsa_tokens_are_valid(
    make_async_validator: MakeAsyncValidator,
) -> None:
    validator = make_async_validator(algorithms=("ES256", "EdDSA"))
    _assert_delegated(await validator.validate(token(), required_scopes=("tools.execute",)))
    _assert_delegated(await validator.validate(token(OUR_ED25519), expected_org=ORG))


async def test_async_refusals_are_the_same(async_validator: AsyncTokenValidator) -> None:
    await refused_async(async_validator, token(exp=NOW - 100), R.TOKEN_EXPIRED)
    await refused_async(async_validator, "x.y", R.TOKEN_MALFORMED)
    await refused_async(
        async_validator, token(), R.TOKEN_SCOPE_INSUFFICIENT, required_scopes=["admin"]
    )


def test_service_account_token_has_no_actor(validator: TokenValidator) -> None:
    service_account = f"orgs/{ORG}/serviceAccounts/{'c' * 32}"
    verified = validator.validate(token(sub=service_account, act=DROP))
    assert verified.subject == service_account
    assert verified.actor_chain == ()
    assert verified.actor is None


def test_rfc8693_4_1_actor_chain_lists_the_current_actor_first(validator: TokenValidator) -> None:
    # The subagent acts now; the agent that delegated to it is nested inside.
    verified = validator.validate(token(act={"sub": SUBAGENT, "act": {"sub": CLIENT_ID}}))
    assert verified.actor_chain == (SUBAGENT, CLIENT_ID)
    assert verified.actor == SUBAGENT


def test_claims_are_a_deep_read_only_copy(validator: TokenValidator) -> None:
    verified = validator.validate(token(aud=[AUDIENCE, "x"], txn="t-1"))
    assert isinstance(verified.claims, Mapping)
    assert verified.claims["txn"] == "t-1"
    assert verified.claims["aud"] == (AUDIENCE, "x")
    with pytest.raises(TypeError):
        verified.claims["sub"] = "admin"  # type: ignore[index]
    with pytest.raises(TypeError):
        verified.claims["act"]["sub"] = "admin"
    assert "claims" not in repr(verified)
    # Frozen, and hashable although claims is a mapping.
    with pytest.raises(AttributeError):
        verified.subject = "admin"  # type: ignore[misc]
    assert hash(verified) == hash(validator.validate(token(aud=[AUDIENCE, "x"], txn="t-1")))


def test_has_scopes(validator: TokenValidator) -> None:
    verified = validator.validate(token())
    assert verified.has_scopes()
    assert verified.has_scopes("mail.read")
    assert verified.has_scopes("mail.read", "tools.execute")
    assert not verified.has_scopes("mail.read", "mail.send")


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (DROP, frozenset()),
        ("", frozenset()),
        ("a", frozenset({"a"})),
        ("a b a", frozenset({"a", "b"})),
    ],
)
def test_rfc6749_3_3_scope_values(validator: TokenValidator, scope: Any, expected: Any) -> None:
    assert validator.validate(token(scope=scope)).scopes == expected


@pytest.mark.parametrize("scope", ["a  b", " a", "a ", ["a", "b"], 5, None])
def test_rfc6749_3_3_malformed_scope_is_invalid(validator: TokenValidator, scope: Any) -> None:
    refused(validator, token(scope=scope), R.TOKEN_CLAIM_INVALID)


# ------------------------------------------------------------- every reason
def test_reasons_are_exactly_the_shared_list() -> None:
    assert TokenReason.all() == SHARED_REASONS
    for reason in SHARED_REASONS:
        assert getattr(TokenReason, reason) == reason


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "exp", "iat", "jti", "client_id", "org_id"])
def test_rfc9068_2_2_required_claims(validator: TokenValidator, claim: str) -> None:
    err = refused(validator, token(**{claim: DROP}), R.TOKEN_CLAIM_MISSING)
    assert err.metadata == {"claim": claim}


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("sub", ""),
        ("sub", 5),
        ("jti", 7),
        ("jti", ""),
        ("client_id", None),
        ("client_id", ["a"]),
        ("org_id", ""),
        ("org_id", {"id": ORG}),
        ("act", "agent"),
        ("act", None),
        ("act", {"client_id": CLIENT_ID}),
        ("act", {"sub": ""}),
        ("act", {"sub": SUBAGENT, "act": []}),
    ],
)
def test_claim_with_wrong_type_is_invalid(
    validator: TokenValidator, claim: str, value: Any
) -> None:
    err = refused(
        validator, sign(header(), claims(**{claim: value}), OUR_ES256), R.TOKEN_CLAIM_INVALID
    )
    assert err.metadata == {"claim": claim}


def test_every_token_reason_has_a_test(validator: TokenValidator, fetch: FetchSpy) -> None:
    """One refusal per reason through the public call (details in the focused tests)."""
    cases: dict[str, tuple[Any, dict[str, Any]]] = {
        R.TOKEN_MALFORMED: ("a.b", {}),
        R.TOKEN_TYPE_INVALID: (token(headers={"typ": "JWT"}), {}),
        R.TOKEN_ALGORITHM_NOT_ALLOWED: (sign(header(alg="ES384"), claims(), OUR_ES256), {}),
        R.TOKEN_KEY_UNKNOWN: (sign(header(kid="nope"), claims(), OUR_ES256), {}),
        R.TOKEN_SIGNATURE_INVALID: (sign(header(), claims(), OUR_ED25519), {}),
        R.TOKEN_EXPIRED: (token(exp=NOW - 31), {}),
        R.TOKEN_NOT_YET_VALID: (token(nbf=NOW + 31), {}),
        R.TOKEN_ISSUED_IN_FUTURE: (token(iat=NOW + 31, nbf=DROP), {}),
        R.TOKEN_ISSUER_MISMATCH: (token(iss="https://evil.example"), {}),
        R.TOKEN_AUDIENCE_MISMATCH: (token(aud="https://other.example"), {}),
        R.TOKEN_CLAIM_MISSING: (token(jti=DROP), {}),
        R.TOKEN_CLAIM_INVALID: (token(sub=""), {}),
        R.TOKEN_ORG_MISMATCH: (token(), {"expected_org": OTHER_ORG}),
        R.TOKEN_SCOPE_INSUFFICIENT: (token(), {"required_scopes": ["admin"]}),
        R.TOKEN_ACT_TOO_DEEP: (token(act={"sub": "a", "act": {"sub": "b"}}), {}),
    }
    shallow = TokenValidator(ISSUER, AUDIENCE, clock=validator._clock, fetch=fetch, max_act_depth=1)
    for reason, (bearer, kwargs) in cases.items():
        refused(shallow, bearer, reason, **kwargs)
    # The rest are reached through their own paths: a revocation list that
    # was never synced, then one that lists the token, then no key set ever.
    revocations = RevocationList(clock=validator._clock)
    listed = TokenValidator(
        ISSUER, AUDIENCE, clock=validator._clock, fetch=fetch, revocations=revocations
    )
    err = refused(listed, token(), R.REVOCATIONS_UNAVAILABLE)
    assert isinstance(err, UnavailableError)
    revocations.mark_synced()
    assert listed.validate(token()).jti == "jti-0001"
    revocations.add(["jti-0001"], NOW + 300)
    refused(listed, token(), R.TOKEN_REVOKED)  # a cache hit is refused too
    fetch.error = OSError("down")
    fresh = TokenValidator(ISSUER, AUDIENCE, clock=validator._clock, fetch=fetch)
    refused(fresh, token(), R.JWKS_UNAVAILABLE)
    covered = set(cases) | {R.JWKS_UNAVAILABLE, R.TOKEN_REVOKED, R.REVOCATIONS_UNAVAILABLE}
    assert covered == SHARED_REASONS


# --------------------------------------------------------------- org & scopes
def test_expected_org_from_configuration_and_per_call(make_validator: MakeValidator) -> None:
    pinned = make_validator(expected_org=ORG)
    assert pinned.validate(token()).org_id == ORG
    refused(pinned, token(org_id=OTHER_ORG), R.TOKEN_ORG_MISMATCH)
    # A per-call org replaces the configured one.
    assert pinned.validate(token(org_id=OTHER_ORG), expected_org=OTHER_ORG).org_id == OTHER_ORG
    refused(pinned, token(), R.TOKEN_ORG_MISMATCH, expected_org=OTHER_ORG)


def test_org_mismatch_does_not_name_either_org(make_validator: MakeValidator) -> None:
    err = refused(make_validator(), token(), R.TOKEN_ORG_MISMATCH, expected_org=OTHER_ORG)
    for text in (str(err), repr(err), *err.metadata.values()):
        assert ORG not in text and OTHER_ORG not in text


def test_required_scopes(validator: TokenValidator) -> None:
    bearer = token()
    validator.validate(bearer, required_scopes=["mail.read", "tools.execute"])
    validator.validate(bearer, required_scopes=frozenset({"mail.read"}))
    validator.validate(bearer, required_scopes=(s for s in ["mail.read"]))
    err = refused(
        validator, bearer, R.TOKEN_SCOPE_INSUFFICIENT, required_scopes=["mail.send", "mail.read"]
    )
    assert err.metadata == {"requiredScopes": "mail.read mail.send"}
    # A scope that is a prefix or substring of a granted one is not granted.
    refused(validator, bearer, R.TOKEN_SCOPE_INSUFFICIENT, required_scopes=["mail"])
    refused(validator, bearer, R.TOKEN_SCOPE_INSUFFICIENT, required_scopes=["tools.execute.all"])


def test_required_scopes_as_a_string_is_a_programming_error(validator: TokenValidator) -> None:
    with pytest.raises(TypeError, match="required_scopes"):
        validator.validate(token(), required_scopes="mail.read")


# ------------------------------------------------------------------ the cache
def _count_verifications(validator: TokenValidator | AsyncTokenValidator) -> list[int]:
    calls: list[int] = []
    original = validator._verifier.verify

    def counting(*args: Any) -> None:
        calls.append(1)
        original(*args)

    validator._verifier.verify = counting  # type: ignore[method-assign]
    return calls


def test_cache_hit_skips_the_signature_check(validator: TokenValidator) -> None:
    verifications = _count_verifications(validator)
    bearer = token()
    first = validator.validate(bearer)
    for _ in range(5):
        assert validator.validate(bearer) is first
    assert len(verifications) == 1


async def test_async_cache_hit_skips_the_signature_check(
    async_validator: AsyncTokenValidator,
) -> None:
    verifications = _count_verifications(async_validator)
    bearer = token()
    first = await async_validator.validate(bearer)
    assert await async_validator.validate(bearer) is first
    assert len(verifications) == 1


def test_cache_never_outlives_exp_plus_leeway(validator: TokenValidator, clock: FakeClock) -> None:
    bearer = token(exp=NOW + 60)
    validator.validate(bearer)
    clock.advance(60 + 30)  # exactly exp + leeway: a fresh check would still pass
    validator.validate(bearer)
    clock.advance(0.001)
    refused(validator, bearer, R.TOKEN_EXPIRED)
    refused(validator, bearer, R.TOKEN_EXPIRED)  # and the entry is gone, not resurrected


def test_cache_hit_gives_the_same_answer_as_a_fresh_check(
    validator: TokenValidator, clock: FakeClock
) -> None:
    bearer = token(nbf=NOW + 20, iat=NOW - 5)
    validator.validate(bearer)  # within the leeway of nbf
    clock.advance(-11)  # the clock stepped back: now before nbf - leeway
    refused(validator, bearer, R.TOKEN_NOT_YET_VALID)


def test_cache_hit_still_checks_scopes_and_org(validator: TokenValidator) -> None:
    bearer = token()
    validator.validate(bearer)
    refused(validator, bearer, R.TOKEN_SCOPE_INSUFFICIENT, required_scopes=["admin"])
    refused(validator, bearer, R.TOKEN_ORG_MISMATCH, expected_org=OTHER_ORG)
    validator.validate(bearer, required_scopes=["mail.read"], expected_org=ORG)


def test_cache_is_a_bounded_lru(make_validator: MakeValidator) -> None:
    validator = make_validator(cache_size=2)
    verifications = _count_verifications(validator)
    a, b, c = (token(jti=f"j-{n}") for n in "abc")
    validator.validate(a)
    validator.validate(b)
    validator.validate(a)  # a is now the most recent
    validator.validate(c)  # evicts b
    assert len(verifications) == 3
    validator.validate(a)
    assert len(verifications) == 3
    validator.validate(b)
    assert len(verifications) == 4
    assert len(validator._cache) == 2


def test_cache_can_be_disabled(make_validator: MakeValidator) -> None:
    validator = make_validator(cache_size=0)
    verifications = _count_verifications(validator)
    bearer = token()
    validator.validate(bearer)
    validator.validate(bearer)
    assert len(verifications) == 2


def test_refused_tokens_are_not_cached(validator: TokenValidator) -> None:
    verifications = _count_verifications(validator)
    forged = sign(header(), claims(), OUR_ED25519)  # our kid, another key
    for _ in range(3):
        refused(validator, forged, R.TOKEN_SIGNATURE_INVALID)
    assert len(verifications) == 3
    assert len(validator._cache) == 0


def test_cache_is_keyed_by_the_whole_token(validator: TokenValidator) -> None:
    # Same claims signed twice (ECDSA is randomised): two tokens, two entries.
    first, second = token(), token()
    assert first != second
    validator.validate(first)
    validator.validate(second)
    assert len(validator._cache) == 2
    # Keyed by the exact token string (issue 10: a SHA-256 per hit capped the hit
    # rate); a dict hit compares the whole string, so only the same token hits.
    assert set(validator._cache) == {first, second}


# -------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"algorithms": "ES256"}, TypeError),
        ({"algorithms": []}, ValueError),
        ({"algorithms": ["ES256", "HS256"]}, ValueError),
        ({"algorithms": ["none"]}, ValueError),
        ({"algorithms": ["RS256"]}, ValueError),
        ({"issuer": ""}, ValueError),
        ({"audience": ""}, ValueError),
        ({"expected_org": ""}, ValueError),
        ({"leeway": -1}, ValueError),
        ({"leeway": float("nan")}, TypeError),
        ({"leeway": True}, TypeError),
        ({"max_token_bytes": 0}, ValueError),
        ({"max_token_bytes": 8192.0}, TypeError),
        ({"max_act_depth": -1}, ValueError),
        ({"refetch_interval": 0}, ValueError),
        ({"jwks_cache_ttl": -5}, ValueError),
        ({"cache_size": -1}, ValueError),
        ({"clock": 5}, TypeError),
        ({"fetch": "https://x"}, TypeError),
        ({"jwks_url": "http://issuer.example/jwks.json"}, ValueError),
        ({"jwks_url": "file:///etc/passwd"}, ValueError),
        ({"issuer": "http://issuer.example"}, ValueError),  # derived URL is plain http
    ],
)
def test_bad_configuration_is_refused_at_construction(
    kwargs: dict[str, Any], error: type[Exception]
) -> None:
    arguments: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, **kwargs}
    with pytest.raises(error):
        TokenValidator(arguments.pop("issuer"), arguments.pop("audience"), **arguments)
    arguments = {"issuer": ISSUER, "audience": AUDIENCE, **kwargs}
    with pytest.raises(error):
        AsyncTokenValidator(arguments.pop("issuer"), arguments.pop("audience"), **arguments)


def test_jwks_url_defaults_to_the_issuer_well_known_path() -> None:
    assert TokenValidator(ISSUER, AUDIENCE).jwks_url == f"{ISSUER}/.well-known/jwks.json"
    assert TokenValidator(ISSUER + "/", AUDIENCE).jwks_url == f"{ISSUER}/.well-known/jwks.json"
    explicit = "https://keys.example/jwks"
    assert TokenValidator(ISSUER, AUDIENCE, jwks_url=explicit).jwks_url == explicit
    assert "jwks_url" in repr(TokenValidator(ISSUER, AUDIENCE))


def test_construction_fetches_nothing(make_validator: MakeValidator, fetch: FetchSpy) -> None:
    make_validator()
    assert fetch.calls == []


# ---------------------------------------------------------------- error types
@pytest.mark.parametrize("reason", sorted(SHARED_REASONS))
def test_errors_are_built_like_the_servers(reason: str) -> None:
    err = token_error(reason, {"claim": "exp"})
    expected: tuple[type[Exception], grpc.StatusCode]
    if reason in (R.TOKEN_SCOPE_INSUFFICIENT, R.TOKEN_ORG_MISMATCH):
        expected = (TokenForbiddenError, grpc.StatusCode.PERMISSION_DENIED)
        assert isinstance(err, PermissionDeniedError)
    elif reason == R.JWKS_UNAVAILABLE:
        expected = (JwksUnavailableError, grpc.StatusCode.UNAVAILABLE)
        assert isinstance(err, UnavailableError)
    elif reason == R.REVOCATIONS_UNAVAILABLE:
        expected = (RevocationsUnavailableError, grpc.StatusCode.UNAVAILABLE)
        assert isinstance(err, UnavailableError)
    else:
        expected = (TokenInvalidError, grpc.StatusCode.UNAUTHENTICATED)
        assert isinstance(err, UnauthenticatedError)
    assert (type(err), err.code) == expected
    assert (err.reason, err.domain, err.metadata) == (reason, "agentauth", {"claim": "exp"})
    assert err.message and str(err) == f"{reason}: {err.message}"
    clone = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert type(clone) is type(err)
    assert (clone.reason, clone.code, clone.message) == (err.reason, err.code, err.message)


def test_refusals_are_not_chained_to_internal_exceptions(validator: TokenValidator) -> None:
    err = refused(validator, "!!!!.!!!!.!!!!", R.TOKEN_MALFORMED)
    assert err.__cause__ is None
    assert err.__suppress_context__ or err.__context__ is None
