"""ToolService: ListTools and the ExecuteTool stream (wire <-> the tool use cases).

The pipeline has authenticated the caller's token (``tool_token``) before either
method runs. ExecuteTool checks the request's own fields before the stream opens
(a malformed field is a gRPC INVALID_ARGUMENT, like any RPC); everything after is
a stream of events ending in exactly one ``result`` or ``error``. A result larger
than :data:`CHUNK_THRESHOLD` as JSON text is sent as ``output_chunk`` pieces so
that no message nears a client's default 4 MiB receive limit.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from agentauth.v1 import connection_pb2 as cpb
from agentauth.v1 import tool_pb2 as pb
from agentauth.v1 import tool_pb2_grpc
from google.protobuf import json_format, struct_pb2

from control_plane.api.connection_servicer import OUTPUT_TRUST
from control_plane.api.convert import ts
from control_plane.api.pipeline import current_principal, stream_outcome
from control_plane.domain import names
from control_plane.domain import tool_outcome as out
from control_plane.domain.errors import field_error
from control_plane.domain.tool_confirmation import STATES
from control_plane.services.tool_confirmations import (
    ConfirmationView,
    ToolConfirmations,
    confirmation_name,
)
from control_plane.services.tool_execution import ToolCall, ToolExecutor, check_call
from control_plane.services.tool_listing import ToolListing, ToolListingService

CHUNK_THRESHOLD = 256 * 1024
CHUNK_SIZE = 64 * 1024

_CONNECTION = {
    "CONNECTED": pb.TOOL_CONNECTION_STATE_CONNECTED,
    "NOT_CONNECTED": pb.TOOL_CONNECTION_STATE_NOT_CONNECTED,
    "NEEDS_RECONNECT": pb.TOOL_CONNECTION_STATE_NEEDS_RECONNECT,
    "NOT_REQUIRED": pb.TOOL_CONNECTION_STATE_NOT_REQUIRED,
}
_CODES: dict[str, Any] = {
    code: pb.ToolErrorCode.Value("TOOL_ERROR_CODE_" + code) for code in out.CODES
}
Ctx = grpc.aio.ServicerContext[Any, Any]


class ToolServicer(tool_pb2_grpc.ToolServiceServicer):
    def __init__(
        self,
        listing: ToolListingService,
        executor: ToolExecutor,
        confirmations: ToolConfirmations,
    ) -> None:
        self.listing = listing
        self.executor = executor
        self.confirmations = confirmations

    async def ListTools(self, request: pb.ListToolsRequest, context: Ctx) -> pb.ListToolsResponse:
        found = await self.listing.list(current_principal(), request.connector)
        return pb.ListToolsResponse(tools=[_tool(t) for t in found])

    async def ExecuteTool(
        self, request: pb.ExecuteToolRequest, context: Ctx
    ) -> AsyncIterator[pb.ExecuteToolResponse]:
        timeout = None
        if request.HasField("timeout"):
            timeout = request.timeout.ToTimedelta().total_seconds()
        try:
            arguments = json_format.MessageToDict(request.arguments)
        except (ValueError, TypeError):
            raise field_error("arguments", "is not a JSON object") from None
        call = ToolCall(
            tool=request.tool,
            arguments=arguments,
            connected_account=request.connected_account,
            request_id=request.request_id,
            timeout=timeout,
        )
        check_call(call)
        # The principal is read here, while the pipeline has it bound; the stream's
        # messages are read after the pipeline's stages, when it no longer is.
        return _stream(self.executor.events(current_principal(), call))

    async def ConfirmAction(
        self, request: pb.ConfirmActionRequest, context: Ctx
    ) -> pb.ConfirmActionResponse:
        decided = await self.confirmations.decide(
            current_principal(), request.name, request.approver, request.approve, request.reason
        )
        return pb.ConfirmActionResponse(confirmation=_confirmation(decided))

    async def GetToolConfirmation(
        self, request: pb.GetToolConfirmationRequest, context: Ctx
    ) -> pb.GetToolConfirmationResponse:
        found = await self.confirmations.get(current_principal(), request.name)
        return pb.GetToolConfirmationResponse(confirmation=_confirmation(found))


_CONFIRMATION_STATES: dict[str, Any] = {
    state: pb.ToolConfirmationState.Value("TOOL_CONFIRMATION_STATE_" + state) for state in STATES
}


def _confirmation(c: ConfirmationView) -> pb.ToolConfirmation:
    return pb.ToolConfirmation(
        name=confirmation_name(c.org_id, c.id),
        tool=c.tool,
        summary=c.summary,
        principal=c.principal,
        actor=c.actor,
        state=_CONFIRMATION_STATES[c.state],
        approver=names.child_name(c.org_id, "users", c.approver_id) if c.approver_id else "",
        reason=c.reason,
        create_time=ts(c.create_time),
        expire_time=ts(c.expire_time),
        decide_time=ts(c.decide_time),
    )


async def _stream(events: AsyncIterator[out.Event]) -> AsyncIterator[pb.ExecuteToolResponse]:
    async for event in events:
        if isinstance(event, out.Failed):  # the RPC succeeds; its trace says the tool failed
            stream_outcome(event.code)
        for message in _messages(event):
            yield message


def _messages(event: out.Event) -> list[pb.ExecuteToolResponse]:
    if isinstance(event, out.Accepted):
        return [
            pb.ExecuteToolResponse(
                accepted=pb.ToolCallAccepted(
                    action_id=event.action_id,
                    connected_account=event.account,
                    replayed=event.replayed,
                )
            )
        ]
    if isinstance(event, out.Refreshed):
        return [pb.ExecuteToolResponse(credential_refreshed=pb.CredentialRefreshed())]
    if isinstance(event, out.ConfirmationRequired):
        required = pb.ConfirmationRequired(confirmation=event.confirmation, summary=event.summary)
        required.expire_time.FromDatetime(event.expire_time)
        return [pb.ExecuteToolResponse(confirmation_required=required)]
    if isinstance(event, out.RetryScheduled):
        retry = pb.RetryScheduled(reason=event.reason, attempt=event.attempt)
        retry.delay.FromNanoseconds(int(event.delay * 1e9))
        return [pb.ExecuteToolResponse(retry_scheduled=retry)]
    if isinstance(event, out.Failed):
        error = pb.ToolError(
            code=_CODES[event.code],
            reason=event.reason,
            message=event.message,
            retryable=bool(event.retryable),
            metadata=event.metadata,
        )
        if event.retry_after is not None:
            error.retry_after.FromNanoseconds(int(event.retry_after * 1e9))
        return [pb.ExecuteToolResponse(error=error)]
    return _result(event)


def _result(event: out.Succeeded) -> list[pb.ExecuteToolResponse]:
    result = pb.ToolResult(
        upstream_status=event.status,
        output_trust=OUTPUT_TRUST.get(event.output_trust, cpb.OUTPUT_TRUST_UNTRUSTED),
        content_type=event.content_type,
        next_cursor=event.next_cursor,
    )
    text = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) <= CHUNK_THRESHOLD:
        value = struct_pb2.Value()
        json_format.ParseDict(event.data, value)
        result.data.CopyFrom(value)
        return [pb.ExecuteToolResponse(result=result)]
    result.chunked = True
    pieces = [
        pb.ExecuteToolResponse(output_chunk=pb.OutputChunk(data=text[i : i + CHUNK_SIZE]))
        for i in range(0, len(text), CHUNK_SIZE)
    ]
    return [*pieces, pb.ExecuteToolResponse(result=result)]


def _tool(listing: ToolListing) -> pb.Tool:
    t = listing.tool
    return pb.Tool(
        name=t.name,
        description=t.description,
        input_schema_json=json.dumps(t.input_schema, separators=(",", ":"), sort_keys=True),
        provider_scopes=list(t.scopes),
        destructive=t.destructive,
        output_trust=OUTPUT_TRUST.get(t.output_trust, cpb.OUTPUT_TRUST_UNTRUSTED),
        cursor_argument=t.pagination.cursor_argument if t.pagination is not None else "",
        connection=pb.ToolConnection(
            state=_CONNECTION[listing.connection],
            connected_account=listing.account,
            connect_url=listing.connect_url,
        ),
    )
