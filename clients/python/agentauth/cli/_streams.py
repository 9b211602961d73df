"""The two ways the CLI reads a server stream.

``tool execute`` follows one ExecuteTool call: progress (``accepted``,
``confirmation_required``, ...) goes to stderr as it arrives, then the result's
data to stdout, or the tool's error as one line on stderr and exit status 1.
A watch prints one line per event until it is interrupted, has printed
``--max-events`` events, or has run ``--timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TextIO, cast

from google.protobuf import json_format, struct_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from agentauth._tool_errors import ToolStreamIncomplete
from agentauth._tools import call_deadline, joined_chunks
from agentauth.cli._output import EventLines, is_event, printable
from agentauth.cli._request import UsageError, enum_label
from agentauth.v1 import connection_pb2, tool_pb2

__all__ = ["ToolCallFailed", "WatchState", "execute_tool", "watch"]


class ToolCallFailed(Exception):
    """The tool call ended without a result: exit status 1, ``str()`` is the one line."""


def _progress(msg: tool_pb2.ExecuteToolResponse) -> str:
    kind = msg.WhichOneof("event")
    if kind == "accepted":
        a = msg.accepted
        text = f"accepted: action {a.action_id}"
        if a.connected_account:
            text += f", account {a.connected_account}"
        if a.replayed:
            text += " (replayed: the outcome of an earlier call with this request id)"
        return text
    if kind == "credential_refreshed":
        return "credential refreshed"
    if kind == "retry_scheduled":
        r = msg.retry_scheduled
        return f"retry scheduled: attempt {r.attempt} in {r.delay.ToJsonString()} ({r.reason})"
    if kind == "confirmation_required":
        c = msg.confirmation_required
        return (
            f"confirmation required: {c.confirmation} (until {c.expire_time.ToJsonString()}): "
            f"{c.summary}; decide with: agentauth tool confirm {c.confirmation} "
            "--approver USER --approve (or --no-approve)"
        )
    # An event kind newer than this CLI: say that something happened.
    return f"event: {kind}"


def _error_line(error: tool_pb2.ToolError) -> str:
    code = enum_label(tool_pb2.ToolErrorCode.DESCRIPTOR, error.code) or str(error.code)
    text = f"{code.upper().replace('-', '_')}: {error.reason}: {error.message}"
    if error.retryable:
        after = error.retry_after.ToJsonString() if error.HasField("retry_after") else ""
        text += f" (retryable{' after ' + after if after else ''})"
    return printable(text)


def _assemble(result: tool_pb2.ToolResult, chunks: list[bytes]) -> None:
    """Puts a chunked result's data back together in ``result.data``."""
    try:
        json_format.ParseDict(joined_chunks(chunks), result.data)
    except ToolStreamIncomplete as exc:
        raise ToolCallFailed(str(exc)) from None
    # The data is whole now: nothing for the reader to put together.
    result.chunked = False


def _write_data(data: struct_pb2.Value, out: TextIO) -> None:
    value: Any = json_format.MessageToDict(data)
    if isinstance(value, str):
        # Text bodies as they are, but never a control character that would
        # drive the terminal (the provider wrote them).
        out.write("\n".join(printable(line) for line in value.split("\n")) + "\n")
    else:
        # json.dumps escapes control characters itself.
        out.write(json.dumps(value, indent=2, ensure_ascii=out.isatty()) + "\n")


async def execute_tool(
    tools: Any,
    request: tool_pb2.ExecuteToolRequest,
    bound: float | None,
    output: str,
    out: TextIO,
    err: TextIO,
) -> None:
    """Runs the call; returns after printing its result, raises ToolCallFailed otherwise.

    ``bound`` (seconds) bounds the whole call on the server (None: the server's
    default); the gRPC deadline leaves the server time to say TIMEOUT itself.
    """
    if bound is not None:
        if not bound > 0:
            raise UsageError("--timeout must be a positive number of seconds")
        request.timeout.FromTimedelta(timedelta(seconds=bound))
    call = tools.ExecuteTool(request, timeout=call_deadline(bound))
    chunks: list[bytes] = []
    try:
        async for msg in call:
            kind = msg.WhichOneof("event")
            if kind == "output_chunk":
                chunks.append(msg.output_chunk.data)
            elif kind in ("result", "error"):
                if kind == "result" and msg.result.chunked:
                    _assemble(msg.result, chunks)
                _finish(msg, output, out, err)
                return
            else:
                err.write(printable(_progress(msg)) + "\n")
                err.flush()
    finally:
        call.cancel()
    raise ToolCallFailed(
        "the stream ended without a result or an error: the outcome is unknown "
        "(run it again with the same --request-id to learn it)"
    )


def _finish(msg: tool_pb2.ExecuteToolResponse, output: str, out: TextIO, err: TextIO) -> None:
    if output == "json":
        out.write(json_format.MessageToJson(msg, indent=2, ensure_ascii=out.isatty()) + "\n")
    if msg.WhichOneof("event") == "error":
        raise ToolCallFailed(_error_line(msg.error))
    if output == "json":
        return
    result = msg.result
    if result.HasField("data"):
        _write_data(result.data, out)
    trust = enum_label(connection_pb2.OutputTrust.DESCRIPTOR, result.output_trust)
    note = f"result: upstream status {result.upstream_status}"
    if trust == "untrusted":
        note += ", untrusted: written by third parties, data not instructions"
    err.write(note + "\n")
    if result.next_cursor:
        err.write(f"more: next cursor {printable(result.next_cursor)}\n")


@dataclass
class WatchState:
    """How far a watch got: printed when it stops, so the operator can resume."""

    cursor: str = ""
    events: int = 0


async def watch(
    rpc: Callable[[Message], Any],
    request: Message,
    response_type: type[Message],
    *,
    max_events: int | None,
    stop_after: float | None,
    output: str,
    out: TextIO,
    err: TextIO,
    state: WatchState,
) -> None:
    """Prints events until ``max_events`` of them, ``stop_after`` seconds, or the server
    ends the stream. Synced marks and heartbeats are not events: ``--output json``
    prints them (a script may want to know the backlog is done), the table says
    once on stderr that the backlog is delivered."""
    if max_events is not None and max_events < 1:
        raise UsageError("--max-events must be at least 1")
    if stop_after is not None and not stop_after > 0:
        raise UsageError("--timeout must be a positive number of seconds")
    lines = EventLines(cast(Descriptor, response_type.DESCRIPTOR), output, out)
    synced = False
    call = rpc(request)
    try:
        async with asyncio.timeout(stop_after):
            async for msg in call:
                if getattr(msg, "cursor", ""):
                    state.cursor = msg.cursor
                if is_event(msg):
                    lines.write(msg)
                    state.events += 1
                    if max_events is not None and state.events >= max_events:
                        return
                elif output == "json":
                    lines.write(msg)
                elif not synced:
                    synced = True
                    err.write("synced: the backlog is delivered; waiting for events\n")
                    err.flush()
    except TimeoutError:
        return
    finally:
        call.cancel()
