"""Every tool of every OAuth connector in the catalog runs end to end through ExecuteTool.

For each connector: an org enables it, its user connects through the hosted connect
flow against the connector's sandbox emulator, and an agent with a delegated token
runs each tool with the simplest arguments its schema accepts. The emulator must
have seen exactly that tool, authorized, and the stream must end in a result.
"""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.connectors.loader import load_catalog
from tests.api.tool_helpers import tool_world
from tests.sandbox.tool_calls import CONNECTION, minimal_arguments

CATALOG = load_catalog()
CONNECTORS = sorted(c.id for c in CATALOG if c.auth.type == "oauth2")


def test_every_oauth_connector_is_covered() -> None:
    assert len(CONNECTORS) >= 15


@pytest.mark.parametrize("cid", CONNECTORS)
async def test_every_tool_of_the_connector_runs(harness: Any, cid: str) -> None:
    connector = CATALOG.connectors[cid]
    async with tool_world(harness, cid) as w:
        params = {p.name: CONNECTION[p.name] for p in connector.auth.connection_params}
        account = await w.connect(account=await w.create_account(connection_params=params))
        token = await w.delegated()
        for tool in connector.tools:
            got = await w.run(token, tool.name, minimal_arguments(tool.input_schema))
            assert got.kinds[-1] == "result", (tool.name, got.messages)
            assert got.accepted.connected_account == account
            seen = w.provider.requests[-1]
            assert seen.tool == tool.name and seen.authorized
            assert 200 <= got.result.upstream_status < 300
        assert len(w.provider.requests) == len(connector.tools)
