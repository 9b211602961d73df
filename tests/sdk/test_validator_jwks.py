"""Where the validator's keys come from: lazy fetch, refetch budget, last-good keys,
rotation, single flight, the key-set parser, and the default urllib fetcher
against a real loopback HTTP server (perf_security.md §A4 "JWKS behaviour", §B2.1 J11).
"""

from __future__ import annotations

import asyncio
import threading
import urllib.error
from typing import TYPE_CHECKING, Any

import pytest
from agentauth._validator import AsyncTokenValidator, TokenValidator
from agentauth._validator_errors import TokenReason
from agentauth._validator_jwks import check_jwks_url, urllib_fetch
from agentauth._validator_keys import parse_jwks

from tests.sdk.conftest import (
    ATTACKER_ED25519,
    AUDIENCE,
    JWKS_URL,
    NEXT_ES256,
    OUR_ED25519,
    OUR_ES256,
    b64url,
    compact_json,
    jwks,
    refused,
    refused_async,
    token,
)

if TYPE_CHECKING:
    from tests.sdk.conftest import (
        FakeClock,
        FetchSpy,
        LoopbackServer,
        MakeAsyncValidator,
        MakeValidator,
    )

R = TokenReason
BOTH = frozenset({"ES256", "EdDSA"})


# ------------------------------------------------------------ fetch policy
def test_keys_are_fetched_lazily_once(validator: TokenValidator, fetch: FetchSpy) -> None:
    assert fetch.calls == []
    for n in range(50):
        validator.validate(token(jti=f"j-{n}"))
    assert fetch.calls == [JWKS_URL]  # steady state: no fetch per verification


def test_key_set_is_refreshed_after_its_ttl(
    make_validator: MakeValidator, fetch: FetchSpy, clock: FakeClock
) -> None:
    validator = make_validator(jwks_cache_ttl=300)
    validator.validate(token(jti="a"))
    clock.advance(299)
    validator.validate(token(jti="b"))
    assert len(fetch.calls) == 1
    clock.advance(1)
    validator.validate(token(jti="c"))
    validator.validate(token(jti="d"))
    assert len(fetch.calls) == 2


def test_endpoint_down_keeps_the_last_good_keys(
    make_validator: MakeValidator, fetch: FetchSpy, clock: FakeClock
) -> None:
    validator = make_validator()
    validator.validate(token(jti="first"))
    fetch.error = OSError("connection refused")
    for step in range(10):
        clock.advance(100)  # past the TTL from the third step on
        validator.validate(token(jti=f"later-{step}", exp=int(clock.now) + 300))
    # Retried at most once per refetch interval, never per token.
    assert 2 <= len(fetch.calls) <= 1 + (1000 // 60)
    fetch.error = None
    clock.advance(60)
    validator.validate(token(jti="recovered", exp=int(clock.now) + 300))


def test_no_key_set_yet_is_unavailable_and_retried_once_a_second(
    make_validator: MakeValidator, fetch: FetchSpy, clock: FakeClock
) -> None:
    fetch.error = OSError("connection refused")
    validator = make_validator()
    for _ in range(20):
        refused(validator, token(), R.JWKS_UNAVAILABLE)
    assert len(fetch.calls) == 1
    clock.advance(1)
    refused(validator, token(), R.JWKS_UNAVAILABLE)
    assert len(fetch.calls) == 2
    fetch.error = None
    refused(validator, token(), R.JWKS_UNAVAILABLE)  # the retry budget holds
    clock.advance(1)
    validator.validate(token())
    assert len(fetch.calls) == 3


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b'{"keys": "all of them"}',
        b'{"keys": []}',
        b'{"keys": [], "keys": []}',
        b"[]",
        b'{"keys": [{"kty": "RSA", "kid": "r", "n": "!!", "e": "AQAB"}]}',
        b" " * (1024 * 1024 + 1),
        compact_json({"keys": [{"kty": "EC", "crv": "P-256", "kid": str(n)} for n in range(101)]}),
    ],
    ids=[
        "empty",
        "not-json",
        "keys-not-a-list",
        "no-keys",
        "duplicate-member",
        "not-an-object",
        "only-a-broken-rsa-key",
        "over-1-mib",
        "too-many-keys",
    ],
)
def test_cve_2026_102274_unusable_key_set_keeps_the_last_good_keys(
    make_validator: MakeValidator, fetch: FetchSpy, clock: FakeClock, body: bytes
) -> None:
    validator = make_validator()
    validator.validate(token(jti="before"))
    fetch.body = body
    clock.advance(301)
    validator.validate(token(jti="after", exp=int(clock.now) + 300))
    assert len(fetch.calls) == 2
    # And as the very first document, it is no key set at all.
    fresh = make_validator()
    refused(fresh, token(jti="fresh", exp=int(clock.now) + 300), R.JWKS_UNAVAILABLE)


def test_fetcher_returning_a_non_bytes_value_is_a_failed_fetch(
    make_validator: MakeValidator,
) -> None:
    validator = make_validator(fetch=lambda url: jwks(OUR_ES256).decode())
    refused(validator, token(), R.JWKS_UNAVAILABLE)


def test_key_rotation_new_kid_is_fetched_once_then_accepted(
    make_validator: MakeValidator, fetch: FetchSpy, clock: FakeClock
) -> None:
    validator = make_validator()
    validator.validate(token(jti="old-key"))
    fetch.publish(OUR_ES256, NEXT_ES256)  # the issuer publishes its next key
    clock.advance(61)  # ... and starts signing with it a refetch interval later
    rotated = token(NEXT_ES256, jti="new-key", exp=int(clock.now) + 300)
    assert validator.validate(rotated).jti == "new-key"
    assert len(fetch.calls) == 2
    for n in range(10):
        validator.validate(token(NEXT_ES256, jti=f"n-{n}", exp=int(clock.now) + 300))
        validator.validate(token(OUR_ES256, jti=f"o-{n}", exp=int(clock.now) + 300))
    assert len(fetch.calls) == 2


def test_withdrawn_key_stops_validating_even_from_the_cache(
    make_validator: MakeValidator, fetch: FetchSpy, clock: FakeClock
) -> None:
    validator = make_validator()
    bearer = token(exp=int(clock.now) + 3600)
    validator.validate(bearer)
    fetch.publish(NEXT_ES256)  # our key was compromised and removed
    clock.advance(301)
    validator.validate(token(NEXT_ES256, exp=int(clock.now) + 300))  # triggers the refresh
    refused(validator, bearer, R.TOKEN_KEY_UNKNOWN)


def test_key_withdrawn_during_a_verification_is_not_cached(
    make_validator: MakeValidator,
) -> None:
    validator = make_validator()
    validator.validate(token(jti="warm-up"))
    original = validator._verifier.verify

    def verify_then_withdraw(*args: Any) -> None:
        original(*args)
        # Another thread's refresh lands between the check and the cache insert.
        validator._adopt(jwks(NEXT_ES256))

    validator._verifier.verify = verify_then_withdraw  # type: ignore[method-assign]
    racing = token(jti="racing")
    validator.validate(racing)  # verified while the key was still trusted
    validator._verifier.verify = original  # type: ignore[method-assign]
    refused(validator, racing, R.TOKEN_KEY_UNKNOWN)  # but not remembered


# ------------------------------------------------------------- single flight
def test_threads_share_one_fetch(make_validator: MakeValidator, fetch: FetchSpy) -> None:
    fetch.delay = 0.2
    validator = make_validator()
    tokens = [token(jti=f"thread-{n}") for n in range(10)]
    start = threading.Barrier(len(tokens))
    results: list[object] = [None] * len(tokens)

    def work(index: int) -> None:
        start.wait()
        try:
            results[index] = validator.validate(tokens[index]).jti
        except Exception as exc:  # reported below
            results[index] = exc

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(tokens))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == [f"thread-{n}" for n in range(10)]
    assert len(fetch.calls) == 1


def test_threads_hammering_the_cache_stay_consistent(make_validator: MakeValidator) -> None:
    validator = make_validator(cache_size=8)
    tokens = [token(jti=f"t-{n}") for n in range(24)]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for round_ in range(30):
                bearer = tokens[(offset + round_) % len(tokens)]
                assert validator.validate(bearer, required_scopes=["mail.read"]).jti.startswith(
                    "t-"
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(validator._cache) <= 8


async def test_coroutines_share_one_fetch(
    make_async_validator: MakeAsyncValidator, fetch: FetchSpy
) -> None:
    fetch.delay = 0.2
    validator = make_async_validator()
    tokens = [token(jti=f"task-{n}") for n in range(10)]
    verified = await asyncio.gather(*(validator.validate(t) for t in tokens))
    assert [v.jti for v in verified] == [f"task-{n}" for n in range(10)]
    assert len(fetch.calls) == 1


async def test_async_unknown_kid_storm_and_outage(
    make_async_validator: MakeAsyncValidator, fetch: FetchSpy, clock: FakeClock
) -> None:
    validator = make_async_validator()
    await validator.validate(token())
    storm = [token(headers={"kid": f"kid-{n}"}) for n in range(200)]
    for bearer in storm:
        await refused_async(validator, bearer, R.TOKEN_KEY_UNKNOWN)
    assert len(fetch.calls) == 1
    fetch.error = OSError("down")
    clock.advance(400)
    await validator.validate(token(jti="stale-keys", exp=int(clock.now) + 300))
    assert len(fetch.calls) == 2


async def test_async_refresh_keys_at_startup(
    make_async_validator: MakeAsyncValidator, fetch: FetchSpy
) -> None:
    validator = make_async_validator()
    assert await validator.refresh_keys()
    await validator.validate(token())
    assert len(fetch.calls) == 1
    fetch.error = OSError("down")
    down = make_async_validator()
    assert not await down.refresh_keys()


def test_sync_refresh_keys_at_startup(make_validator: MakeValidator, fetch: FetchSpy) -> None:
    validator = make_validator()
    assert validator.refresh_keys()
    validator.validate(token())
    assert len(fetch.calls) == 1


# ---------------------------------------------------------- key-set parsing
def _keys(*members: dict[str, Any], algorithms: frozenset[str] = BOTH) -> set[str]:
    body = compact_json({"keys": [*members, OUR_ED25519.jwk]})
    return set(parse_jwks(body, algorithms)) - {OUR_ED25519.kid}


def test_rfc7517_5_usable_keys_are_bound_to_their_algorithm() -> None:
    keys = parse_jwks(jwks(OUR_ES256, OUR_ED25519), BOTH)
    assert {kid: key.alg for kid, key in keys.items()} == {
        OUR_ES256.kid: "ES256",
        OUR_ED25519.kid: "EdDSA",
    }
    without_alg = {k: v for k, v in OUR_ES256.jwk.items() if k != "alg"}
    assert _keys(without_alg) == {OUR_ES256.kid}  # implied by kty/crv
    assert set(parse_jwks(jwks(OUR_ES256, OUR_ED25519), frozenset({"ES256"}))) == {OUR_ES256.kid}


@pytest.mark.parametrize(
    "change",
    [
        {"alg": "ES384"},
        {"alg": "EdDSA"},
        {"use": "enc"},
        {"key_ops": ["encrypt"]},
        {"key_ops": "verify"},
        {"crv": "P-384"},
        {"kty": "RSA"},
        {"kid": None},
        {"kid": ""},
        {"kid": "k" * 257},
        {"x": OUR_ES256.jwk["x"][:-2]},
        {"x": OUR_ES256.jwk["x"] + "A"},
        {"x": OUR_ES256.jwk["x"][:-1] + "_"},  # non-canonical trailing bits
        {"y": OUR_ES256.jwk["x"]},  # not on the curve
        {"y": None},
        {"d": "VEam9m_-UqkXlxrvHXsI1xzjH9s4MUj5exYP4hov8Mc"},  # a leaked private key
    ],
    ids=lambda change: "-".join(f"{k}={str(v)[:12]}" for k, v in change.items()),
)
def test_rfc7517_5_unusable_keys_are_ignored(change: dict[str, Any]) -> None:
    member = {**OUR_ES256.jwk, **change}
    assert _keys({k: v for k, v in member.items() if v is not None}) == set()


def test_cve_2026_102275_okp_key_with_mismatched_private_part_is_ignored() -> None:
    mixed = {**OUR_ED25519.jwk, "kid": "mixed", "d": b64url(bytes(32))}
    x25519 = {**ATTACKER_ED25519.jwk, "kid": "x", "crv": "X25519"}
    assert _keys(mixed, x25519) == set()


def test_rfc7517_4_5_duplicate_kid_is_ambiguous_and_dropped() -> None:
    twin = {**NEXT_ES256.jwk, "kid": OUR_ES256.kid}
    assert _keys(OUR_ES256.jwk, twin, NEXT_ES256.jwk) == {NEXT_ES256.kid}


# ------------------------------------------------- default fetcher, loopback
def _serve_jwks(loopback: LoopbackServer, body: bytes | None = None) -> str:
    loopback.routes["/.well-known/jwks.json"] = (
        200,
        {"Content-Type": "application/json"},
        body if body is not None else jwks(OUR_ES256),
    )
    return loopback.origin


def test_default_fetcher_against_a_real_loopback_server(
    loopback: LoopbackServer, clock: FakeClock
) -> None:
    issuer = _serve_jwks(loopback)
    validator = TokenValidator(issuer, AUDIENCE, clock=clock)  # no fetch injected
    assert validator.validate(token(iss=issuer)).issuer == issuer
    assert validator.validate(token(iss=issuer, jti="again")).jti == "again"
    assert loopback.hits == ["/.well-known/jwks.json"]


async def test_default_fetcher_from_asyncio(loopback: LoopbackServer, clock: FakeClock) -> None:
    issuer = _serve_jwks(loopback)
    validator = AsyncTokenValidator(issuer, AUDIENCE, clock=clock)
    assert (await validator.validate(token(iss=issuer))).issuer == issuer
    assert loopback.hits == ["/.well-known/jwks.json"]


def test_default_fetcher_follows_a_same_origin_redirect(loopback: LoopbackServer) -> None:
    _serve_jwks(loopback)
    loopback.routes["/old"] = (302, {"Location": "/.well-known/jwks.json"}, b"")
    assert urllib_fetch(f"{loopback.origin}/old") == jwks(OUR_ES256)


@pytest.mark.parametrize("target", ["http://localhost:{port}/jwks", "https://127.0.0.1:{port}/x"])
def test_default_fetcher_refuses_a_redirect_to_another_origin(
    loopback: LoopbackServer, target: str, clock: FakeClock
) -> None:
    _serve_jwks(loopback)
    location = target.format(port=loopback.port)
    loopback.routes["/.well-known/jwks.json"] = (302, {"Location": location}, b"")
    with pytest.raises(urllib.error.HTTPError, match="another origin"):
        urllib_fetch(f"{loopback.origin}/.well-known/jwks.json")
    validator = TokenValidator(loopback.origin, AUDIENCE, clock=clock)
    refused(validator, token(iss=loopback.origin), R.JWKS_UNAVAILABLE)
    assert loopback.hits == ["/.well-known/jwks.json"] * 2  # and nothing else


def test_default_fetcher_caps_the_body(loopback: LoopbackServer) -> None:
    _serve_jwks(loopback, b"{" + b" " * (1024 * 1024) + b"}")
    with pytest.raises(OSError, match="too large"):
        urllib_fetch(f"{loopback.origin}/.well-known/jwks.json")


def test_default_fetcher_refuses_error_statuses(loopback: LoopbackServer) -> None:
    with pytest.raises(urllib.error.HTTPError):
        urllib_fetch(f"{loopback.origin}/missing")


def test_default_fetcher_times_out(loopback: LoopbackServer) -> None:
    _serve_jwks(loopback)
    loopback.delay = 1.0
    with pytest.raises(OSError):  # TimeoutError or URLError(timeout)
        urllib_fetch(f"{loopback.origin}/.well-known/jwks.json", timeout=0.2)


@pytest.mark.parametrize(
    "url",
    [
        "https://issuer.example/.well-known/jwks.json",
        "http://127.0.0.1:8080/jwks",
        "http://localhost/jwks",
        "http://[::1]:9000/jwks",
    ],
)
def test_jwks_url_allowed(url: str) -> None:
    check_jwks_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://issuer.example/.well-known/jwks.json",
        "http://127.0.0.2/jwks",
        "http://localhost.evil.example/jwks",
        "file:///etc/passwd",
        "ftp://issuer.example/jwks",
        "https://user:pass@issuer.example/jwks",
        "/.well-known/jwks.json",
        "https:///jwks",
        "",
    ],
)
def test_jwks_url_refused(url: str) -> None:
    with pytest.raises(ValueError):
        check_jwks_url(url)
    with pytest.raises(ValueError):
        urllib_fetch(url)
