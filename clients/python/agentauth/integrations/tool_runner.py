"""What the framework adapters share: model-facing tool names and one way to run a call.

Tool names and the model
------------------------
agentauth names tools ``{connector}.{verb}`` (``gmail.send_message``; both parts
``[a-z][a-z0-9_]*``, up to 105 characters). OpenAI and Anthropic accept only
``^[a-zA-Z0-9_-]{1,64}$``. :class:`ToolNames` maps each name to a model name by
replacing the dot with a hyphen, which never occurs in a tool name, so the
mapping is reversible on its own: ``gmail.send_message`` <->
``gmail-send_message``. A name that would still be longer than 64 characters
is cut to 55 and suffixed with ``-`` and 8 hex digits of its SHA-256; such a
name is reversible only through the adapter's table, which holds every tool
it offered. A model name that is not in the table is refused as an unknown
tool and never sent to the control plane.

What the model sees
-------------------
A result is the provider's data as JSON text (a string body as is); a paging
tool's next cursor comes along as ``{"data": ..., "next_cursor": "..."}`` so
the model can ask for the next page. A :class:`agentauth.ToolError` becomes
its ``str()``, ``"REASON: message"``: the server's safe message, never the
metadata (connect links, scope lists) or a token.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agentauth._tool_errors import ToolError
from agentauth._tools import ToolCallResult, ToolSpec

__all__ = ["ToolExecutor", "ToolNames", "ToolOutcome", "ToolRunner"]

_MAX = 64
_HASHED_PREFIX = 55

#: The agent's access token, or a getter for a current one (e.g. AgentTokenSource.token).
TokenProvider = str | Callable[[], str | Awaitable[str]]


class ToolExecutor(Protocol):
    """What the adapters need of a client; :class:`agentauth.ControlPlaneClient` is one."""

    async def execute_tool(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        connected_account: str = "",
        request_id: str = "",
        timeout: float | None = None,  # noqa: ASYNC109 - the server-side bound
        token: str | None = None,
    ) -> ToolCallResult: ...


def model_name(tool: str) -> str:
    """The model-facing name of ``tool`` (see the module docstring)."""
    name = tool.replace(".", "-")
    if len(name) <= _MAX:
        return name
    digest = hashlib.sha256(tool.encode()).hexdigest()[:8]
    return f"{name[:_HASHED_PREFIX]}-{digest}"


class ToolNames:
    """The reversible table between tool names and model-facing names for one tool set."""

    def __init__(self, tools: Iterable[str]) -> None:
        self._to_tool: dict[str, str] = {}
        for tool in tools:
            name = model_name(tool)
            other = self._to_tool.setdefault(name, tool)
            if other != tool:
                raise ValueError(f"tools {other!r} and {tool!r} map to one model name {name!r}")

    def model(self, tool: str) -> str:
        return model_name(tool)

    def tool(self, model_name: str) -> str | None:
        """The tool a model-facing name stands for; None when this set has no such tool."""
        return self._to_tool.get(model_name)


@dataclass(frozen=True)
class ToolOutcome:
    """One tool call's answer for the model: ``content`` text, and whether it is an error."""

    content: str
    is_error: bool
    result: ToolCallResult | None = None
    error: ToolError | None = None


class _UnknownTool(ToolError):
    pass


class _BadArguments(ToolError):
    pass


def render(result: ToolCallResult) -> str:
    data = result.data
    if result.next_cursor:
        return json.dumps({"data": data, "next_cursor": result.next_cursor}, ensure_ascii=False)
    if isinstance(data, str):
        return data
    return json.dumps(data, ensure_ascii=False)


class ToolRunner:
    """Runs model tool calls through ``execute_tool`` for a fixed set of tools.

    Args:
        executor: a :class:`agentauth.ControlPlaneClient` (or anything with its
            ``execute_tool``).
        tools: the tools to offer, from ``list_tools()``.
        token: the agent's access token, or a getter (sync or async) called
            for every tool call, e.g. ``AgentTokenSource(...).token``; None:
            the client's own key.
        timeout: the bound on each call, in seconds (None: the server's default).
    """

    def __init__(
        self,
        executor: ToolExecutor,
        tools: Iterable[ToolSpec],
        *,
        token: TokenProvider | None = None,
        timeout: float | None = None,
    ) -> None:
        self.executor = executor
        self.tools = list(tools)
        self.names = ToolNames(t.name for t in self.tools)
        self._token = token
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tools={[t.name for t in self.tools]!r})"

    async def _current_token(self) -> str | None:
        if self._token is None or isinstance(self._token, str):
            return self._token
        value = self._token()
        if inspect.isawaitable(value):
            value = await value
        return value

    async def run(self, name: str, arguments: Mapping[str, Any] | str | None) -> ToolOutcome:
        """Runs the model's call of ``name`` (a model-facing name).

        ``arguments`` is the model's JSON object, parsed or as text. Tool errors,
        unknown names and unparseable arguments come back as an error outcome
        for the model; faults of the request itself (e.g. an expired token,
        :class:`agentauth.AgentAuthError`) are raised, as no model can fix them.
        """
        tool = self.names.tool(name)
        if tool is None:
            return _failed(_UnknownTool("no such tool is offered", code="UNKNOWN_TOOL"))
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                arguments = None
                parsed_ok = False
            else:
                parsed_ok = True
            if not parsed_ok or not isinstance(arguments, Mapping):
                return _failed(
                    _BadArguments("the arguments are not a JSON object", code="INVALID_ARGUMENTS")
                )
        try:
            result = await self.executor.execute_tool(
                tool, arguments, timeout=self._timeout, token=await self._current_token()
            )
        except ToolError as err:
            return _failed(err)
        return ToolOutcome(render(result), False, result=result)


def _failed(err: ToolError) -> ToolOutcome:
    return ToolOutcome(str(err), True, error=err)
