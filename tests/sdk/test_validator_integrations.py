"""The validator in front of real servers: an in-process ``grpc.aio`` server with
ValidatorInterceptor, and an aiohttp app with validator_middleware (aiohttp.test_utils).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
from agentauth._errors import (
    PermissionDeniedError,
    UnauthenticatedError,
    UnavailableError,
    from_rpc_error,
)
from agentauth._validator import AsyncTokenValidator
from agentauth._validator_errors import TokenReason
from agentauth.integrations.aiohttp_auth import validator_middleware, verified_token
from agentauth.integrations.grpc_auth import ValidatorInterceptor, current_token
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.sdk.conftest import CLIENT_ID, NOW, ORG, OTHER_ORG, SUBJECT, token

if TYPE_CHECKING:
    from tests.sdk.conftest import FetchSpy, MakeAsyncValidator

R = TokenReason
SERVICE = "test.v1.EchoService"
ECHO = f"/{SERVICE}/Echo"
ADMIN = f"/{SERVICE}/Admin"
HEALTH = f"/{SERVICE}/Health"
WATCH = f"/{SERVICE}/Watch"
WATCH_WRITE = f"/{SERVICE}/WatchWrite"
COLLECT = f"/{SERVICE}/Collect"


# ---------------------------------------------------------------------- gRPC
class EchoService:
    """Handlers that report what current_token() says, and count their calls."""

    def __init__(self) -> None:
        self.calls = 0

    def _who(self) -> bytes:
        self.calls += 1
        verified = current_token()
        if verified is None:
            return b"anonymous"
        return f"{verified.subject}|{verified.actor}".encode()

    async def echo(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return self._who()

    async def watch(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        for _ in range(3):
            yield self._who()

    async def watch_write(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        await context.write(self._who())

    async def collect(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        count = 0
        async for _ in requests:
            count += 1
        return self._who() + f"|{count}".encode()


@pytest.fixture
async def grpc_target(
    make_async_validator: MakeAsyncValidator,
) -> AsyncIterator[tuple[str, EchoService]]:
    service = EchoService()
    interceptor = ValidatorInterceptor(
        make_async_validator(expected_org=ORG),
        required_scopes={ADMIN: ["admin"], ECHO: ["tools.execute"]},
        public_methods=[HEALTH],
    )
    server = grpc.aio.server(interceptors=[interceptor], options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Echo": grpc.unary_unary_rpc_method_handler(service.echo),
                    "Admin": grpc.unary_unary_rpc_method_handler(service.echo),
                    "Health": grpc.unary_unary_rpc_method_handler(service.echo),
                    "Watch": grpc.unary_stream_rpc_method_handler(service.watch),
                    "WatchWrite": grpc.unary_stream_rpc_method_handler(service.watch_write),
                    "Collect": grpc.stream_unary_rpc_method_handler(service.collect),
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", service
    finally:
        await server.stop(grace=None)


def _bearer(value: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {value}"),)


async def test_grpc_valid_token_reaches_the_handler(
    grpc_target: tuple[str, EchoService],
) -> None:
    target, service = grpc_target
    async with grpc.aio.insecure_channel(target) as channel:
        echo = channel.unary_unary(ECHO)
        assert await echo(b"", metadata=_bearer(token())) == f"{SUBJECT}|{CLIENT_ID}".encode()
        # Public: no token needed, and no token leaks in from another call.
        assert await channel.unary_unary(HEALTH)(b"") == b"anonymous"
    assert service.calls == 2


async def test_grpc_streaming_handlers_see_the_token(
    grpc_target: tuple[str, EchoService],
) -> None:
    target, _ = grpc_target
    expected = f"{SUBJECT}|{CLIENT_ID}".encode()
    async with grpc.aio.insecure_channel(target) as channel:
        replies = [r async for r in channel.unary_stream(WATCH)(b"", metadata=_bearer(token()))]
        assert replies == [expected] * 3
        written = channel.unary_stream(WATCH_WRITE)(b"", metadata=_bearer(token()))
        assert [r async for r in written] == [expected]
        collect = channel.stream_unary(COLLECT)
        assert await collect(iter([b"a", b"b"]), metadata=_bearer(token())) == expected + b"|2"


@pytest.mark.parametrize(
    ("method", "metadata", "code", "reason", "error_class"),
    [
        (ECHO, (), grpc.StatusCode.UNAUTHENTICATED, "CREDENTIALS_MISSING", UnauthenticatedError),
        (
            ECHO,
            (("authorization", "Basic dXNlcjpwYXNz"),),
            grpc.StatusCode.UNAUTHENTICATED,
            "CREDENTIALS_INVALID",
            UnauthenticatedError,
        ),
        (
            ECHO,
            _bearer(token(exp=NOW - 3600)),
            grpc.StatusCode.UNAUTHENTICATED,
            R.TOKEN_EXPIRED,
            UnauthenticatedError,
        ),
        (
            ECHO,
            _bearer("not.a.token"),
            grpc.StatusCode.UNAUTHENTICATED,
            R.TOKEN_MALFORMED,
            UnauthenticatedError,
        ),
        (
            ADMIN,
            _bearer(token()),
            grpc.StatusCode.PERMISSION_DENIED,
            R.TOKEN_SCOPE_INSUFFICIENT,
            PermissionDeniedError,
        ),
        (
            ECHO,
            _bearer(token(org_id=OTHER_ORG)),
            grpc.StatusCode.PERMISSION_DENIED,
            R.TOKEN_ORG_MISMATCH,
            PermissionDeniedError,
        ),
        (
            WATCH,
            _bearer(token(scope="")),
            None,  # no scope needed for Watch: passes
            None,
            None,
        ),
    ],
    ids=["missing", "basic", "expired", "malformed", "scope", "org", "stream-no-scope"],
)
async def test_grpc_refusals_carry_one_error_info(
    grpc_target: tuple[str, EchoService],
    method: str,
    metadata: tuple[tuple[str, str], ...],
    code: grpc.StatusCode | None,
    reason: str | None,
    error_class: type[Exception] | None,
) -> None:
    target, service = grpc_target
    async with grpc.aio.insecure_channel(target) as channel:
        if method == WATCH:
            replies = [r async for r in channel.unary_stream(WATCH)(b"", metadata=metadata)]
            assert len(replies) == 3
            return
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await channel.unary_unary(method)(b"", metadata=metadata)
    assert info.value.code() is code
    err = from_rpc_error(info.value)
    assert type(err) is error_class
    assert (err.reason, err.domain) == (reason, "agentauth")
    assert service.calls == 0  # the handler never ran


async def test_grpc_refused_stream_never_runs(grpc_target: tuple[str, EchoService]) -> None:
    target, service = grpc_target
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            _ = [r async for r in channel.unary_stream(WATCH)(b"")]
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert service.calls == 0


async def test_grpc_keys_unavailable_is_unavailable(
    make_async_validator: MakeAsyncValidator, fetch: FetchSpy
) -> None:
    fetch.error = OSError("down")
    server = grpc.aio.server(
        interceptors=[ValidatorInterceptor(make_async_validator())],
        options=[("grpc.so_reuseport", 0)],
    )
    service = EchoService()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(service.echo)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await channel.unary_unary(ECHO)(b"", metadata=_bearer(token()))
    finally:
        await server.stop(grace=None)
    err = from_rpc_error(info.value)
    assert type(err) is UnavailableError
    assert err.reason == R.JWKS_UNAVAILABLE


def test_grpc_interceptor_configuration_is_checked(async_validator: AsyncTokenValidator) -> None:
    with pytest.raises(TypeError):
        ValidatorInterceptor(async_validator, required_scopes={ECHO: "admin"})
    with pytest.raises(TypeError):
        ValidatorInterceptor(async_validator, public_methods=HEALTH)


# -------------------------------------------------------------------- aiohttp
async def _whoami(request: web.Request) -> web.Response:
    verified = verified_token(request)
    return web.json_response({"sub": verified.subject if verified else None})


@pytest.fixture
async def http_client(
    make_async_validator: MakeAsyncValidator,
) -> AsyncIterator[TestClient[Any, Any]]:
    middleware = validator_middleware(
        make_async_validator(expected_org=ORG),
        required_scopes=["tools.execute"],
        public_paths=["/healthz"],
    )
    app = web.Application(middlewares=[middleware])
    app.router.add_get("/whoami", _whoami)
    app.router.add_get("/healthz", _whoami)
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_aiohttp_valid_token(http_client: TestClient[Any, Any]) -> None:
    response = await http_client.get("/whoami", headers={"Authorization": f"Bearer {token()}"})
    assert response.status == 200
    assert await response.json() == {"sub": SUBJECT}
    # The scheme is case-insensitive (RFC 9110 §11.1).
    response = await http_client.get("/whoami", headers={"Authorization": f"bearer {token()}"})
    assert response.status == 200


async def test_aiohttp_public_path_needs_no_token(http_client: TestClient[Any, Any]) -> None:
    response = await http_client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"sub": None}


@pytest.mark.parametrize(
    ("headers", "status", "challenge", "error"),
    [
        ({}, 401, "Bearer", "CREDENTIALS_MISSING"),
        (
            {"Authorization": "Basic dXNlcjpwYXNz"},
            400,
            'Bearer error="invalid_request"',
            "CREDENTIALS_INVALID",
        ),
        (
            {"Authorization": "Bearer"},
            400,
            'Bearer error="invalid_request"',
            "CREDENTIALS_INVALID",
        ),
        (
            {"Authorization": f"Bearer {token(exp=NOW - 3600)}"},
            401,
            'Bearer error="invalid_token"',
            R.TOKEN_EXPIRED,
        ),
        (
            {"Authorization": f"Bearer {token(headers={'typ': 'JWT'})}"},
            401,
            'Bearer error="invalid_token"',
            R.TOKEN_TYPE_INVALID,
        ),
        (
            {"Authorization": f"Bearer {token(scope='mail.read')}"},
            403,
            'Bearer error="insufficient_scope", scope="tools.execute"',
            R.TOKEN_SCOPE_INSUFFICIENT,
        ),
        (
            {"Authorization": f"Bearer {token(org_id=OTHER_ORG)}"},
            403,
            None,
            R.TOKEN_ORG_MISMATCH,
        ),
    ],
    ids=["missing", "basic", "empty-bearer", "expired", "id-token", "scope", "org"],
)
async def test_rfc6750_3_aiohttp_refusals(
    http_client: TestClient[Any, Any],
    headers: dict[str, str],
    status: int,
    challenge: str | None,
    error: str,
) -> None:
    response = await http_client.get("/whoami", headers=headers)
    assert response.status == status
    assert response.headers.get("WWW-Authenticate") == challenge
    body = await response.json()
    assert body == {"error": error}
    bearer = headers.get("Authorization", "").removeprefix("Bearer ")
    if bearer:
        assert bearer not in await response.text()


async def test_aiohttp_two_authorization_headers_are_refused(
    http_client: TestClient[Any, Any],
) -> None:
    from multidict import CIMultiDict

    headers = CIMultiDict([("Authorization", f"Bearer {token()}"), ("Authorization", "Bearer x")])
    response = await http_client.get("/whoami", headers=headers)
    assert response.status == 400
    assert await response.json() == {"error": "CREDENTIALS_INVALID"}


async def test_aiohttp_keys_unavailable_is_503(
    make_async_validator: MakeAsyncValidator, fetch: FetchSpy
) -> None:
    fetch.error = OSError("down")
    app = web.Application(middlewares=[validator_middleware(make_async_validator())])
    app.router.add_get("/whoami", _whoami)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/whoami", headers={"Authorization": f"Bearer {token()}"})
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert await response.json() == {"error": R.JWKS_UNAVAILABLE}


# -------------------------------------------------------------- dependencies
def test_sdk_and_adapters_import_without_aiohttp_or_pyjwt() -> None:
    code = (
        "import sys\n"
        "sys.modules['aiohttp'] = None\n"
        "sys.modules['jwt'] = None\n"
        "import agentauth._validator, agentauth.integrations.grpc_auth\n"
        "import agentauth.integrations.aiohttp_auth as a\n"
        "try:\n"
        "    a.validator_middleware(None)\n"
        "except ImportError:\n"
        "    print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr
