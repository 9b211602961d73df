"""agentauth tools as Anthropic Messages API tools, and ``tool_use`` blocks into ``tool_result``.

::

    client = ControlPlaneClient(target)
    tools = AnthropicTools(ToolRunner(client, await client.list_tools(), token=source.token))
    message = await anthropic.messages.create(model=..., max_tokens=1024,
                                              messages=messages, tools=tools.tools())
    if message.stop_reason == "tool_use":
        messages += [
            {"role": "assistant", "content": message.content},
            {"role": "user", "content": await tools.handle(message.content)},
        ]

The anthropic package is not imported: tool specs are the plain dicts of its
``ToolParam`` and the ``tool_use`` blocks are read by attribute (or key). Tool
names are mapped as described in :mod:`agentauth.integrations.tool_runner`.
A failed call becomes a ``tool_result`` with ``is_error: true`` and the
error's safe message as its content.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentauth.integrations.tool_runner import ToolRunner

__all__ = ["AnthropicTools"]


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


class AnthropicTools:
    """Anthropic tool definitions for a :class:`ToolRunner`'s tools, and ``tool_use`` handling."""

    def __init__(self, runner: ToolRunner) -> None:
        self.runner = runner

    def tools(self) -> list[dict[str, Any]]:
        """``tools=`` for ``messages.create`` (``ToolParam``)."""
        return [
            {
                "name": self.runner.names.model(t.name),
                "description": t.description,
                "input_schema": t.input_schema or {"type": "object", "properties": {}},
            }
            for t in self.runner.tools
        ]

    async def handle(self, content: Iterable[Any]) -> list[dict[str, Any]]:
        """Runs the ``tool_use`` blocks of an assistant message's ``content``.

        Returns one ``tool_result`` block per call, in order: the content of
        the next user message (results must come first in it).
        """
        results = []
        for block in content:
            if _get(block, "type") != "tool_use":
                continue
            outcome = await self.runner.run(_get(block, "name"), _get(block, "input"))
            result: dict[str, Any] = {
                "type": "tool_result",
                "tool_use_id": _get(block, "id"),
                "content": outcome.content,
            }
            if outcome.is_error:
                result["is_error"] = True
            results.append(result)
        return results
