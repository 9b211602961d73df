"""Async client for the agentauth control plane."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import grpc
import grpc.aio

from agentauth._errors import from_rpc_error
from agentauth._tools import (
    ToolCallResult,
    ToolEventCallback,
    ToolSpec,
    _ToolStream,
    call_deadline,
    execute_request,
    notify,
)
from agentauth._version import __version__
from agentauth.v1 import (
    admin_pb2_grpc,
    connection_pb2_grpc,
    token_pb2_grpc,
    tool_pb2,
    tool_pb2_grpc,
)

__all__ = ["ControlPlaneClient", "client_interceptors"]

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

_AUTHORIZATION = "authorization"
_USER_AGENT = f"agentauth-python/{__version__}"


def _bearer(api_key: str | None) -> str | None:
    """The ``authorization`` value for ``api_key``. A key read from a file or a shell
    often ends with a newline: surrounding whitespace is dropped. Anything else that
    cannot go in a gRPC header is refused here, by name, rather than deep in the C
    core (the key itself is never echoed)."""
    if not api_key:
        return None
    key = api_key.strip()
    if not key or not all("!" <= c <= "~" for c in key):
        raise ValueError(
            "api_key must be printable ASCII without spaces, as printed by "
            "`control-plane admin create-key`"
        )
    return f"Bearer {key}"


class _CallDefaults:
    """Adds the bearer API key and a default deadline to every call."""

    def __init__(self, api_key: str | None, timeout: float | None) -> None:
        self._authorization = _bearer(api_key)
        self._timeout = timeout

    def __repr__(self) -> str:
        # The default repr is harmless today; pin it so a future attribute
        # dump can never print the key.
        return f"{type(self).__name__}(authenticated={self._authorization is not None})"

    def _apply(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        # A per-call authorization header (e.g. another key for one call)
        # wins; sending two would make the server pick one arbitrarily.
        if self._authorization is not None and _AUTHORIZATION not in metadata.keys():
            metadata.add(_AUTHORIZATION, self._authorization)
        timeout = details.timeout if details.timeout is not None else self._timeout
        return grpc.aio.ClientCallDetails(
            details.method,
            timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
        )


class _UnaryCallDefaults(_CallDefaults, grpc.aio.UnaryUnaryClientInterceptor):
    """:class:`_CallDefaults` for unary calls.

    grpc.aio files an interceptor under the first call kind it implements
    only, so each kind needs its own instance.
    """

    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Req], Awaitable[grpc.aio.UnaryUnaryCall[_Req, _Resp]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Req,
    ) -> _Resp | grpc.aio.UnaryUnaryCall[_Req, _Resp]:
        return await continuation(self._apply(client_call_details), request)


class _StreamCallDefaults(_CallDefaults, grpc.aio.UnaryStreamClientInterceptor):
    """:class:`_CallDefaults` for server-streaming calls (e.g. WatchRevocations).

    Only the key: a watch stream is meant to stay open, so the default deadline
    of unary calls does not apply (a call may still set its own).
    """

    def __init__(self, api_key: str | None) -> None:
        super().__init__(api_key, None)

    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Req], Awaitable[grpc.aio.UnaryStreamCall[_Req, _Resp]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Req,
    ) -> AsyncIterator[_Resp] | grpc.aio.UnaryStreamCall[_Req, _Resp]:
        return await continuation(self._apply(client_call_details), request)


class _TypedErrors(grpc.aio.UnaryUnaryClientInterceptor):
    """Raises :class:`agentauth.AgentAuthError` subclasses instead of AioRpcError."""

    async def intercept_unary_unary(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Req], Awaitable[grpc.aio.UnaryUnaryCall[_Req, _Resp]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Req,
    ) -> _Resp | grpc.aio.UnaryUnaryCall[_Req, _Resp]:
        try:
            call = await continuation(client_call_details, request)
            return await call
        except grpc.aio.AioRpcError as err:
            # "from None": the AioRpcError carries the raw trailers and debug
            # string, which should not ride along into tracebacks and logs.
            raise from_rpc_error(err) from None


class _TypedStreamErrors(grpc.aio.UnaryStreamClientInterceptor):
    """:class:`_TypedErrors` for server-streaming calls.

    A stream fails while it is read, not when it is started, so the call is
    handed back as an iterator that converts the error where it surfaces:
    ``call.read()`` and ``async for`` on the call both raise the typed error,
    while ``call.cancel()``, ``call.code()`` and the metadata still reach the
    real call. The status code stays on the exception (``err.code``) for
    callers that decide by it, e.g. whether to reconnect.
    """

    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, _Req], Awaitable[grpc.aio.UnaryStreamCall[_Req, _Resp]]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: _Req,
    ) -> AsyncIterator[_Resp] | grpc.aio.UnaryStreamCall[_Req, _Resp]:
        call = await continuation(client_call_details, request)
        return _typed_stream(call)


async def _typed_stream(call: grpc.aio.UnaryStreamCall[_Req, _Resp]) -> AsyncIterator[_Resp]:
    try:
        async for message in call:
            yield message
    except grpc.aio.AioRpcError as err:
        raise from_rpc_error(err) from None


def _token_metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    # A per-call authorization header wins over the client's api_key
    # (_CallDefaults adds the key only when none is set).
    bearer = _bearer(token)
    return ((_AUTHORIZATION, bearer),) if bearer is not None else None


def client_interceptors(
    api_key: str | None = None, *, timeout: float | None = 10.0
) -> list[grpc.aio.ClientInterceptor]:
    """The interceptors :class:`ControlPlaneClient` installs on its channel.

    Use them to build your own ``grpc.aio`` channel (custom options, TLS
    settings) and hand it to ``ControlPlaneClient(target, channel=...)``.
    Order matters: errors are converted outermost so that every failure,
    including a deadline set by the inner interceptor, comes out typed.
    """
    return [
        _TypedErrors(),
        _TypedStreamErrors(),
        _UnaryCallDefaults(api_key, timeout),
        _StreamCallDefaults(api_key),
    ]


class ControlPlaneClient:
    """Async client for the agentauth control plane's gRPC API.

    Example::

        async with ControlPlaneClient("localhost:50051", api_key) as client:
            org = (await client.admin.CreateOrganization(
                admin_pb2.CreateOrganizationRequest(
                    organization=admin_pb2.Organization(display_name="Acme"))
            )).organization
            # Names are the server's: org.name is "orgs/" + 32 lower-case hex
            # characters, never a slug such as "orgs/acme".
            same = await client.admin.GetOrganization(
                admin_pb2.GetOrganizationRequest(name=org.name))

    Without ``credentials`` the channel is plaintext: terminating TLS in
    front of the control plane (a sidecar or load balancer) is the
    deployment's job for now. Pass ``grpc.ssl_channel_credentials()`` to talk
    TLS directly.

    Failed calls raise :class:`agentauth.AgentAuthError` subclasses; for a
    stream (e.g. ``WatchRevocations``) they come from ``call.read()`` or the
    ``async for`` over the call.
    Every call gets ``authorization: Bearer <api_key>`` and every unary call,
    unless it sets its own, a deadline of ``timeout`` seconds (``None`` for
    none); streams have no default deadline.

    If ``channel`` is given it is used as is and not closed by :meth:`close`;
    build it with :func:`client_interceptors` to get the key, deadline and
    typed errors.
    """

    def __init__(
        self,
        target: str,
        api_key: str | None = None,
        *,
        channel: grpc.aio.Channel | None = None,
        timeout: float | None = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self._target = target
        if channel is not None:
            if api_key is not None or credentials is not None:
                # Interceptors cannot be added to an existing channel, so the
                # key would silently never be sent.
                raise ValueError(
                    "pass api_key and credentials to client_interceptors() and the "
                    "channel constructor when supplying your own channel"
                )
            self._channel = channel
            self._owns_channel = False
        else:
            interceptors = client_interceptors(api_key, timeout=timeout)
            options = [("grpc.primary_user_agent", _USER_AGENT)]
            if credentials is None:
                self._channel = grpc.aio.insecure_channel(
                    target, options=options, interceptors=interceptors
                )
            else:
                self._channel = grpc.aio.secure_channel(
                    target, credentials, options=options, interceptors=interceptors
                )
            self._owns_channel = True
        # The generated stubs are untyped; "unused-ignore" keeps this line
        # clean whether or not the mypy config already exempts agentauth.v1.
        self.admin = admin_pb2_grpc.AdminServiceStub(self._channel)  # type: ignore[no-untyped-call, unused-ignore]
        self.tokens = token_pb2_grpc.TokenServiceStub(self._channel)  # type: ignore[no-untyped-call, unused-ignore]
        self.connections = connection_pb2_grpc.ConnectionServiceStub(self._channel)  # type: ignore[no-untyped-call, unused-ignore]
        self.tools = tool_pb2_grpc.ToolServiceStub(self._channel)  # type: ignore[no-untyped-call, unused-ignore]

    async def list_tools(self, connector: str = "", *, token: str | None = None) -> list[ToolSpec]:
        """The tools this caller may use (``ToolService.ListTools``), sorted by name.

        ``token`` is the agent's access token for this call (a service-account
        or delegated token); without it the client's ``api_key`` is sent.
        """
        response = await self.tools.ListTools(
            tool_pb2.ListToolsRequest(connector=connector), metadata=_token_metadata(token)
        )
        return [ToolSpec.from_proto(tool) for tool in response.tools]

    async def execute_tool(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        connected_account: str = "",
        request_id: str = "",
        timeout: float | None = None,  # noqa: ASYNC109 - the server-side bound, sent in the request
        token: str | None = None,
        on_event: ToolEventCallback | None = None,
    ) -> ToolCallResult:
        """Runs one tool call (``ToolService.ExecuteTool``) and returns its result.

        Args:
            tool: ``"{connector}.{verb}"``, e.g. ``"gmail.send_message"``.
            arguments: JSON-compatible values, checked by the server against
                the tool's schema.
            connected_account: the account to use; empty: the principal's default.
            request_id: idempotency key; the same key within 24 hours returns
                the first call's outcome without calling the provider again.
                Empty (the default): no idempotency.
            timeout: bound on the whole call in seconds (the server allows at
                most 120; unset: its default of 60). The gRPC deadline is this
                plus a few seconds, so the server's TIMEOUT outcome arrives.
            token: the agent's access token for this call; without it the
                client's ``api_key`` is sent.
            on_event: called with each stream message in order (progress:
                ``accepted``, ``credential_refreshed``, ``retry_scheduled``,
                ``output_chunk``, then the terminal one); may be async.

        Raises:
            ToolError: the call's terminal error, as its subclass
                (``ToolNotConnected``, ``ToolRateLimited``, ...), or
                ``ToolStreamIncomplete`` when the stream ended without one.
            AgentAuthError: a fault of the request itself (e.g. an invalid
                token) or of the transport. A transport failure after the
                call was accepted leaves its outcome unknown, like
                ``ToolStreamIncomplete``: retry with the same ``request_id``.
        """
        request = execute_request(
            tool,
            arguments,
            connected_account=connected_account,
            request_id=request_id,
            timeout=timeout,
        )
        call = self.tools.ExecuteTool(
            request, timeout=call_deadline(timeout), metadata=_token_metadata(token)
        )
        stream = _ToolStream()
        try:
            async for msg in call:
                await notify(on_event, msg)
                result = stream.feed(msg)
                if result is not None:
                    return result
        finally:
            # After the terminal message, or when the caller's callback raised
            # or we were cancelled: nothing more is read.
            call.cancel()
        raise stream.incomplete()

    @property
    def channel(self) -> grpc.aio.Channel:
        """The underlying channel, e.g. for health checks or other stubs."""
        return self._channel

    def __repr__(self) -> str:
        # Never the key: clients end up in logs and tracebacks.
        return f"{type(self).__name__}(target={self._target!r})"

    async def close(self) -> None:
        """Close the channel if this client created it; pending calls are cancelled."""
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> ControlPlaneClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
