"""agentauth tools as LangChain ``StructuredTool`` objects (langchain-core).

::

    client = ControlPlaneClient(target)
    runner = ToolRunner(client, await client.list_tools(), token=source.token)
    tools = langchain_tools(runner)
    model = chat_model.bind_tools(tools)
    ai = await model.ainvoke(messages)
    messages += [ai, *[await tools_by_name[c["name"]].ainvoke(c) for c in ai.tool_calls]]

langchain-core is imported only when :func:`langchain_tools` is called; the
SDK does not depend on it (``pip install langchain-core``). The tools are
async only (``ainvoke``). Tool names are mapped as described in
:mod:`agentauth.integrations.tool_runner` so that the same tools work with
OpenAI and Anthropic chat models. Each tool answers with the result text as
content and the :class:`agentauth.ToolCallResult` as the message's artifact;
a failed call raises ``ToolException`` with the error's safe message, which
the tool (``handle_tool_error=True``) turns into a ``ToolMessage`` with
``status="error"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentauth.integrations.tool_runner import ToolRunner

if TYPE_CHECKING:
    from langchain_core.tools import StructuredTool

__all__ = ["langchain_tools"]


def langchain_tools(runner: ToolRunner) -> list[StructuredTool]:
    """One ``StructuredTool`` per tool of ``runner``."""
    try:
        from langchain_core.tools import StructuredTool, ToolException
    except ImportError as exc:
        raise ImportError(
            "agentauth.integrations.langchain_tools needs langchain-core: "
            "pip install langchain-core"
        ) from exc

    def build(model_name: str, description: str, schema: dict[str, Any]) -> StructuredTool:
        async def call(**arguments: Any) -> tuple[str, Any]:
            outcome = await runner.run(model_name, arguments)
            if outcome.is_error:
                raise ToolException(outcome.content)
            return outcome.content, outcome.result

        return StructuredTool(
            name=model_name,
            description=description,
            args_schema=schema or {"type": "object", "properties": {}},
            coroutine=call,
            response_format="content_and_artifact",
            handle_tool_error=True,
        )

    return [build(runner.names.model(t.name), t.description, t.input_schema) for t in runner.tools]
