"""The request pipeline as one gRPC interceptor.

Each method's handler is wrapped once (and the wrapper cached), so a call pays
for one wrapper, not one per stage. The wrapper reads the bearer credential and
the peer from the call, runs :class:`~control_plane.api.pipeline.Pipeline`, and
is the one place exceptions become statuses (``google.rpc.Status`` with exactly
one ``ErrorInfo``). A foreign exception's text never reaches the wire.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from control_plane import deadlines
from control_plane.api.pipeline import Call, Pipeline
from control_plane.api.status import internal_status, to_grpc_status
from control_plane.domain.errors import AgentAuthError
from control_plane.logs import get_logger

Context = grpc.aio.ServicerContext[Any, Any]
_log = get_logger("agentauth.rpc")


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


class PipelineInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._wrapped: dict[str, tuple[Any, Any]] = {}

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
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]  # type: ignore[no-any-return]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

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
        if handler.unary_unary is not None:
            behavior: Any = handler.unary_unary

            async def unary(request: Any, context: Context) -> Any:
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
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            opener: Any = handler.unary_stream

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                # Every check runs before the first message: the servicer's method is
                # a coroutine that checks the request with the caller bound and returns
                # the async iterator of messages.
                async def open_stream() -> Any:
                    opened = opener(request, context)
                    if hasattr(opened, "__aiter__"):
                        return opened
                    return await opened

                try:
                    messages = await pipeline.run(self._call(method, context), open_stream)
                    if messages is None:
                        return
                    async for item in messages:
                        yield item
                except (grpc.aio.AbortError, grpc.RpcError):
                    raise
                except Exception as exc:
                    await _abort(context, exc)

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            # Server reflection (public): the pipeline runs before the stream starts.
            bidi: Any = handler.stream_stream

            async def bidi_stream(requests: Any, context: Context) -> AsyncIterator[Any]:
                async def checked() -> None:
                    return None

                try:
                    await pipeline.run(self._call(method, context), checked)
                    async for item in bidi(requests, context):
                        yield item
                except (grpc.aio.AbortError, grpc.RpcError):
                    raise
                except Exception as exc:
                    await _abort(context, exc)

            return grpc.stream_stream_rpc_method_handler(
                bidi_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
