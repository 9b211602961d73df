"""TokenService.WatchRevocations and the SDK's RevocationWatcher, on each database backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from agentauth import (
    AgentAuthError,
    AsyncTokenValidator,
    InvalidArgumentError,
    NotFoundError,
    RevocationList,
    RevocationWatcher,
    TokenInvalidError,
    UnauthenticatedError,
)
from agentauth.v1 import token_pb2 as tpb

from tests.api.chain_helpers import API, Chain, claims, open_chain


@pytest.fixture
async def chain(harness: Any) -> AsyncIterator[Chain]:
    async with open_chain(harness) as c:
        yield c


def watch(client: Any, org: str, cursor: str = "") -> Any:
    return client.tokens.WatchRevocations(tpb.WatchRevocationsRequest(parent=org, cursor=cursor))


async def read(call: Any, timeout: float = 10.0) -> tpb.WatchRevocationsResponse:
    msg = await asyncio.wait_for(call.read(), timeout)
    assert msg is not grpc.aio.EOF
    return msg


async def until_synced(call: Any) -> list[tpb.WatchRevocationsResponse]:
    """Messages up to and including the first ``synced`` one."""
    got = []
    while True:
        msg = await read(call)
        got.append(msg)
        if msg.synced:
            return got


async def refusal(call: Any) -> Exception:
    # The client's interceptors type stream failures as they do unary ones.
    with pytest.raises(AgentAuthError) as info:
        await asyncio.wait_for(call.read(), 10)
    return info.value


async def three_links(chain: Chain) -> tuple[str, str, str]:
    d = (await chain.delegate()).access_token
    s = (await chain.hop(d, "S")).access_token
    t = (await chain.hop(s, "T")).access_token
    return d, s, t


async def test_backlog_then_synced_then_each_revocation_with_its_descendants(
    chain: Chain,
) -> None:
    d, s, t = await three_links(chain)
    call = watch(chain.admin, chain.org)
    try:
        first = await until_synced(call)
        assert [m.jtis for m in first] == [[]]  # nothing revoked yet
        await chain.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=s))
        event = await read(call)
        # The revoked link and the one exchanged from it; the parent stays live.
        assert set(event.jtis) == {claims(s)["jti"], claims(t)["jti"]}
        assert event.expire_time.seconds == max(claims(s)["exp"], claims(t)["exp"])
        assert event.revoke_time.seconds > 0 and event.cursor and not event.synced
        assert await chain.active(d)
        # Revoking an already revoked token publishes nothing new.
        await chain.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=t))
        await chain.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=d))
        assert list((await read(call)).jtis) == [claims(d)["jti"]]
    finally:
        call.cancel()


async def test_resume_cursor_misses_nothing_and_repeats_nothing(chain: Chain) -> None:
    tokens = [(await chain.delegate()).access_token for _ in range(4)]
    jtis = [claims(tok)["jti"] for tok in tokens]
    call = watch(chain.admin, chain.org)
    await until_synced(call)
    await chain.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=tokens[0]))
    cursor = (await read(call)).cursor
    call.cancel()
    # Revocations while no one watches...
    for tok in tokens[1:3]:
        await chain.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=tok))
    # ...are delivered on resume, in order, without the one already seen.
    resumed = watch(chain.admin, chain.org, cursor)
    try:
        got = await until_synced(resumed)
        assert [list(m.jtis) for m in got] == [[jtis[1]], [jtis[2]], []]
        await chain.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=tokens[3]))
        assert list((await read(resumed)).jtis) == [jtis[3]]
    finally:
        resumed.cancel()
    # Without a cursor, the whole backlog of unexpired revocations.
    fresh = watch(chain.admin, chain.org)
    try:
        got = await until_synced(fresh)
        assert [j for m in got for j in m.jtis] == jtis
    finally:
        fresh.cancel()


async def test_bulk_revocation_is_published_too(chain: Chain) -> None:
    d, s, t = await three_links(chain)
    call = watch(chain.backend, chain.org)  # a resource server's SA token may watch
    try:
        await until_synced(call)
        await chain.admin.tokens.RevokeTokens(
            tpb.RevokeTokensRequest(parent=chain.org, txn=claims(d)["txn"])
        )
        event = await read(call)
        assert set(event.jtis) == {claims(x)["jti"] for x in (d, s, t)}
    finally:
        call.cancel()


async def test_watch_is_org_scoped_and_bad_input_is_refused(chain: Chain, harness: Any) -> None:
    other_org, other_admin, _ = await harness.new_org("Other")
    missing = "orgs/" + "0" * 32
    # Another org's feed looks exactly like a missing org's.
    a = await refusal(watch(other_admin, chain.org))
    b = await refusal(watch(other_admin, missing))
    assert isinstance(a, NotFoundError) and (a.reason, a.message) == (b.reason, b.message)
    # A cursor of org A is not a cursor of org B, even for the platform admin.
    call = watch(chain.admin, chain.org)
    cursor = (await until_synced(call))[-1].cursor
    call.cancel()
    err = await refusal(watch(harness.platform, other_org, cursor))
    assert isinstance(err, InvalidArgumentError) and err.metadata.get("field") == "cursor"
    for parent, cur in [
        ("", ""),
        ("orgs/../x", ""),
        (chain.org, "not-a-cursor"),
        (chain.org, "A" * 600),
        (chain.org, cursor[:-2]),
    ]:
        err = await refusal(watch(chain.admin, parent, cur))
        assert isinstance(err, InvalidArgumentError), (parent, cur[:20], err)
    # No credential, or a delegated token (issued for another audience), is refused.
    err = await refusal(watch(harness.client(None), chain.org))
    assert isinstance(err, UnauthenticatedError)
    delegated = (await chain.delegate()).access_token
    err = await refusal(watch(harness.client(delegated), chain.org))
    assert isinstance(err, UnauthenticatedError)


async def test_sdk_validator_rejects_revoked_descendants_offline(
    chain: Chain, harness: Any
) -> None:
    d, s, t = await three_links(chain)
    revocations = RevocationList()
    validator = AsyncTokenValidator(
        harness.servers.tokens.issuer, API, revocations=revocations, max_staleness=60
    )
    async with RevocationWatcher(chain.backend, chain.org, revocations) as watcher:
        await asyncio.wait_for(watcher.wait_synced(), 10)
        for tok in (d, s, t):
            assert (await validator.validate(tok)).org_id == claims(tok)["org_id"]
        await chain.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=s))
        for _ in range(100):
            if claims(t)["jti"] in revocations:
                break
            await asyncio.sleep(0.05)
        for tok in (s, t):  # the revoked link and its descendant; no network call each
            with pytest.raises(TokenInvalidError) as info:
                await validator.validate(tok)
            assert info.value.reason == "TOKEN_REVOKED"
        assert (await validator.validate(d)).jti == claims(d)["jti"]


async def test_sdk_watcher_stops_on_refusal_and_reports_it(chain: Chain, harness: Any) -> None:
    other_org, other_admin, _ = await harness.new_org("Other")
    watcher = RevocationWatcher(other_admin, chain.org)
    watcher.start()
    try:
        with pytest.raises(NotFoundError) as info:
            await asyncio.wait_for(watcher.wait_synced(), 10)
        assert info.value.code is grpc.StatusCode.NOT_FOUND
        assert watcher.error is info.value
        assert watcher.revocations.synced_at is None
    finally:
        await watcher.stop()


async def test_a_failure_mid_stream_is_a_clean_status_without_its_text(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    from control_plane.domain.errors import Unavailable
    from control_plane.storage import issued_tokens

    real = issued_tokens.revocations_after
    failures = iter([RuntimeError("canary-9f3b2e secret text"), Unavailable(debug="canary-db")])

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if calls.pop(0):
            raise next(failures)
        return await real(*args, **kwargs)

    for expected in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE):
        calls = [False, True]  # the backlog read works, the next one fails
        monkeypatch.setattr(issued_tokens, "revocations_after", flaky)
        call = watch(chain.admin, chain.org)
        await until_synced(call)
        await chain.admin.tokens.RevokeToken(
            tpb.RevokeTokenRequest(token=(await chain.delegate()).access_token)
        )
        with pytest.raises(AgentAuthError) as info:
            await asyncio.wait_for(call.read(), 10)
        assert info.value.code is expected
        # Typed without chaining the raw error: its debug string cannot ride along.
        assert info.value.__cause__ is None and info.value.__suppress_context__
        assert "canary" not in str(info.value) + repr(info.value)
        assert "canary" not in str(await call.details())
