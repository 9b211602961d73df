"""OpenTelemetry traces: one span per request-pipeline stage and per outbound call.

Off unless ``AGENTAUTH_OTLP_ENDPOINT`` is set: then spans go to that OTLP/HTTP
collector. Off, :meth:`Tracing.span` hands back one shared no-op context, so an
untraced server pays for a branch, not for OpenTelemetry's context machinery.

Attributes are safe by construction: the RPC method or route, the transport, a
status code or error reason, a connector id, an HTTP method and status. Never a
token, a URL (a provider's may carry an API key in its query), an exception's
message, a principal or an org id — traces leave the process for a collector that
is often run by someone else, so they are held to the rule of the metric labels.
Exceptions are recorded as their class name only.

A server stream's span outlives any one ``with`` block: :meth:`Tracing.start` opens
it without making it current, :meth:`Tracing.current` makes it the parent of what
runs inside a block (each step of the stream), and the stream ends it itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, use_span

Attributes = Mapping[str, str | int | float | bool]

SERVER = SpanKind.SERVER
CLIENT = SpanKind.CLIENT
INTERNAL = SpanKind.INTERNAL

_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()


class Tracing:
    """The tracer every traced object is given at construction (off: no processor)."""

    def __init__(self, processor: SpanProcessor | None = None) -> None:
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None
        if processor is not None:
            self._provider = TracerProvider(resource=Resource.create({"service.name": "agentauth"}))
            self._provider.add_span_processor(processor)
            self._tracer = self._provider.get_tracer("control_plane")

    @classmethod
    def from_endpoint(cls, endpoint: str) -> Tracing:
        """Export to an OTLP/HTTP collector (``http://collector:4318/v1/traces``); "" is off."""
        if not endpoint:
            return cls()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter: SpanExporter = OTLPSpanExporter(endpoint=endpoint)
        return cls(BatchSpanProcessor(exporter))

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def span(
        self, name: str, kind: SpanKind = INTERNAL, attributes: Attributes | None = None
    ) -> contextlib.AbstractContextManager[Span | None]:
        """A span for the ``with`` block, the current one's child; ``None`` when off."""
        if self._tracer is None:
            return _OFF
        return self._span(self._tracer, name, kind, attributes)

    def start(
        self, name: str, kind: SpanKind = INTERNAL, attributes: Attributes | None = None
    ) -> Span | None:
        """A span that is not current yet and ends only when its holder calls ``end()``
        (a server stream's: it lives across many steps); ``None`` when off."""
        if self._tracer is None:
            return None
        return self._tracer.start_span(
            name,
            kind=kind,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )

    @staticmethod
    def current(span: Span | None) -> contextlib.AbstractContextManager[Span | None]:
        """``span`` as the parent of the spans started inside the block; it is neither
        ended nor marked failed here (its holder decides how it ends).

        Keep the block within one step of a generator, never around a ``yield``: a
        stream abandoned by its caller is closed later from another task, where the
        context attached before the ``yield`` could not be detached."""
        if span is None:
            return _OFF
        return use_span(span, record_exception=False, set_status_on_exception=False)

    @staticmethod
    @contextlib.contextmanager
    def _span(
        tracer: Tracer, name: str, kind: SpanKind, attributes: Attributes | None
    ) -> Iterator[Span]:
        # Our own failure recording: the SDK's would copy the exception's message.
        with tracer.start_as_current_span(
            name,
            kind=kind,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield span
            except BaseException as exc:
                failed(span, type(exc).__name__)
                raise

    def shutdown(self) -> None:
        """Flush what is buffered (the server is stopping)."""
        if self._provider is not None:
            self._provider.shutdown()


def failed(span: Span | None, error_type: str) -> None:
    """Mark ``span`` failed with a safe error type (a class name or a reason)."""
    if span is not None:
        span.set_attribute("error.type", error_type)
        span.set_status(Status(StatusCode.ERROR))
