"""Server-streaming calls fail with the same typed exceptions as unary ones.

A scripted WatchRevocations on an in-process server ends its streams with rich
statuses; the client's interceptors must type them wherever they surface
(``read()``, ``async for``), keep the status code on the exception, and the
RevocationWatcher must still tell a transient failure (reconnect with the
cursor) from a refusal (stop and report).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest
from agentauth import (
    ControlPlaneClient,
    NotFoundError,
    PermissionDeniedError,
    RevocationWatcher,
    UnavailableError,
    client_interceptors,
)
from agentauth.v1 import token_pb2

from tests.sdk.scripted_server import Abort, ScriptedWatch, serve, watch_servicer

ORG = "orgs/0123456789abcdef0123456789abcdef"
NOT_FOUND = Abort(grpc.StatusCode.NOT_FOUND, "RESOURCE_NOT_FOUND", "no such org", {"field": "parent"})


def synced(cursor: str) -> token_pb2.WatchRevocationsResponse:
    return token_pb2.WatchRevocationsResponse(synced=True, cursor=cursor)


@pytest.fixture
async def refused() -> AsyncIterator[tuple[ControlPlaneClient, ScriptedWatch]]:
    servicer = ScriptedWatch([[NOT_FOUND]])
    async with serve(watch_servicer(servicer)) as target:
        async with ControlPlaneClient(target, "k-test") as client:
            yield client, servicer


async def test_read_raises_the_typed_error_with_its_code(
    refused: tuple[ControlPlaneClient, ScriptedWatch],
) -> None:
    client, _ = refused
    call = client.tokens.WatchRevocations(token_pb2.WatchRevocationsRequest(parent=ORG))
    with pytest.raises(NotFoundError) as info:
        async with asyncio.timeout(10):
            await call.read()
    err = info.value
    assert (err.code, err.reason, err.domain) == (
        grpc.StatusCode.NOT_FOUND,
        "RESOURCE_NOT_FOUND",
        "agentauth",
    )
    assert err.metadata == {"field": "parent"} and err.message == "no such org"
    # Not chained: the raw error's trailers and debug string stay out of tracebacks.
    assert err.__cause__ is None and err.__suppress_context__
    # The call object still answers for the real call.
    assert await call.code() is grpc.StatusCode.NOT_FOUND


async def test_async_iteration_raises_the_typed_error(
    refused: tuple[ControlPlaneClient, ScriptedWatch],
) -> None:
    client, servicer = refused
    call = client.tokens.WatchRevocations(token_pb2.WatchRevocationsRequest(parent=ORG))
    with pytest.raises(NotFoundError):
        async with asyncio.timeout(10):
            _ = [m async for m in call]
    assert servicer.authorization == ["Bearer k-test"]


async def test_messages_before_the_failure_arrive_first() -> None:
    servicer = ScriptedWatch([[synced("c1"), Abort(grpc.StatusCode.UNAVAILABLE, "BACKEND_DOWN")]])
    async with serve(watch_servicer(servicer)) as target, ControlPlaneClient(target) as client:
        call = client.tokens.WatchRevocations(token_pb2.WatchRevocationsRequest(parent=ORG))
        got = []
        with pytest.raises(UnavailableError) as info:
            async with asyncio.timeout(10):
                async for msg in call:
                    got.append(msg.cursor)
    assert got == ["c1"] and info.value.reason == "BACKEND_DOWN"


async def test_watcher_reconnects_with_its_cursor_then_stops_on_refusal() -> None:
    servicer = ScriptedWatch(
        [
            [synced("c1"), Abort(grpc.StatusCode.UNAVAILABLE, "BACKEND_DOWN")],
            [synced("c2"), Abort(grpc.StatusCode.INTERNAL, "INTERNAL")],
            [Abort(grpc.StatusCode.PERMISSION_DENIED, "KEY_REVOKED", "key revoked")],
        ]
    )
    async with serve(watch_servicer(servicer)) as target, ControlPlaneClient(target) as client:
        watcher = RevocationWatcher(client, ORG, max_backoff=0.05)
        async with watcher:
            async with asyncio.timeout(10):
                await watcher.wait_synced()
                while watcher.error is None:
                    await asyncio.sleep(0.01)
    assert [r.cursor for r in servicer.requests] == ["", "c1", "c2"]
    assert isinstance(watcher.error, PermissionDeniedError)
    assert watcher.error.code is grpc.StatusCode.PERMISSION_DENIED
    assert watcher.error.reason == "KEY_REVOKED"
    assert watcher.revocations.synced_at is None


@pytest.mark.parametrize("typed_channel", [True, False], ids=["interceptors", "bare-channel"])
async def test_watcher_reports_a_refusal_typed_whatever_the_channel(typed_channel: bool) -> None:
    servicer = ScriptedWatch([[NOT_FOUND]])
    async with serve(watch_servicer(servicer)) as target:
        interceptors = client_interceptors("k-test") if typed_channel else None
        async with grpc.aio.insecure_channel(target, interceptors=interceptors) as channel:
            watcher = RevocationWatcher(ControlPlaneClient(target, channel=channel), ORG)
            async with watcher:
                with pytest.raises(NotFoundError) as info:
                    async with asyncio.timeout(10):
                        await watcher.wait_synced()
    assert watcher.error is info.value
    assert info.value.code is grpc.StatusCode.NOT_FOUND
    assert len(servicer.requests) == 1  # a refusal is not retried
