"""The request pipeline as one gRPC interceptor.

Each method's handler is wrapped once (and the wrapper cached), so a call pays
for one wrapper, not one per stage. The wrapper reads the bearer credential and
the peer from the call, runs :class:`~control_plane.api.pipeline.Pipeline`, and
is the one place exceptions become statuses (``google.rpc.Status`` with exactly
one ``ErrorInfo``). A foreign exception's text never reaches the wire.

Hostile input is refused as early as gRPC allows:

* Messages larger than the largest any method accepts are refused by gRPC itself
  (``grpc.max_receive_message_length``). Each method's own limit (the authorization
  table's ``max_request_bytes``) is checked on the received bytes, before parsing.
* Bytes that are not a message of the method's type (corrupt wire format, a
  string field that is not UTF-8) answer INVALID_ARGUMENT ``MALFORMED_REQUEST``.
  gRPC runs the deserializer before any interceptor code, and a deserializer that
  raises becomes UNKNOWN with an error-level traceback per call; so the wrapped
  deserializer never raises: it hands the refusal on to the wrapper.
* A call to a method that needs a bearer credential and carries none is refused
  without reading its message at all: the handler is swapped for one that takes
  the request as a stream and never reads it, and runs the pipeline (which
  refuses it exactly as it would have).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import DecodeError

from control_plane import deadlines
from control_plane.api.pipeline import Call, Pipeline
from control_plane.api.status import internal_status, to_grpc_status
from control_plane.domain.errors import (
    AgentAuthError,
    MalformedRequest,
    RequestTooLarge,
    Unauthenticated,
    Unavailable,
)
from control_plane.logs import get_logger

Context = grpc.aio.ServicerContext[Any, Any]
#: A method without a rule is refused by the pipeline; its message need not be large.
MAX_UNKNOWN_METHOD_BYTES = 1024
_log = get_logger("agentauth.rpc")
SHUTTING_DOWN = Unavailable(
    "this replica is shutting down; retry",
    reason="SHUTTING_DOWN",
    metadata={"retryAfterSeconds": "1"},
)


class _MalformedCredential(Exception):
    pass


def bearer(metadata: Any) -> str | None:
    """The ``authorization: Bearer <credential>`` value; None when absent."""
    for key, value in metadata or ():
        if key == "authorization":
            if isinstance(value, bytes):
                return None
            scheme, _, credential = value.partition(" ")
            if scheme.lower() != "bearer" or not credential:
                raise _MalformedCredential()
            return str(credential).strip()
    return None


async def _abort(context: Context, exc: BaseException) -> None:
    if isinstance(exc, AgentAuthError):
        await context.abort_with_status(to_grpc_status(exc))
    # The type is enough to find the bug; messages of foreign exceptions can hold
    # inputs, so they go through the redactor with the traceback, never to the wire.
    _log.error("rpc_failed", code="INTERNAL", error=type(exc).__name__, exc_info=exc)
    await context.abort_with_status(internal_status())


class _Unreadable:
    """Handed on by the guarded deserializer in place of a message it refused."""

    __slots__ = ("error",)

    def __init__(self, error: AgentAuthError) -> None:
        self.error = error


def guarded_deserializer(
    deserialize: Callable[[bytes], Any] | None, max_bytes: int
) -> Callable[[bytes], Any]:
    """``deserialize`` behind the method's size limit; never raises on bad bytes."""

    def guarded(data: bytes) -> Any:
        if len(data) > max_bytes:
            return _Unreadable(RequestTooLarge(max_bytes))
        if deserialize is None:
            return data
        try:
            return deserialize(data)
        except (DecodeError, UnicodeDecodeError):
            # upb checks proto3 string fields for UTF-8 while parsing (DecodeError).
            return _Unreadable(MalformedRequest())

    return guarded


class PipelineInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._wrapped: dict[str, tuple[Any, Any]] = {}
        self._unread: dict[str, tuple[Any, Any]] = {}
        # Shutdown: once closed, a unary call that reaches us is refused UNAVAILABLE
        # (retried by standard retry policies) instead of being cut by the server's
        # stop; the calls already running are counted so the stop can wait for them.
        self._closed = False
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def close(self) -> None:
        """Refuse new unary calls from now on (the drain period is over)."""
        self._closed = True

    async def wait_idle(self, seconds: float) -> bool:
        """Wait until no unary call is running, at most ``seconds``; whether it is."""
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        cache = self._unread if self._refused_unread(method, details) else self._wrapped
        cached = cache.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]  # type: ignore[no-any-return]
        if cache is self._unread:
            wrapped = self._refuse_without_reading(method, handler)
        else:
            wrapped = self._wrap(method, handler)
        cache[method] = (handler, wrapped)
        return wrapped

    def _refused_unread(self, method: str, details: grpc.HandlerCallDetails) -> bool:
        """True when the pipeline will refuse the call on its metadata alone: the
        method needs a bearer credential and none (or a malformed one) was sent."""
        rule = self._pipeline.rule(method)
        if rule is None or rule.public or rule.auth != "bearer":
            return False
        try:
            return bearer(details.invocation_metadata) is None
        except _MalformedCredential:
            return True

    def _refuse_without_reading(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """A handler that takes the request as a stream it never reads: gRPC receives
        a unary request before the handler runs, a streamed one only when it is read."""
        pipeline = self._pipeline

        async def never() -> None:
            raise Unauthenticated(reason="CREDENTIALS_MISSING")  # the pipeline refuses first

        async def refuse(requests: Any, context: Context) -> None:
            try:
                await pipeline.run(self._call(method, context), never)
            except AgentAuthError as exc:
                await context.abort_with_status(to_grpc_status(exc))

        if handler.unary_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                refuse, response_serializer=handler.response_serializer
            )
        if handler.unary_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                refuse, response_serializer=handler.response_serializer
            )
        return self._wrap(method, handler)

    async def _refuse_unread(self, method: str, context: Context, refused: _Unreadable) -> None:
        self._pipeline.refused_unread(method, refused.error)
        await context.abort_with_status(to_grpc_status(refused.error))

    def _deserializer(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> Callable[[bytes], Any]:
        rule = self._pipeline.rule(method)
        limit = rule.max_request_bytes if rule is not None else MAX_UNKNOWN_METHOD_BYTES
        return guarded_deserializer(handler.request_deserializer, limit)

    def _call(self, method: str, context: Context) -> Call:
        try:
            credential = bearer(context.invocation_metadata())
        except _MalformedCredential:
            credential = ""  # present but malformed: refused as CREDENTIALS_INVALID
        return Call(method, "grpc", credential, context.peer())

    def _wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        pipeline = self._pipeline
        deserialize = self._deserializer(method, handler)
        if handler.unary_unary is not None:
            behavior: Any = handler.unary_unary

            async def unary(request: Any, context: Context) -> Any:
                if isinstance(request, _Unreadable):
                    await self._refuse_unread(method, context, request)
                if self._closed:
                    await context.abort_with_status(to_grpc_status(SHUTTING_DOWN))
                self._running += 1
                self._idle.clear()
                try:
                    return await run(request, context)
                finally:
                    self._running -= 1
                    if not self._running:
                        self._idle.set()

            async def run(request: Any, context: Context) -> Any:
                token = structlog.contextvars.bind_contextvars(
                    rpc_method=method, call_id=os.urandom(8).hex()
                )
                deadline = deadlines.set_remaining(context.time_remaining())
                try:
                    return await pipeline.run(
                        self._call(method, context), lambda: behavior(request, context)
                    )
                except (grpc.aio.AbortError, grpc.RpcError):
                    raise
                except BaseException as exc:
                    if isinstance(exc, Exception):
                        await _abort(context, exc)
                    raise
                finally:
                    structlog.contextvars.reset_contextvars(**token)
                    deadlines.reset(deadline)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            opener: Any = handler.unary_stream

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                if isinstance(request, _Unreadable):
                    await self._refuse_unread(method, context, request)
                if self._closed:  # draining: a new stream goes to another replica
                    await context.abort_with_status(to_grpc_status(SHUTTING_DOWN))
                deadline = deadlines.set_remaining(context.time_remaining())

                # Every check runs before the first message: the servicer's method is
                # a coroutine that checks the request with the caller bound and returns
                # the async iterator of messages.
                async def open_stream() -> Any:
                    opened = opener(request, context)
                    if hasattr(opened, "__aiter__"):
                        return opened
                    return await opened

                try:
                    call = self._call(method, context)
                    async with contextlib.aclosing(
                        pipeline.run_stream(call, open_stream)
                    ) as messages:
                        async for item in messages:
                            yield item
                except (grpc.aio.AbortError, grpc.RpcError):
                    raise
                except Exception as exc:
                    await _abort(context, exc)
                finally:
                    # A stream abandoned by its caller may be closed from another context.
                    with contextlib.suppress(ValueError):
                        deadlines.reset(deadline)

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            # Server reflection (public): the pipeline runs before the stream starts.
            bidi: Any = handler.stream_stream

            async def bidi_stream(requests: Any, context: Context) -> AsyncIterator[Any]:
                async def checked() -> None:
                    return None

                async def readable() -> AsyncIterator[Any]:
                    async for request in requests:
                        if isinstance(request, _Unreadable):
                            pipeline.refused_unread(method, request.error)
                            raise request.error
                        yield request

                try:
                    await pipeline.run(self._call(method, context), checked)
                    async for item in bidi(readable(), context):
                        yield item
                except (grpc.aio.AbortError, grpc.RpcError):
                    raise
                except Exception as exc:
                    await _abort(context, exc)

            return grpc.stream_stream_rpc_method_handler(
                bidi_stream,
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        return handler
