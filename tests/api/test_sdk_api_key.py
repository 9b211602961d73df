"""The SDK with an admin key as people paste it: a trailing newline works."""

from __future__ import annotations

from typing import Any

from agentauth import ControlPlaneClient
from agentauth.v1 import admin_pb2 as pb


async def test_an_api_key_with_a_trailing_newline_works(harness: Any) -> None:
    """A key read from a file or pasted with its newline used to fail inside gRPC's C
    core (ExecuteBatchError); surrounding whitespace is now dropped."""
    async with ControlPlaneClient(harness.target, harness.platform_key + "\n") as c:
        got = await c.admin.ListOrganizations(pb.ListOrganizationsRequest())
        assert got is not None
    async with ControlPlaneClient(harness.target, "  " + harness.platform_key + "\r\n") as c:
        await c.admin.ListOrganizations(pb.ListOrganizationsRequest())
