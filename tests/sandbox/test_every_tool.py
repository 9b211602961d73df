"""Every tool of every OAuth connector in the catalog reaches its provider's emulator.

For each tool: the simplest arguments its input schema accepts, the request
``build_request`` makes of them with the connection values the vault stores, the
credential placed as the vault places it, sent to the connector's sandbox with a
token that sandbox issued. The emulator must answer 2xx and must have recognised
that very tool (method, URL, GraphQL document) with every scope it needs granted.
The ExecuteTool end-to-end test reuses :mod:`tests.sandbox.tool_calls`.
"""

from __future__ import annotations

import aiohttp
import jsonschema
import pytest

from control_plane.connectors.loader import load_catalog
from control_plane.connectors.requests import build_request
from control_plane.sandbox import SandboxProvider
from tests.sandbox.tool_calls import connect, minimal_arguments, send, string_for

CATALOG = load_catalog()
TOOLS = sorted(
    (c.id, t.name) for c in CATALOG if c.auth.type == "oauth2" for t in c.tools
)  # api_key / developer_secret connectors have no emulator


def test_every_oauth_connector_and_tool_is_covered() -> None:
    oauth = {c.id for c in CATALOG if c.auth.type == "oauth2"}
    assert {cid for cid, _ in TOOLS} == oauth and len(TOOLS) >= 60


@pytest.mark.parametrize(("cid", "name"), TOOLS)
async def test_tool_reaches_its_emulator(cid: str, name: str, http: aiohttp.ClientSession) -> None:
    async with SandboxProvider(CATALOG.connectors[cid]) as provider:
        connector = provider.connector_for_sandbox()
        tool = connector.tool(name)
        assert tool is not None
        args = minimal_arguments(tool.input_schema)
        checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
        jsonschema.Draft202012Validator(tool.input_schema, format_checker=checker).validate(args)
        access, connection = await connect(provider, http)
        request = build_request(tool, args, connection)
        status, body = await send(http, connector, request, access)
        assert 200 <= status < 300, (status, body)
        seen = provider.requests[-1]
        assert seen.tool == name and seen.authorized and seen.method == tool.http.method
        if tool.http.graphql is not None:
            assert seen.body == {"query": tool.http.graphql.query, "variables": args}


@pytest.mark.parametrize(
    "pattern",
    [
        r"^\s*(SELECT|select|Select)\s",
        r"^[^\s]{1,255}$",
        r"^(|/.*|id:[A-Za-z0-9_-]+)$",
        r"^[0-9]{1,20}(,[0-9]{1,20}){0,249}$",
        r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$",
    ],
)
def test_generated_strings_match_their_pattern(pattern: str) -> None:
    import re

    assert re.search(pattern, string_for(pattern))


async def test_a_graphql_error_in_a_200_is_classified_by_the_connectors_rules(
    http: aiohttp.ClientSession,
) -> None:
    import json

    from control_plane.vault.classify import classify_response

    async with SandboxProvider(CATALOG.connectors["linear"]) as linear:
        connector = linear.connector_for_sandbox()
        tool = connector.tool("linear.list_teams")
        assert tool is not None
        error = {"message": "Rate limit exceeded", "extensions": {"code": "RATELIMITED"}}
        linear.responses["linear.list_teams"] = {"errors": [error], "data": None}
        access, connection = await connect(linear, http)
        status, body = await send(http, connector, build_request(tool, {}, connection), access)
        assert status == 200
        raw = json.dumps(body).encode()
        failure = classify_response(connector, status, {}, raw, graphql=True)
        assert failure is not None and failure.error_class == "rate_limited"
        linear.responses.clear()
        status, body = await send(http, connector, build_request(tool, {}, connection), access)
        assert classify_response(connector, status, {}, json.dumps(body).encode(), graphql=True) is None
