"""An in-process ``grpc.aio`` server playing the control plane's wire behaviour from a script.

The SDK's stream handling is tested against real proto messages on a real
channel before the real ToolService exists: each RPC answers with the messages
a test scripts for it, and can end with a rich ``google.rpc.Status`` exactly as
the server's error interceptor sends one (one ``ErrorInfo``, domain
``agentauth``). Every request and its ``authorization`` header are recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from agentauth.v1 import token_pb2, token_pb2_grpc, tool_pb2, tool_pb2_grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2


@dataclass(frozen=True)
class Abort:
    """Ends the call with this status and ErrorInfo, as the real server's interceptor does."""

    code: grpc.StatusCode
    reason: str
    message: str = "refused"
    metadata: dict[str, str] = field(default_factory=dict)

    def trailer(self) -> tuple[tuple[str, bytes], ...]:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.ErrorInfo(
                reason=self.reason, domain="agentauth", metadata=self.metadata
            )
        )
        status = status_pb2.Status(
            code=self.code.value[0], message=self.message, details=[detail]
        )
        return (("grpc-status-details-bin", status.SerializeToString()),)


@dataclass(frozen=True)
class Hang:
    """Stops sending until the client goes away (or ``seconds`` pass)."""

    seconds: float = 30.0


Step = Any  # a response message, an Abort or a Hang


class Recorder:
    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.authorization: list[str | None] = []
        self.deadlines: list[float | None] = []
        self.cancelled = asyncio.Event()

    def record(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.requests.append(request)
        md = dict(context.invocation_metadata() or ())
        value = md.get("authorization")
        self.authorization.append(value if isinstance(value, str) else None)
        self.deadlines.append(context.time_remaining())

    async def play(
        self, steps: Sequence[Step], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            for step in steps:
                if isinstance(step, Abort):
                    await context.abort(step.code, step.message, trailing_metadata=step.trailer())
                elif isinstance(step, Hang):
                    await asyncio.sleep(step.seconds)
                else:
                    yield step
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


class ScriptedTools(tool_pb2_grpc.ToolServiceServicer, Recorder):
    """ToolService: ``tools`` for ListTools; ``scripts[tool]`` is the ExecuteTool stream."""

    def __init__(self) -> None:
        Recorder.__init__(self)
        self.tools: list[tool_pb2.Tool] = []
        self.scripts: dict[str, Sequence[Step]] = {}
        self.list_abort: Abort | None = None

    async def ListTools(  # noqa: N802 - the RPC's name
        self, request: tool_pb2.ListToolsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tool_pb2.ListToolsResponse:
        self.record(request, context)
        if self.list_abort is not None:
            await context.abort(
                self.list_abort.code, self.list_abort.message,
                trailing_metadata=self.list_abort.trailer(),
            )
        prefix = request.connector + "."
        return tool_pb2.ListToolsResponse(
            tools=[t for t in self.tools if not request.connector or t.name.startswith(prefix)]
        )

    async def ExecuteTool(  # noqa: N802 - the RPC's name
        self, request: tool_pb2.ExecuteToolRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[tool_pb2.ExecuteToolResponse]:
        self.record(request, context)
        async for msg in self.play(self.scripts[request.tool], context):
            yield msg


class ScriptedWatch(token_pb2_grpc.TokenServiceServicer, Recorder):
    """TokenService.WatchRevocations: the n-th call plays ``calls[n]`` (the last one repeats)."""

    def __init__(self, calls: Sequence[Sequence[Step]]) -> None:
        Recorder.__init__(self)
        self.calls = list(calls)

    async def WatchRevocations(  # noqa: N802 - the RPC's name
        self, request: token_pb2.WatchRevocationsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[token_pb2.WatchRevocationsResponse]:
        self.record(request, context)
        steps = self.calls[min(len(self.requests), len(self.calls)) - 1]
        async for msg in self.play(steps, context):
            yield msg


@contextlib.asynccontextmanager
async def serve(*adders: Callable[[grpc.aio.Server], None]) -> AsyncIterator[str]:
    """Starts a loopback server with the given servicers; yields its target."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    for add in adders:
        add(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=None)


def tools_servicer(servicer: ScriptedTools) -> Callable[[grpc.aio.Server], None]:
    return lambda server: tool_pb2_grpc.add_ToolServiceServicer_to_server(servicer, server)


def watch_servicer(servicer: ScriptedWatch) -> Callable[[grpc.aio.Server], None]:
    return lambda server: token_pb2_grpc.add_TokenServiceServicer_to_server(servicer, server)
