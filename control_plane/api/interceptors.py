"""The fixed interceptor chain: logging → metrics → authentication → authorization → audit.

Each stage wraps the method handler's behaviour. The logging stage is outermost
and is the one place exceptions become statuses, so every stage inside it can
simply raise an ``AgentAuthError``.
"""

from __future__ import annotations

import contextvars
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from control_plane.api.authz import Rule, rule_for
from control_plane.api.metrics import Metrics
from control_plane.api.status import internal_status, to_grpc_status
from control_plane.audit.hook import AuditEvent, AuditSink
from control_plane.domain.errors import (
    AgentAuthError,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from control_plane.domain.principals import Principal
from control_plane.logs import get_logger

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "agentauth_principal", default=None
)
Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any]
Wrapper = Callable[[Any, grpc.aio.ServicerContext[Any, Any], Callable[[], Any]], Awaitable[Any]]


def current_principal() -> Principal:
    principal = _principal.get()
    if principal is None:  # a public method reached a handler that needs a caller
        raise Unauthenticated(reason="CREDENTIALS_MISSING")
    return principal


_OPEN = "_agentauth_open"  # a wrapped streaming behaviour's "run the checks" coroutine


def _wrap_behavior(behavior: Behavior, around: Wrapper, streaming: bool) -> Behavior:
    """Make ``around(request, context, proceed)`` run around unary or streaming behaviour."""
    if not streaming:

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            return await around(request, context, lambda: behavior(request, context))

        return unary

    async def opened(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any] | None:
        # Every stage's checks run, nested, before the first message: an inner
        # stage is opened (not merely called) inside this stage's ``around``,
        # and the handler itself is a coroutine that checks the request with
        # the caller bound and then returns the async iterator of messages.
        opened_iter: list[AsyncIterator[Any]] = []

        async def proceed() -> None:
            inner_open = getattr(behavior, _OPEN, None)
            result = (
                await inner_open(request, context)
                if inner_open is not None
                else behavior(request, context)
            )
            if inspect.isawaitable(result):
                result = await result
            if result is not None and hasattr(result, "__aiter__"):
                opened_iter.append(result)

        await around(request, context, proceed)
        return opened_iter[0] if opened_iter else None

    async def stream(
        request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        messages = await opened(request, context)
        if messages is None:
            return
        try:
            async for item in messages:
                yield item
        except (grpc.aio.AbortError, grpc.RpcError):
            raise
        except AgentAuthError as exc:
            await context.abort_with_status(to_grpc_status(exc))
        except Exception as exc:
            # As in LoggingInterceptor: never a foreign exception's text on the wire.
            get_logger("agentauth.rpc").error(
                "rpc_stream_failed", code="INTERNAL", error=type(exc).__name__, exc_info=True
            )
            await context.abort_with_status(internal_status())

    setattr(stream, _OPEN, opened)
    return stream


def _rewrap(
    handler: grpc.RpcMethodHandler[Any, Any], around: Wrapper
) -> grpc.RpcMethodHandler[Any, Any]:
    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler, False),
        ("unary_stream", grpc.unary_stream_rpc_method_handler, True),
        ("stream_unary", grpc.stream_unary_rpc_method_handler, False),
        ("stream_stream", grpc.stream_stream_rpc_method_handler, True),
    )
    for attr, factory, streaming in kinds:
        behavior = getattr(handler, attr)
        if behavior is not None:
            return factory(
                _wrap_behavior(behavior, around, streaming),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


class _Stage(grpc.aio.ServerInterceptor):
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
        metadata = tuple(details.invocation_metadata or ())

        async def around(
            request: Any, context: grpc.aio.ServicerContext[Any, Any], proceed: Any
        ) -> Any:
            return await self.around(method, metadata, request, context, proceed)

        return _rewrap(handler, around)

    async def around(
        self,
        method: str,
        metadata: tuple[Any, ...],
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        proceed: Callable[[], Any],
    ) -> Any:
        raise NotImplementedError


class LoggingInterceptor(_Stage):
    """Binds a call id, logs each call once, and turns exceptions into statuses."""

    def __init__(self) -> None:
        self._log = get_logger("agentauth.rpc")

    async def around(self, method, metadata, request, context, proceed):  # type: ignore[no-untyped-def]
        call_id = uuid.uuid4().hex
        token = structlog.contextvars.bind_contextvars(rpc_method=method, call_id=call_id)
        start = time.perf_counter()
        try:
            result = await proceed()
            # Successful calls log at DEBUG: on the hot path a log line per call
            # costs more CPU than a token mint (bench/exchange_vs_health.py);
            # failures, and audited calls through the audit seam, always log.
            self._log.debug("rpc", code="OK", ms=round((time.perf_counter() - start) * 1e3, 3))
            return result
        except AgentAuthError as exc:
            self._log.info(
                "rpc",
                code=exc.code,
                reason=exc.reason,
                debug=exc.debug,
                ms=round((time.perf_counter() - start) * 1e3, 3),
            )
            await context.abort_with_status(to_grpc_status(exc))
        except (grpc.aio.AbortError, grpc.RpcError):
            raise
        except Exception as exc:
            # The type is enough to find the bug; messages of foreign exceptions
            # can hold inputs, so they go through the redactor with the traceback.
            self._log.error("rpc_failed", code="INTERNAL", error=type(exc).__name__, exc_info=True)
            await context.abort_with_status(internal_status())
        finally:
            structlog.contextvars.reset_contextvars(**token)


class MetricsInterceptor(_Stage):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def around(self, method, metadata, request, context, proceed):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        code = "OK"
        try:
            return await proceed()
        except AgentAuthError as exc:
            code = exc.code
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            self.metrics.observe(method, code, time.perf_counter() - start)


def _bearer(metadata: tuple[Any, ...]) -> str | None:
    for key, value in metadata:
        if key == "authorization":
            if isinstance(value, bytes):
                return None
            scheme, _, credential = value.partition(" ")
            if scheme.lower() != "bearer" or not credential:
                raise Unauthenticated(reason="CREDENTIALS_INVALID")
            return str(credential).strip()
    return None


class AuthenticationInterceptor(_Stage):
    def __init__(self, authenticate: Callable[[str], Awaitable[Principal]]) -> None:
        self.authenticate = authenticate

    async def around(self, method, metadata, request, context, proceed):  # type: ignore[no-untyped-def]
        rule = rule_for(method)
        credential = _bearer(metadata)
        principal: Principal | None = None
        if credential is not None:
            principal = await self.authenticate(credential)
        elif rule is None or not rule.public:
            raise Unauthenticated(
                "send 'authorization: Bearer <api key>'", reason="CREDENTIALS_MISSING"
            )
        token = _principal.set(principal)
        try:
            return await proceed()
        finally:
            _principal.reset(token)


class AuthorizationInterceptor(_Stage):
    async def around(self, method, metadata, request, context, proceed):  # type: ignore[no-untyped-def]
        rule = rule_for(method)
        if rule is None:
            raise PermissionDenied(reason="METHOD_NOT_AUTHORIZED")
        if not rule.public:
            principal = current_principal()
            if principal.role not in rule.roles:
                raise PermissionDenied()
        return await proceed()


class AuditInterceptor(_Stage):
    """Records audited calls before they run (fail closed) and their outcome after."""

    def __init__(self, sink: AuditSink) -> None:
        self.sink = sink

    async def around(self, method, metadata, request, context, proceed):  # type: ignore[no-untyped-def]
        rule: Rule | None = rule_for(method)
        if rule is None or not rule.audited:
            return await proceed()
        # Public audited calls (token grants) have no caller principal yet: the
        # credential inside the request is what authenticates them.
        principal = _principal.get()

        def event(phase: str, outcome: str, reason: str = "") -> AuditEvent:
            return AuditEvent.of(method, phase, principal, outcome, reason)

        try:
            await self.sink.record(event("attempt", "pending"))
        except Exception:
            raise Unavailable("audit log unavailable", reason="AUDIT_UNAVAILABLE") from None
        try:
            result = await proceed()
        except AgentAuthError as exc:
            await self.sink.record(event("outcome", exc.code, exc.reason))
            raise
        await self.sink.record(event("outcome", "OK"))
        return result


def chain(
    metrics: Metrics, authenticate: Callable[[str], Awaitable[Principal]], sink: AuditSink
) -> list[grpc.aio.ServerInterceptor]:
    """The one order every RPC passes through."""
    return [
        LoggingInterceptor(),
        MetricsInterceptor(metrics),
        AuthenticationInterceptor(authenticate),
        AuthorizationInterceptor(),
        AuditInterceptor(sink),
    ]
