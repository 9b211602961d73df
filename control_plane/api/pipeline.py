"""One request pipeline for every transport: authenticate → authorize → rate-limit →
audit → handler.

SPIRE's model: the chain is written once, transport-agnostic, and run as one
wrapper — by the gRPC interceptor (:mod:`.grpc_pipeline`) and by the aiohttp
middleware (:mod:`.http`) alike — so ``/oauth2/*``, the connect pages and the
OAuth callback are authenticated, rate-limited and audited by the same code as
every RPC. It is one coroutine per call, not one layer of coroutines per stage.

* **Authenticate** by the rule's kind: a bearer admin key or service-account
  token (``bearer``; optional on ``public`` actions, where a credential that is
  presented must still be valid), a hosted connect link (``connect_link``) or an
  authorization response's ``state`` (``oauth_state``).
* **Authorize** with the table in :mod:`.authz`, keyed by full RPC method name or
  HTTP route, deny by default.
* **Rate-limit** per org and per principal (anonymous callers: per client
  address) with the shared token buckets of :mod:`control_plane.services.rate_limiter`.
* **Audit** actions marked audited: the attempt before the handler runs (fail
  closed: no record, no action) and exactly one outcome after, refusals included.
  HTTP routes are audited under their gRPC twin's action name, with the transport
  recorded beside it.

A server stream (:meth:`Pipeline.run_stream`) runs the same chain to open it, then hands
on its messages; traced, its server span lasts until the stream ends.

A request its transport could not read (a gRPC message too large for its method
or not decodable) never enters the chain: :meth:`Pipeline.refused_unread` counts
it and logs it at most once per interval per reason, since anyone can send them.

Errors are raised as :class:`~control_plane.domain.errors.AgentAuthError`; each
transport renders them its way (gRPC status with ``ErrorInfo``, RFC 6749 JSON,
an HTML page).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from opentelemetry.trace import Span

from control_plane.api.authz import Rule
from control_plane.audit.hook import AuditEvent, AuditSink
from control_plane.domain.errors import (
    AgentAuthError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from control_plane.domain.principals import Principal
from control_plane.domain.scope import OrgScope
from control_plane.logs import Throttled, get_logger
from control_plane.metrics import Metrics
from control_plane.tracing import SERVER, Tracing, failed

T = TypeVar("T")

#: Seconds between two log lines for the same kind of unreadable request.
REFUSAL_LOG_INTERVAL = 10.0

_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "agentauth_principal", default=None
)


def current_principal() -> Principal:
    """The authenticated caller of the running request (handlers that need one)."""
    principal = _principal.get()
    if principal is None:  # a public method reached a handler that needs a caller
        raise Unauthenticated(reason="CREDENTIALS_MISSING")
    return principal


def optional_principal() -> Principal | None:
    return _principal.get()


class _Outcome:
    __slots__ = ("code",)

    def __init__(self) -> None:
        self.code = "OK"


_outcome: contextvars.ContextVar[_Outcome | None] = contextvars.ContextVar(
    "agentauth_stream_outcome", default=None
)


def stream_outcome(code: str) -> None:
    """Say how the running stream ended when it ends without an error but not OK (a
    tool call's error code): its server span ends with this code. Untraced, a no-op."""
    outcome = _outcome.get()
    if outcome is not None:
        outcome.code = code


class Authenticator(Protocol):
    async def __call__(self, kind: str, credential: str) -> Principal: ...


class RateLimit(Protocol):
    async def check(self, org: OrgScope | None, principal_key: str, peer: str | None) -> None: ...


@dataclass(frozen=True, slots=True)
class Call:
    """What the pipeline needs to know about one request, whatever its transport."""

    key: str  # the table key: a full RPC method name or "METHOD /route"
    transport: str  # "grpc" | "http"
    credential: str | None  # as the rule's kind expects it; None when absent
    peer: str | None  # the client's address, for anonymous limits


class Pipeline:
    def __init__(
        self,
        rules: Mapping[str, Rule],
        authenticate: Authenticator,
        limiter: RateLimit,
        audit: AuditSink,
        metrics: Metrics,
        tracing: Tracing,
    ) -> None:
        self._rules = rules
        self._tracing = tracing
        self._authenticate = authenticate
        self._limiter = limiter
        self._audit = audit
        self._metrics = metrics
        self._log = get_logger("agentauth.rpc")
        self._debug = logging.getLogger("agentauth.rpc")  # one level check per call
        self._unread = Throttled("agentauth.rpc", REFUSAL_LOG_INTERVAL)

    def rule(self, key: str) -> Rule | None:
        return self._rules.get(key)

    def refused_unread(self, key: str, exc: AgentAuthError) -> None:
        """Account for a request refused before the chain: counted every time, logged
        at INFO at most once per interval per reason (with how many were not)."""
        self._metrics.observe(key, exc.code, 0.0)
        self._unread.info(
            exc.reason, "rpc_refused_unread", action=key, code=exc.code, reason=exc.reason
        )

    async def run(
        self, call: Call, handler: Callable[[], Awaitable[T]], stream_span: Span | None = None
    ) -> T:
        """Run ``handler`` behind every stage; it sees the caller via :func:`current_principal`.

        Traced, the call is one server span with a child per stage that ran (spans are
        ``with`` blocks here, not coroutines: still one coroutine per call). A stream's
        opening runs under the stream's span (``stream_span``), which :meth:`run_stream` ends."""
        start = time.perf_counter()
        code = "OK"
        span = self._tracing.span
        if stream_span is None:
            opened = span(call.key, SERVER, {"agentauth.transport": call.transport})
        else:
            opened = self._tracing.current(stream_span)
        with opened as root:
            try:
                rule = self._rules.get(call.key)
                if rule is None:
                    raise PermissionDenied(reason="METHOD_NOT_AUTHORIZED")
                with span("authenticate"):
                    principal = await self._authenticated(rule, call)
                with span("authorize"):
                    if not rule.public and principal.role not in rule.roles:
                        raise PermissionDenied()
                if rule.rate_limited:
                    # Per org and per principal once authenticated (the org comes from
                    # the principal, never from the request); per client address before.
                    with span("rate_limit"):
                        try:
                            if principal is not None and principal.org_id is not None:
                                scope, key = principal.own_scope, principal.rate_key
                                await self._limiter.check(scope, key, call.peer)
                            else:
                                await self._limiter.check(None, "", call.peer)
                        except ResourceExhausted:
                            self._metrics.rate_limited(call.key)
                            raise
                token = _principal.set(principal)
                try:
                    if not rule.audited:
                        with span("handler"):
                            return await handler()
                    return await self._audited(rule, call, principal, handler)
                finally:
                    _principal.reset(token)
            except AgentAuthError as exc:
                code = exc.code
                if root is not None:
                    root.set_attribute("agentauth.reason", exc.reason)
                # Failures are logged once here, at INFO (never with a value the caller
                # sent); success stays at DEBUG: a log line per call costs more than a mint.
                self._log.info(
                    "rpc", action=call.key, code=exc.code, reason=exc.reason, debug=exc.debug
                )
                raise
            except asyncio.CancelledError:
                code = "CANCELLED"  # the caller went away (or the server is stopping)
                raise
            except BaseException:
                code = "INTERNAL"
                raise
            finally:
                elapsed = time.perf_counter() - start
                self._metrics.observe(call.key, code, elapsed)
                if root is not None:
                    root.set_attribute("agentauth.code", code)
                if code == "OK" and self._debug.isEnabledFor(logging.DEBUG):
                    ms = round(elapsed * 1e3, 3)
                    self._log.debug("rpc", action=call.key, code="OK", ms=ms)

    async def run_stream(
        self, call: Call, open_stream: Callable[[], Awaitable[AsyncIterator[T] | None]]
    ) -> AsyncGenerator[T, None]:
        """Open a server stream behind every stage (as :meth:`run`), then yield its messages.

        The metrics count the opening, as for any call. Traced, the server span lasts
        as long as the stream: every step of the stream runs with it current, so the
        spans the stream's handler starts (and the tasks it starts) are its children,
        and it ends with the stream: the code of the error that ended it, ``CANCELLED``
        when the caller went away (the stream is closed unfinished), else what the
        handler said with :func:`stream_outcome` (``OK`` by default). Untraced, this is
        the plain loop: one generator per call, no context switching per message."""
        root = self._tracing.start(call.key, SERVER, {"agentauth.transport": call.transport})
        if root is None:
            messages = await self.run(call, open_stream)
            try:
                if messages is not None:
                    async for item in messages:
                        yield item
            finally:
                await _close(messages)
            return
        code = "OK"
        messages = None
        outcome = _Outcome()
        try:
            with self._tracing.current(root):
                messages = await self.run(call, open_stream, root)
            if messages is None:
                return
            # One step at a time under the span: nothing stays attached while the
            # message is handed on, since whoever resumes us next may be another task.
            while True:
                bound = _outcome.set(outcome)
                try:
                    with self._tracing.current(root):
                        item = await anext(messages)
                except StopAsyncIteration:
                    break
                finally:
                    _outcome.reset(bound)
                yield item
            code = outcome.code
            if code != "OK":
                failed(root, code)
        except AgentAuthError as exc:
            code = exc.code
            root.set_attribute("agentauth.reason", exc.reason)
            failed(root, type(exc).__name__)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            # The caller went away: its task was cancelled mid-step, or the stream was
            # closed unfinished between two messages.
            code = "CANCELLED"
            failed(root, "CancelledError")
            raise
        except BaseException as exc:
            code = "INTERNAL"
            failed(root, type(exc).__name__)
            raise
        finally:
            root.set_attribute("agentauth.code", code)
            root.end()
            await _close(messages)

    async def _authenticated(self, rule: Rule, call: Call) -> Any:
        credential = call.credential
        if rule.auth not in ("bearer", "tool_token"):
            # A link or a state authenticates; missing or not, its own checks answer
            # (LINK_INVALID, STATE_INVALID...), as the page would.
            return await self._authenticate(rule.auth, credential or "")
        if credential == "":
            raise Unauthenticated(reason="CREDENTIALS_INVALID")
        if credential is not None:
            return await self._authenticate(rule.auth, credential)
        if rule.public:
            return None
        raise Unauthenticated(
            "send 'authorization: Bearer <api key or token>'", reason="CREDENTIALS_MISSING"
        )

    async def _audited(
        self,
        rule: Rule,
        call: Call,
        principal: Principal | None,
        handler: Callable[[], Awaitable[T]],
    ) -> T:
        action = rule.action or call.key

        def event(phase: str, outcome: str, reason: str = "") -> AuditEvent:
            return AuditEvent.of(action, phase, principal, outcome, reason, call.transport)

        async def record(e: AuditEvent) -> None:
            with self._tracing.span("audit", attributes={"agentauth.audit_phase": e.phase}):
                await self._audit.record(e)

        try:
            await record(event("attempt", "pending"))
        except Exception:
            raise Unavailable("audit log unavailable", reason="AUDIT_UNAVAILABLE") from None
        try:
            with self._tracing.span("handler"):
                result = await handler()
        except AgentAuthError as exc:
            await record(event("outcome", exc.code, exc.reason))
            raise
        except asyncio.CancelledError:
            await record(event("outcome", "CANCELLED", "CANCELLED"))
            raise
        except Exception:
            await record(event("outcome", "INTERNAL", "INTERNAL"))
            raise
        await record(event("outcome", "OK"))
        return result


async def _close(messages: AsyncIterator[Any] | None) -> None:
    """Close a stream's messages now, in this context (an async generator left for the
    garbage collector would be closed later, from another task)."""
    aclose = getattr(messages, "aclose", None)
    if aclose is not None:
        await aclose()
