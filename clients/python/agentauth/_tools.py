"""Running connector tools through ``ToolService``: ListTools and the ExecuteTool stream.

``ExecuteTool`` answers with a stream: ``accepted`` once the call is authorized
and its arguments are valid, progress (``credential_refreshed``,
``retry_scheduled``, ``output_chunk``), then exactly one ``result`` or
``error``. :class:`_ToolStream` folds those messages into a
:class:`ToolCallResult` or a typed :class:`agentauth.ToolError`; it knows
nothing of the transport, so the async client and the sync facade share it.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from google.protobuf import duration_pb2, struct_pb2

from agentauth._tool_errors import ToolStreamIncomplete, tool_error_from_proto
from agentauth.v1 import connection_pb2, tool_pb2

__all__ = [
    "ToolCallResult",
    "ToolEventCallback",
    "ToolRetry",
    "ToolSpec",
]

#: Called with every message of the stream, in order (sync or async).
ToolEventCallback = Callable[[tool_pb2.ExecuteToolResponse], Awaitable[None] | None]

#: The server's bound on a call when the request sets none.
SERVER_DEFAULT_TIMEOUT = 60.0
#: The gRPC deadline exceeds the call's own bound by this much, so that the
#: server's terminal TIMEOUT error reaches us before the transport gives up.
DEADLINE_GRACE = 5.0


def _trust(value: int) -> str:
    try:
        name: str = connection_pb2.OutputTrust.Name(value)
    except ValueError:
        return "UNSPECIFIED"
    return name.removeprefix("OUTPUT_TRUST_")


def _connection_state(value: int) -> str:
    try:
        name: str = tool_pb2.ToolConnectionState.Name(value)
    except ValueError:
        return "UNSPECIFIED"
    return name.removeprefix("TOOL_CONNECTION_STATE_")


@dataclass(frozen=True)
class ToolSpec:
    """A tool the caller may run, as ``ListTools`` describes it.

    Attributes:
        name: ``"{connector}.{verb}"``, e.g. ``"gmail.send_message"``.
        description: what the tool does, written for a model.
        input_schema: the arguments' JSON Schema (2020-12), parsed.
        provider_scopes: the provider scopes the connected account must grant.
        destructive: the tool changes something that cannot be taken back.
        output_trust: ``"TRUSTED"`` or ``"UNTRUSTED"`` (third-party content).
        connection_state: ``"CONNECTED"``, ``"NOT_CONNECTED"``,
            ``"NEEDS_RECONNECT"`` or ``"NOT_REQUIRED"``.
        connected_account: the account calls use by default.
        connect_url: a single-use link that (re)connects the account, or "".
        cursor_argument: the argument that takes a page cursor, or "".
    """

    name: str
    description: str
    input_schema: dict[str, Any]
    provider_scopes: tuple[str, ...] = ()
    destructive: bool = False
    output_trust: str = "UNSPECIFIED"
    connection_state: str = "UNSPECIFIED"
    connected_account: str = ""
    connect_url: str = field(default="", repr=False)
    cursor_argument: str = ""

    @classmethod
    def from_proto(cls, tool: tool_pb2.Tool) -> ToolSpec:
        schema = json.loads(tool.input_schema_json) if tool.input_schema_json else {}
        if not isinstance(schema, dict):
            raise ValueError(f"tool {tool.name!r}: input schema is not a JSON object")
        return cls(
            name=tool.name,
            description=tool.description,
            input_schema=schema,
            provider_scopes=tuple(tool.provider_scopes),
            destructive=tool.destructive,
            output_trust=_trust(tool.output_trust),
            connection_state=_connection_state(tool.connection.state),
            connected_account=tool.connection.connected_account,
            connect_url=tool.connection.connect_url,
            cursor_argument=tool.cursor_argument,
        )


@dataclass(frozen=True)
class ToolRetry:
    """A ``retry_scheduled`` event: the server waited ``delay`` seconds and tried again."""

    delay: float
    reason: str
    attempt: int


@dataclass(frozen=True)
class ToolCallResult:
    """A tool call's successful outcome.

    Attributes:
        data: the provider's response as Python values (JSON objects are
            dicts, integral numbers ints); non-JSON bodies are a string.
        upstream_status: the provider's HTTP status.
        output_trust: ``"UNTRUSTED"`` when third parties wrote the data: treat
            it as input, never as instructions.
        next_cursor: for a paging tool, the cursor argument of the next page.
        content_type: the response's media type.
        action_id: names the call's records in the audit trail.
        connected_account: the account used ("" for developer-secret connectors).
        replayed: the recorded outcome of an earlier call with the same
            ``request_id``; the provider was not called again.
        credential_refreshed: the account's token was refreshed for this call.
        retries: the retries the server made, in order.
    """

    data: Any
    upstream_status: int
    output_trust: str
    next_cursor: str = ""
    content_type: str = ""
    action_id: str = ""
    connected_account: str = ""
    replayed: bool = False
    credential_refreshed: bool = False
    retries: tuple[ToolRetry, ...] = ()


def value_to_python(value: struct_pb2.Value) -> Any:
    """A ``google.protobuf.Value`` as the Python value ``json.loads`` would give.

    Struct numbers are doubles; integral ones within 2**53 become ints, as the
    JSON text the provider sent most likely had them.
    """
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return {k: value_to_python(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [value_to_python(v) for v in value.list_value.values]
    if kind == "number_value":
        n = value.number_value
        if math.isfinite(n) and n.is_integer() and abs(n) <= 2**53:
            return int(n)
        return n
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    return None


def arguments_struct(arguments: Mapping[str, Any] | None) -> struct_pb2.Struct:
    """The tool arguments as a ``Struct``; raises ``ValueError`` for non-JSON values."""
    struct = struct_pb2.Struct()
    if arguments:
        if not isinstance(arguments, Mapping):
            raise TypeError("tool arguments must be a mapping of names to JSON values")
        struct.update(dict(arguments))
    return struct


def execute_request(
    tool: str,
    arguments: Mapping[str, Any] | None,
    *,
    connected_account: str,
    request_id: str,
    timeout: float | None,
) -> tool_pb2.ExecuteToolRequest:
    request = tool_pb2.ExecuteToolRequest(
        tool=tool,
        arguments=arguments_struct(arguments),
        connected_account=connected_account,
        request_id=request_id,
    )
    if timeout is not None:
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        request.timeout.CopyFrom(_duration(timeout))
    return request


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(timedelta(seconds=seconds))
    return d


def call_deadline(timeout: float | None) -> float:
    """The gRPC deadline for a call bounded by ``timeout`` (the server's default if None)."""
    return (timeout if timeout is not None else SERVER_DEFAULT_TIMEOUT) + DEADLINE_GRACE


def joined_chunks(chunks: Sequence[bytes]) -> Any:
    """The value a chunked result's ``output_chunk`` pieces spell (JSON text; none: None).

    Raises ToolStreamIncomplete when they do not make whole JSON."""
    text = b"".join(chunks)
    try:
        return json.loads(text.decode("utf-8")) if text else None
    except (UnicodeDecodeError, ValueError):
        # Never the text itself: it is the provider's data.
        raise ToolStreamIncomplete(
            f"the chunked result is not complete JSON ({len(text)} bytes received)"
        ) from None


class _ToolStream:
    """Folds the messages of one ExecuteTool stream into its outcome."""

    def __init__(self) -> None:
        self._accepted: tool_pb2.ToolCallAccepted | None = None
        self._refreshed = False
        self._retries: list[ToolRetry] = []
        self._chunks: list[bytes] = []

    def feed(self, msg: tool_pb2.ExecuteToolResponse) -> ToolCallResult | None:
        """Takes one message; returns the result when it is the terminal success.

        Raises the typed :class:`agentauth.ToolError` when it is the terminal error.
        """
        kind = msg.WhichOneof("event")
        if kind == "accepted":
            self._accepted = msg.accepted
        elif kind == "credential_refreshed":
            self._refreshed = True
        elif kind == "retry_scheduled":
            r = msg.retry_scheduled
            self._retries.append(
                ToolRetry(r.delay.ToTimedelta().total_seconds(), r.reason, r.attempt)
            )
        elif kind == "output_chunk":
            self._chunks.append(msg.output_chunk.data)
        elif kind == "result":
            return self._result(msg.result)
        elif kind == "error":
            action = self._accepted.action_id if self._accepted is not None else ""
            raise tool_error_from_proto(msg.error, action)
        # An event kind newer than this SDK is progress we cannot show: skip it.
        return None

    def incomplete(self) -> ToolStreamIncomplete:
        """The error for a stream that ended before its terminal message."""
        accepted = self._accepted
        return ToolStreamIncomplete(
            "the tool call stream ended without a result or an error"
            + (" after the call was accepted" if accepted is not None else ""),
            action_id=accepted.action_id if accepted is not None else "",
        )

    def _result(self, result: tool_pb2.ToolResult) -> ToolCallResult:
        if result.chunked:
            data = joined_chunks(self._chunks)
        else:
            data = value_to_python(result.data) if result.HasField("data") else None
        accepted = self._accepted or tool_pb2.ToolCallAccepted()
        return ToolCallResult(
            data=data,
            upstream_status=result.upstream_status,
            output_trust=_trust(result.output_trust),
            next_cursor=result.next_cursor,
            content_type=result.content_type,
            action_id=accepted.action_id,
            connected_account=accepted.connected_account,
            replayed=accepted.replayed,
            credential_refreshed=self._refreshed,
            retries=tuple(self._retries),
        )


async def notify(callback: ToolEventCallback | None, msg: tool_pb2.ExecuteToolResponse) -> None:
    if callback is None:
        return
    outcome = callback(msg)
    if inspect.isawaitable(outcome):
        await outcome
