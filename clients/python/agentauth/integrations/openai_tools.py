"""agentauth tools as OpenAI function tools (Chat Completions and the Responses API).

::

    client = ControlPlaneClient(target)
    tools = OpenAITools(ToolRunner(client, await client.list_tools(), token=source.token))
    completion = await openai.chat.completions.create(
        model=..., messages=messages, tools=tools.chat_completions_tools())
    message = completion.choices[0].message
    messages += [message, *await tools.handle_chat_tool_calls(message)]

    response = await openai.responses.create(model=..., input=items,
                                             tools=tools.responses_tools())
    items += [*response.output, *await tools.handle_responses_output(response.output)]

The openai package is not imported: tool specs are the plain dicts its
``*Param`` types describe, and the model's tool calls are read by attribute
(or key) from its own objects. Tool names are mapped for the model as
described in :mod:`agentauth.integrations.tool_runner` (``gmail.send_message``
is ``gmail-send_message``). A failed tool call becomes an ``"ERROR "`` +
``"REASON: message"`` string output: OpenAI has no error flag for tool output.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentauth.integrations.tool_runner import ToolOutcome, ToolRunner

__all__ = ["OpenAITools"]

ERROR_PREFIX = "ERROR "


def _get(obj: Any, name: str) -> Any:
    # The SDK's pydantic models and the dicts a caller may have built alike.
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def _output(outcome: ToolOutcome) -> str:
    return ERROR_PREFIX + outcome.content if outcome.is_error else outcome.content


class OpenAITools:
    """OpenAI function tools for a :class:`ToolRunner`'s tools, and their call handling."""

    def __init__(self, runner: ToolRunner, *, strict: bool = False) -> None:
        self.runner = runner
        # Strict mode requires every property listed as required and no
        # additionalProperties; connector schemas have optional arguments.
        self._strict = strict

    def chat_completions_tools(self) -> list[dict[str, Any]]:
        """``tools=`` for Chat Completions (``ChatCompletionFunctionToolParam``)."""
        return [
            {
                "type": "function",
                "function": {
                    "name": self.runner.names.model(t.name),
                    "description": t.description,
                    "parameters": t.input_schema or {"type": "object", "properties": {}},
                    "strict": self._strict,
                },
            }
            for t in self.runner.tools
        ]

    def responses_tools(self) -> list[dict[str, Any]]:
        """``tools=`` for the Responses API (``FunctionToolParam``)."""
        return [
            {
                "type": "function",
                "name": self.runner.names.model(t.name),
                "description": t.description,
                "parameters": t.input_schema or {"type": "object", "properties": {}},
                "strict": self._strict,
            }
            for t in self.runner.tools
        ]

    async def handle_chat_tool_calls(self, message: Any) -> list[dict[str, Any]]:
        """Runs the function tool calls of an assistant ``ChatCompletionMessage``.

        Returns one ``{"role": "tool", "tool_call_id", "content"}`` message per
        call, in order, to append after the assistant message.
        """
        replies = []
        for call in _get(message, "tool_calls") or ():
            if _get(call, "type") != "function":
                continue  # custom tools are not ours
            function = _get(call, "function")
            outcome = await self.runner.run(_get(function, "name"), _get(function, "arguments"))
            replies.append(
                {"role": "tool", "tool_call_id": _get(call, "id"), "content": _output(outcome)}
            )
        return replies

    async def handle_responses_output(self, output: Iterable[Any]) -> list[dict[str, Any]]:
        """Runs the ``function_call`` items of a Response's ``output``.

        Returns one ``function_call_output`` input item per call, in order.
        """
        items = []
        for item in output:
            if _get(item, "type") != "function_call":
                continue
            outcome = await self.runner.run(_get(item, "name"), _get(item, "arguments"))
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": _get(item, "call_id"),
                    "output": _output(outcome),
                }
            )
        return items
