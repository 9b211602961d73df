"""The SDK against an in-process grpc.aio server: typed errors and bearer metadata.

The fake service speaks raw bytes so the tests exercise the client's real
channel and interceptors without depending on the control plane.
"""

from __future__ import annotations

import pickle
from collections.abc import AsyncIterator
from typing import Any

import agentauth
import grpc
import grpc.aio
import pytest
from agentauth import (
    AgentAuthError,
    AlreadyExistsError,
    ControlPlaneClient,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from google.protobuf import any_pb2
from google.rpc.error_details_pb2 import ErrorInfo
from google.rpc.status_pb2 import Status
from grpc_status import rpc_status

SERVICE = "agentauth.testing.FakeService"
FAIL = f"/{SERVICE}/Fail"
FAIL_PLAIN = f"/{SERVICE}/FailPlain"
ECHO_AUTH = f"/{SERVICE}/EchoAuthorization"
API_KEY = "aa_test_0123456789abcdefSECRET"

# Every non-OK status code and the class the SDK must raise for it. Codes
# without a dedicated class fall back to the base class.
CODE_TO_CLASS: list[tuple[grpc.StatusCode, type[AgentAuthError]]] = [
    (grpc.StatusCode.CANCELLED, AgentAuthError),
    (grpc.StatusCode.UNKNOWN, AgentAuthError),
    (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
    (grpc.StatusCode.DEADLINE_EXCEEDED, AgentAuthError),
    (grpc.StatusCode.NOT_FOUND, NotFoundError),
    (grpc.StatusCode.ALREADY_EXISTS, AlreadyExistsError),
    (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError),
    (grpc.StatusCode.FAILED_PRECONDITION, FailedPreconditionError),
    (grpc.StatusCode.ABORTED, AgentAuthError),
    (grpc.StatusCode.OUT_OF_RANGE, AgentAuthError),
    (grpc.StatusCode.UNIMPLEMENTED, AgentAuthError),
    (grpc.StatusCode.INTERNAL, InternalError),
    (grpc.StatusCode.UNAVAILABLE, UnavailableError),
    (grpc.StatusCode.DATA_LOSS, AgentAuthError),
    (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
]


def _rich_status(code: grpc.StatusCode) -> grpc.Status:
    info = ErrorInfo(
        reason="RESOURCE_NOT_FOUND",
        domain="agentauth",
        metadata={"resourceName": "orgs/acme/users/u1", "statusCode": code.name},
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    status = Status(
        code=code.value[0], message="user orgs/acme/users/u1 not found", details=[detail]
    )
    return rpc_status.to_status(status)


async def _fail(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    # The request names the status code to fail with.
    await context.abort_with_status(_rich_status(grpc.StatusCode[request.decode()]))


async def _fail_plain(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    await context.abort(grpc.StatusCode[request.decode()], "plain failure")


async def _echo_authorization(
    request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
) -> bytes:
    values = [v for k, v in context.invocation_metadata() or () if k == "authorization"]
    return "\n".join(str(v) for v in values).encode()


@pytest.fixture
async def target() -> AsyncIterator[str]:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Fail": grpc.unary_unary_rpc_method_handler(_fail),
                    "FailPlain": grpc.unary_unary_rpc_method_handler(_fail_plain),
                    "EchoAuthorization": grpc.unary_unary_rpc_method_handler(_echo_authorization),
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


@pytest.fixture
async def client(target: str) -> AsyncIterator[ControlPlaneClient]:
    async with ControlPlaneClient(target, API_KEY, timeout=5.0) as c:
        yield c


async def _call(client: ControlPlaneClient, method: str, request: bytes) -> bytes:
    rpc: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = client.channel.unary_unary(method)
    return await rpc(request)


def test_every_status_code_is_covered() -> None:
    assert {code for code, _ in CODE_TO_CLASS} == set(grpc.StatusCode) - {grpc.StatusCode.OK}


@pytest.mark.parametrize(
    ("code", "expected"), CODE_TO_CLASS, ids=[code.name for code, _ in CODE_TO_CLASS]
)
async def test_status_code_maps_to_class(
    client: ControlPlaneClient, code: grpc.StatusCode, expected: type[AgentAuthError]
) -> None:
    with pytest.raises(AgentAuthError) as excinfo:
        await _call(client, FAIL, code.name.encode())
    err = excinfo.value
    assert type(err) is expected
    assert err.code is code
    assert err.reason == "RESOURCE_NOT_FOUND"
    assert err.domain == "agentauth"
    assert err.metadata == {"resourceName": "orgs/acme/users/u1", "statusCode": code.name}
    assert err.message == "user orgs/acme/users/u1 not found"


async def test_not_found_carries_error_info(client: ControlPlaneClient) -> None:
    with pytest.raises(NotFoundError) as excinfo:
        await _call(client, FAIL, b"NOT_FOUND")
    err = excinfo.value
    assert str(err) == "RESOURCE_NOT_FOUND: user orgs/acme/users/u1 not found"
    # The raw AioRpcError (trailers, debug string) is not chained.
    assert err.__cause__ is None
    assert err.__suppress_context__


async def test_metadata_stays_out_of_str_and_repr(client: ControlPlaneClient) -> None:
    with pytest.raises(NotFoundError) as excinfo:
        await _call(client, FAIL, b"NOT_FOUND")
    err = excinfo.value
    for text in (str(err), repr(err)):
        assert "resourceName" not in text
        assert "statusCode" not in text


async def test_error_without_error_info_uses_code_as_reason(client: ControlPlaneClient) -> None:
    with pytest.raises(PermissionDeniedError) as excinfo:
        await _call(client, FAIL_PLAIN, b"PERMISSION_DENIED")
    err = excinfo.value
    assert err.reason == "PERMISSION_DENIED"
    assert err.domain == ""
    assert err.metadata == {}
    assert str(err) == "PERMISSION_DENIED: plain failure"


async def test_unreachable_server_is_unavailable() -> None:
    # Port 1 on loopback: nothing listens there, so the connect fails fast.
    async with ControlPlaneClient("127.0.0.1:1", API_KEY, timeout=5.0) as c:
        with pytest.raises(UnavailableError):
            await _call(c, FAIL, b"NOT_FOUND")


def test_error_pickles() -> None:
    err = NotFoundError(
        "gone",
        code=grpc.StatusCode.NOT_FOUND,
        reason="RESOURCE_NOT_FOUND",
        domain="agentauth",
        metadata={"resourceName": "orgs/a"},
    )
    clone = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own bytes
    assert type(clone) is NotFoundError
    assert (clone.code, clone.reason, clone.domain, clone.metadata, clone.message) == (
        err.code,
        err.reason,
        err.domain,
        err.metadata,
        err.message,
    )


async def test_bearer_key_reaches_server(client: ControlPlaneClient) -> None:
    assert await _call(client, ECHO_AUTH, b"") == f"Bearer {API_KEY}".encode()


async def test_per_call_authorization_wins(client: ControlPlaneClient) -> None:
    rpc: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = client.channel.unary_unary(ECHO_AUTH)
    response = await rpc(b"", metadata=(("authorization", "Bearer other"),))
    assert response == b"Bearer other"


async def test_no_key_sends_no_authorization(target: str) -> None:
    async with ControlPlaneClient(target) as c:
        assert await _call(c, ECHO_AUTH, b"") == b""


async def test_own_channel_with_client_interceptors(target: str) -> None:
    channel = grpc.aio.insecure_channel(target, interceptors=agentauth.client_interceptors(API_KEY))
    async with ControlPlaneClient(target, channel=channel) as c:
        assert await _call(c, ECHO_AUTH, b"") == f"Bearer {API_KEY}".encode()
        with pytest.raises(NotFoundError):
            await _call(c, FAIL, b"NOT_FOUND")
    # A channel the caller built is the caller's to close.
    await channel.close()


async def test_own_channel_rejects_api_key(target: str) -> None:
    # Interceptors cannot be added to a built channel: the key would be lost.
    channel = grpc.aio.insecure_channel(target)
    with pytest.raises(ValueError, match="client_interceptors"):
        ControlPlaneClient(target, API_KEY, channel=channel)
    await channel.close()


async def test_repr_hides_api_key(client: ControlPlaneClient) -> None:
    assert API_KEY not in repr(client)
    assert "SECRET" not in repr(client)
    for interceptor in agentauth.client_interceptors(API_KEY):
        assert API_KEY not in repr(interceptor)


async def test_stubs_are_bound(client: ControlPlaneClient) -> None:
    from agentauth.v1 import admin_pb2_grpc, connection_pb2_grpc, token_pb2_grpc, tool_pb2_grpc

    assert isinstance(client.admin, admin_pb2_grpc.AdminServiceStub)
    assert isinstance(client.tools, tool_pb2_grpc.ToolServiceStub)
    assert isinstance(client.connections, connection_pb2_grpc.ConnectionServiceStub)
    assert isinstance(client.tokens, token_pb2_grpc.TokenServiceStub)


class _SyncStyleError(grpc.RpcError):
    """Shaped like the sync stack's errors: plain tuples for trailing metadata."""

    def __init__(self, code: grpc.StatusCode, details: str, trailers: tuple[Any, ...]) -> None:
        self._code, self._details, self._trailers = code, details, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[Any, ...]:
        return self._trailers


def test_sync_error_skips_other_details_to_find_error_info() -> None:
    other, info = any_pb2.Any(), any_pb2.Any()
    other.Pack(Status(code=5, message="not an ErrorInfo"))
    info.Pack(ErrorInfo(reason="ORG_NOT_FOUND", domain="agentauth"))
    status = Status(code=5, message="org not found", details=[other, info])
    err = agentauth.from_rpc_error(
        _SyncStyleError(
            grpc.StatusCode.NOT_FOUND,
            "org not found",
            (("grpc-status-details-bin", status.SerializeToString()),),
        )
    )
    assert type(err) is NotFoundError
    assert (err.reason, err.domain, err.message) == ("ORG_NOT_FOUND", "agentauth", "org not found")


def test_garbled_status_trailer_keeps_code_and_details() -> None:
    err = agentauth.from_rpc_error(
        _SyncStyleError(
            grpc.StatusCode.INTERNAL, "boom", (("grpc-status-details-bin", b"\xff\xff\xff"),)
        )
    )
    assert type(err) is InternalError
    assert str(err) == "INTERNAL: boom"



@pytest.mark.parametrize("key", ["aa_plat_x\ny", "aa plat", "aa_plat_\u00e9", " \n"])
def test_an_api_key_that_cannot_be_a_header_is_refused_by_name(key: str) -> None:
    """Refused when the client is built, by name, instead of deep in gRPC's C core;
    the key itself is not echoed."""
    with pytest.raises(ValueError) as err:
        ControlPlaneClient("127.0.0.1:1", key)
    assert "api_key must be printable ASCII" in str(err.value)
    assert not key.strip() or key.strip() not in str(err.value)
