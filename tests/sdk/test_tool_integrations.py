"""The OpenAI, Anthropic and LangChain tool adapters, each driven by its own library.

No network: the OpenAI and Anthropic clients talk to an httpx2 MockTransport
that plays one scripted model turn (a tool call) and records what the library
sent; LangChain's scripted chat model returns an AIMessage with a tool call.
The tool call itself goes through execute_tool to the scripted in-process
ToolService (tests/sdk/scripted_server.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from agentauth import ControlPlaneClient, ToolSpec, UnauthenticatedError
from agentauth.integrations.tool_runner import ToolNames, ToolRunner, model_name
from agentauth.v1 import tool_pb2

from tests.sdk.scripted_server import Abort, ScriptedTools, serve, tools_servicer
from tests.sdk.test_tools import SECRET_LINK, accepted, error, result

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")
httpx2 = pytest.importorskip("httpx2")
langchain_messages = pytest.importorskip("langchain_core.messages")

MODEL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # OpenAI's and Anthropic's rule
SCHEMA = {
    "type": "object",
    "properties": {"to": {"type": "string"}, "subject": {"type": "string"}},
    "required": ["to"],
}
ARGS = {"to": "bob@example.com", "subject": "hi"}


class Agent:
    """The scripted server, a client, and a runner offering two tools with an agent token."""

    def __init__(self, client: ControlPlaneClient, servicer: ScriptedTools) -> None:
        self.client, self.servicer = client, servicer
        self.token_calls = 0

    async def token(self) -> str:
        self.token_calls += 1
        return f"agent-token-{self.token_calls}"

    async def runner(self) -> ToolRunner:
        return ToolRunner(self.client, await self.client.list_tools(), token=self.token)

    def sent(self) -> tuple[str, dict[str, Any], str | None]:
        request = self.servicer.requests[-1]
        return request.tool, json.loads(_struct_json(request.arguments)), (
            self.servicer.authorization[-1]
        )


def _struct_json(struct: Any) -> str:
    from google.protobuf import json_format

    return json_format.MessageToJson(struct)


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    servicer = ScriptedTools()
    servicer.tools = [
        tool_pb2.Tool(
            name="gmail.send_message", description="Sends an email.",
            input_schema_json=json.dumps(SCHEMA), destructive=True,
        ),
        tool_pb2.Tool(name="slack.list_channels", description="Lists channels."),
    ]
    servicer.scripts["gmail.send_message"] = [accepted(), result({"id": "m-42", "labels": ["SENT"]})]
    servicer.scripts["slack.list_channels"] = [
        accepted(),
        error(
            tool_pb2.TOOL_ERROR_CODE_NOT_CONNECTED,
            reason="NO_ACCOUNT",
            message="connect Slack first",
            metadata={"connectUrl": SECRET_LINK},
        ),
    ]
    async with serve(tools_servicer(servicer)) as target:
        async with ControlPlaneClient(target, "k-admin") as client:
            yield Agent(client, servicer)


# -- names ------------------------------------------------------------------


@pytest.mark.parametrize(
    "tool",
    [
        "gmail.send_message",
        "google_calendar.list_events",
        "a" * 40 + "." + "b" * 64,  # the longest name the catalog schema allows
        "a" * 40 + "." + "b" * 63 + "c",
    ],
)
def test_model_names_fit_the_providers_rule_and_map_back(tool: str) -> None:
    name = model_name(tool)
    assert MODEL_NAME.match(name), name
    assert ToolNames([tool]).tool(name) == tool
    if len(tool) <= 64:
        assert name == tool.replace(".", "-")  # readable, reversible without the table


def test_long_names_stay_distinct_and_unknown_names_map_to_nothing() -> None:
    long_a, long_b = "a" * 40 + "." + "b" * 64, "a" * 40 + "." + "b" * 63 + "c"
    names = ToolNames([long_a, long_b, "gmail.send_message"])
    assert model_name(long_a) != model_name(long_b)
    assert names.tool("gmail_send_message") is None and names.tool("gmail.send_message") is None


# -- OpenAI -----------------------------------------------------------------


class ScriptedModel:
    """An httpx2 handler: answers each request with the next scripted body, records requests."""

    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.bodies = list(bodies)
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: Any) -> Any:
        self.requests.append(json.loads(request.content))
        return httpx2.Response(200, json=self.bodies.pop(0))

    def http_client(self) -> Any:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self))


def chat_completion(*calls: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_900_000_000,
        "model": "gpt-test",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": cid, "type": "function",
                         "function": {"name": name, "arguments": args}}
                        for cid, name, args in calls
                    ],
                },
            }
        ],
    }


async def test_openai_chat_completions_turn(agent: Agent) -> None:
    from agentauth.integrations.openai_tools import OpenAITools

    tools = OpenAITools(await agent.runner())
    model = ScriptedModel(
        chat_completion(
            ("call_1", "gmail-send_message", json.dumps(ARGS)),
            ("call_2", "slack-list_channels", "{}"),
            ("call_3", "gmail-delete_everything", "{}"),
            ("call_4", "gmail-send_message", "{not json"),
        ),
        chat_completion(),
    )
    async with openai.AsyncOpenAI(
        api_key="sk-test", base_url="https://openai.invalid/v1", http_client=model.http_client()
    ) as oa:
        messages: list[Any] = [{"role": "user", "content": "mail bob"}]
        completion = await oa.chat.completions.create(
            model="gpt-test", messages=messages, tools=tools.chat_completions_tools()
        )
        message = completion.choices[0].message
        replies = await tools.handle_chat_tool_calls(message)
        await oa.chat.completions.create(
            model="gpt-test",
            messages=[*messages, message.model_dump(exclude_none=True), *replies],
            tools=tools.chat_completions_tools(),
        )
    sent_tools = model.requests[0]["tools"]
    assert [t["function"]["name"] for t in sent_tools] == ["gmail-send_message",
                                                           "slack-list_channels"]
    assert sent_tools[0]["function"]["parameters"] == SCHEMA
    assert sent_tools[0]["function"]["description"] == "Sends an email."
    assert sent_tools[1]["function"]["parameters"] == {"type": "object", "properties": {}}
    assert len(agent.servicer.requests) == 3  # list_tools, then the two known tools
    assert agent.servicer.requests[1].tool == "gmail.send_message"
    assert json.loads(_struct_json(agent.servicer.requests[1].arguments)) == ARGS
    assert agent.servicer.authorization[1] == "Bearer agent-token-1"
    # What the library sent back to the model on the second turn.
    tool_messages = [m for m in model.requests[1]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_1", "call_2", "call_3", "call_4"]
    assert json.loads(tool_messages[0]["content"]) == {"id": "m-42", "labels": ["SENT"]}
    assert tool_messages[1]["content"] == "ERROR NO_ACCOUNT: connect Slack first"
    assert tool_messages[2]["content"].startswith("ERROR UNKNOWN_TOOL")
    assert tool_messages[3]["content"].startswith("ERROR INVALID_ARGUMENTS")
    assert SECRET_LINK not in json.dumps(model.requests[1])
    assert "agent-token" not in json.dumps(model.requests[1])


async def test_openai_responses_turn(agent: Agent) -> None:
    from agentauth.integrations.openai_tools import OpenAITools

    tools = OpenAITools(await agent.runner())
    first = {
        "id": "resp_1",
        "object": "response",
        "created_at": 1_900_000_000,
        "model": "gpt-test",
        "status": "completed",
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "output": [
            {"type": "function_call", "id": "fc_1", "call_id": "call_a",
             "name": "gmail-send_message", "arguments": json.dumps(ARGS), "status": "completed"},
            {"type": "function_call", "id": "fc_2", "call_id": "call_b",
             "name": "slack-list_channels", "arguments": "", "status": "completed"},
        ],
    }
    model = ScriptedModel(first, {**first, "id": "resp_2", "output": []})
    async with openai.AsyncOpenAI(
        api_key="sk-test", base_url="https://openai.invalid/v1", http_client=model.http_client()
    ) as oa:
        response = await oa.responses.create(
            model="gpt-test", input="mail bob", tools=tools.responses_tools()
        )
        outputs = await tools.handle_responses_output(response.output)
        await oa.responses.create(
            model="gpt-test",
            input=[*[o.model_dump(exclude_none=True) for o in response.output], *outputs],
            tools=tools.responses_tools(),
        )
    sent_tools = model.requests[0]["tools"]
    assert sent_tools[0] == {
        "type": "function", "name": "gmail-send_message", "description": "Sends an email.",
        "parameters": SCHEMA, "strict": False,
    }
    items = [i for i in model.requests[1]["input"] if i["type"] == "function_call_output"]
    assert [i["call_id"] for i in items] == ["call_a", "call_b"]
    assert json.loads(items[0]["output"]) == {"id": "m-42", "labels": ["SENT"]}
    assert items[1]["output"] == "ERROR NO_ACCOUNT: connect Slack first"
    tool, arguments, authorization = agent.sent()
    assert tool == "slack.list_channels" and arguments == {}


# -- Anthropic --------------------------------------------------------------


def anthropic_message(*blocks: dict[str, Any], stop: str = "tool_use") -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": list(blocks),
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 10},
    }


async def test_anthropic_tool_use_turn(agent: Agent) -> None:
    from agentauth.integrations.anthropic_tools import AnthropicTools

    tools = AnthropicTools(await agent.runner())
    model = ScriptedModel(
        anthropic_message(
            {"type": "text", "text": "Sending."},
            {"type": "tool_use", "id": "toolu_01", "name": "gmail-send_message", "input": ARGS},
            {"type": "tool_use", "id": "toolu_02", "name": "slack-list_channels", "input": {}},
        ),
        anthropic_message({"type": "text", "text": "Done."}, stop="end_turn"),
    )
    async with anthropic.AsyncAnthropic(
        api_key="test", base_url="https://anthropic.invalid", http_client=model.http_client()
    ) as client:
        messages: list[Any] = [{"role": "user", "content": "mail bob"}]
        message = await client.messages.create(
            model="claude-test", max_tokens=256, messages=messages, tools=tools.tools()
        )
        assert message.stop_reason == "tool_use"
        results = await tools.handle(message.content)
        await client.messages.create(
            model="claude-test",
            max_tokens=256,
            messages=[
                *messages,
                {"role": "assistant", "content": message.content},
                {"role": "user", "content": results},
            ],
            tools=tools.tools(),
        )
    assert model.requests[0]["tools"] == [
        {"name": "gmail-send_message", "description": "Sends an email.", "input_schema": SCHEMA},
        {"name": "slack-list_channels", "description": "Lists channels.",
         "input_schema": {"type": "object", "properties": {}}},
    ]
    sent = model.requests[1]["messages"][2]["content"]
    assert sent[0]["type"] == "tool_result" and sent[0]["tool_use_id"] == "toolu_01"
    assert json.loads(sent[0]["content"]) == {"id": "m-42", "labels": ["SENT"]}
    assert "is_error" not in sent[0]
    assert sent[1] == {
        "type": "tool_result", "tool_use_id": "toolu_02",
        "content": "NO_ACCOUNT: connect Slack first", "is_error": True,
    }
    assert SECRET_LINK not in json.dumps(model.requests[1])
    assert agent.servicer.requests[1].tool == "gmail.send_message"
    assert json.loads(_struct_json(agent.servicer.requests[1].arguments)) == ARGS
    assert agent.servicer.authorization[1:] == ["Bearer agent-token-1", "Bearer agent-token-2"]


# -- LangChain --------------------------------------------------------------


async def test_langchain_structured_tools_turn(agent: Agent) -> None:
    from agentauth.integrations.langchain_tools import langchain_tools
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.tools import StructuredTool

    tools = langchain_tools(await agent.runner())
    assert all(isinstance(t, StructuredTool) for t in tools)
    by_name = {t.name: t for t in tools}
    assert set(by_name) == {"gmail-send_message", "slack-list_channels"}
    assert by_name["gmail-send_message"].args == SCHEMA["properties"]
    ai = langchain_messages.AIMessage(
        content="",
        tool_calls=[
            {"name": "gmail-send_message", "args": ARGS, "id": "call_1", "type": "tool_call"},
            {"name": "slack-list_channels", "args": {}, "id": "call_2", "type": "tool_call"},
        ],
    )
    model = GenericFakeChatModel(messages=iter([ai]))
    turn = await model.ainvoke("mail bob")
    replies = [await by_name[c["name"]].ainvoke(c) for c in turn.tool_calls]
    ok, failed = replies
    assert isinstance(ok, langchain_messages.ToolMessage)
    assert ok.tool_call_id == "call_1" and ok.status == "success"
    assert json.loads(ok.content) == {"id": "m-42", "labels": ["SENT"]}
    assert ok.artifact.action_id == "act-1"  # the ToolCallResult rides along, not to the model
    assert failed.status == "error" and failed.tool_call_id == "call_2"
    assert failed.content == "NO_ACCOUNT: connect Slack first"
    assert agent.servicer.requests[1].tool == "gmail.send_message"
    assert json.loads(_struct_json(agent.servicer.requests[1].arguments)) == ARGS


async def test_langchain_tool_raises_tool_exception_when_errors_are_not_handled(
    agent: Agent,
) -> None:
    from agentauth.integrations.langchain_tools import langchain_tools
    from langchain_core.tools import ToolException

    (slack,) = [t for t in langchain_tools(await agent.runner()) if t.name.startswith("slack")]
    slack.handle_tool_error = False
    with pytest.raises(ToolException, match="^NO_ACCOUNT: connect Slack first$"):
        await slack.ainvoke({})


# -- shared behaviour -------------------------------------------------------


async def test_a_request_fault_is_raised_not_shown_to_the_model(agent: Agent) -> None:
    runner = await agent.runner()
    agent.servicer.scripts["gmail.send_message"] = [
        Abort(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED", "token expired")
    ]
    with pytest.raises(UnauthenticatedError):
        await runner.run("gmail-send_message", ARGS)


@pytest.mark.parametrize(
    "token", ["static-token", lambda: "sync-token"], ids=["string", "sync-getter"]
)
async def test_the_token_can_be_a_string_or_a_sync_getter(
    agent: Agent, token: str | Callable[[], str]
) -> None:
    runner = ToolRunner(agent.client, [ToolSpec("gmail.send_message", "", SCHEMA)], token=token)
    outcome = await runner.run("gmail-send_message", ARGS)
    assert not outcome.is_error and outcome.result is not None
    assert agent.servicer.authorization[-1] in ("Bearer static-token", "Bearer sync-token")


async def test_a_paging_result_carries_its_cursor_to_the_model(agent: Agent) -> None:
    agent.servicer.scripts["gmail.send_message"] = [
        accepted(), result({"items": [1]}, next_cursor="page-2")
    ]
    runner = ToolRunner(agent.client, [ToolSpec("gmail.send_message", "", SCHEMA)])
    outcome = await runner.run("gmail-send_message", json.dumps(ARGS))
    assert json.loads(outcome.content) == {"data": {"items": [1]}, "next_cursor": "page-2"}


# -- dependencies -----------------------------------------------------------


def test_sdk_and_tool_adapters_import_without_the_frameworks() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for m in ('openai', 'anthropic', 'langchain_core', 'langchain_core.tools',"
        " 'httpx2', 'pydantic'):\n"
        "    sys.modules[m] = None\n"
        "import agentauth\n"
        "from agentauth.integrations import openai_tools, anthropic_tools\n"
        "import agentauth.integrations.langchain_tools as lc\n"
        "try:\n"
        "    lc.langchain_tools(None)\n"
        "except ImportError as exc:\n"
        "    print('ok' if 'pip install langchain-core' in str(exc) else exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr
