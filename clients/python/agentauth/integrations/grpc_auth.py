"""A ``grpc.aio`` server interceptor that admits only callers with a valid agentauth token.

    validator = AsyncTokenValidator(ISSUER, "https://inventory.internal")
    server = grpc.aio.server(interceptors=[
        ValidatorInterceptor(
            validator,
            required_scopes={"/inventory.v1.InventoryService/Reserve": ["inventory.write"]},
            public_methods=["/grpc.health.v1.Health/Check"],
        ),
    ])

    async def Reserve(self, request, context):
        token = current_token()   # the VerifiedToken of this call
        ...

Every method not listed in ``public_methods`` needs ``authorization: Bearer
<token>``; a method missing from ``required_scopes`` needs a valid token and
no particular scope. On failure the call ends before the handler runs, with
the status the SDK's own errors use (UNAUTHENTICATED, PERMISSION_DENIED or
UNAVAILABLE) carrying one ``google.rpc.ErrorInfo`` (domain ``agentauth``,
reason e.g. ``TOKEN_EXPIRED``), so :func:`agentauth.from_rpc_error` on the
client side rebuilds the same typed exception.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from agentauth._errors import AgentAuthError
from agentauth._validator import AsyncTokenValidator
from agentauth._validator_claims import VerifiedToken
from agentauth.integrations._bearer import bearer_token

__all__ = ["ValidatorInterceptor", "current_token"]

_current: contextvars.ContextVar[VerifiedToken | None] = contextvars.ContextVar(
    "agentauth_verified_token", default=None
)
if TYPE_CHECKING:  # grpc's classes are generic only in the type stubs
    _Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any]
    _Handler = grpc.RpcMethodHandler[Any, Any]
_KINDS = (
    ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
    ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
    ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
    ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
)


def current_token() -> VerifiedToken | None:
    """The verified token of the call being handled; None in a public method."""
    return _current.get()


def _status(exc: AgentAuthError) -> grpc.Status:
    info = error_details_pb2.ErrorInfo(
        reason=exc.reason, domain="agentauth", metadata=dict(exc.metadata)
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    return rpc_status.to_status(
        status_pb2.Status(code=exc.code.value[0], message=exc.message, details=[detail])
    )


def _bound(behavior: _Behavior, verified: VerifiedToken, streaming: bool) -> _Behavior:
    """Run ``behavior`` with :func:`current_token` returning ``verified``."""
    if not streaming:

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            reset = _current.set(verified)
            try:
                result = behavior(request, context)
                return await result if inspect.isawaitable(result) else result
            finally:
                _current.reset(reset)

        return unary

    async def stream(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        reset = _current.set(verified)
        try:
            result = behavior(request, context)
            if hasattr(result, "__aiter__"):
                async for item in result:
                    yield item
            elif inspect.isawaitable(result):
                await result  # the handler writes with context.write()
            elif result is not None:
                for item in result:
                    yield item
        finally:
            # An abandoned stream may be finalised from another context.
            with contextlib.suppress(ValueError):
                _current.reset(reset)

    return stream


def _rebuild(handler: _Handler, make: Callable[[_Behavior, bool], _Behavior]) -> _Handler:
    for attr, factory, streaming in _KINDS:
        behavior = getattr(handler, attr)
        if behavior is not None:
            rebuilt: _Handler = factory(
                make(behavior, streaming),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
            return rebuilt
    return handler


def _denied(handler: _Handler, exc: AgentAuthError) -> _Handler:
    status = _status(exc)

    async def deny(_request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort_with_status(status)

    # The replacement keeps the method's shape (and serializers) so that gRPC
    # ends the call cleanly whatever its streaming kind.
    return _rebuild(handler, lambda _behavior, _streaming: deny)


class ValidatorInterceptor(grpc.aio.ServerInterceptor):
    """Validates the bearer token of every non-public call; see the module docstring.

    Args:
        validator: the :class:`~agentauth.AsyncTokenValidator` to use.
        required_scopes: scopes each method needs, keyed by full method name
            (``"/package.Service/Method"``).
        public_methods: full method names callable without a token.
    """

    def __init__(
        self,
        validator: AsyncTokenValidator,
        *,
        required_scopes: Mapping[str, Iterable[str]] | None = None,
        public_methods: Iterable[str] = (),
    ) -> None:
        scopes: dict[str, frozenset[str]] = {}
        for method, needed in (required_scopes or {}).items():
            if isinstance(needed, str):
                raise TypeError(f"required_scopes[{method!r}] must be a collection of scopes")
            scopes[method] = frozenset(needed)
        if isinstance(public_methods, str):
            raise TypeError("public_methods must be a collection of full method names")
        self._validator = validator
        self._scopes = scopes
        self._public = frozenset(public_methods)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[_Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method in self._public:
            return handler
        values = [
            value
            for key, value in (handler_call_details.invocation_metadata or ())
            if key == "authorization" and isinstance(value, str)
        ]
        try:
            verified = await self._validator.validate(
                bearer_token(values), required_scopes=self._scopes.get(method, ())
            )
        except AgentAuthError as exc:
            return _denied(handler, exc)
        return _rebuild(handler, lambda behavior, streaming: _bound(behavior, verified, streaming))
