"""Executing a tool: an agent lists the Gmail messages of the account its service
account connected, through ToolService.ExecuteTool (the SDK's execute_tool).

The first call finds no connected account and says where to connect one
(ToolNotConnected with a connect URL); after the consent, the same call runs.

    python -m control_plane.sandbox kubernetes --port 8701
    python -m control_plane.sandbox oauth gmail --port 8705 \\
        --client-id example-client --client-secret example-secret
    AGENTAUTH_SANDBOX_URL=http://127.0.0.1:8705 ./scripts/serve
    AGENTAUTH_ADMIN_KEY=aa_plat_... GMAIL_CLIENT_ID=example-client \\
        GMAIL_CLIENT_SECRET=example-secret python examples/execute_tool.py

Environment:
    AGENTAUTH_GRPC_TARGET  gRPC address                         (default 127.0.0.1:50051)
    AGENTAUTH_HTTP_URL     HTTP base URL                        (default http://127.0.0.1:8080)
    AGENTAUTH_ADMIN_KEY    platform admin key                   (required)
    K8S_ISSUER_URL         the sandbox cluster issuer           (default http://127.0.0.1:8701)
    GMAIL_CLIENT_ID        the OAuth client the emulator knows  (required)
    GMAIL_CLIENT_SECRET    its secret                           (required)
"""

from __future__ import annotations

import asyncio
import os

from _shared import (
    GRPC_TARGET,
    K8S_ISSUER_URL,
    admin_key,
    check,
    click_through_consent,
    issuer,
    kubernetes_workload_token,
    step,
    unique,
    workload_agents,
)
from agentauth import AgentTokenSource, ControlPlaneClient, ToolNotConnected
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import connection_pb2 as cpb

TOOL = "gmail.list_messages"


async def set_up_org(our_issuer: str) -> str:
    """An org with Gmail enabled and an agent allowed to run gmail.list_messages."""
    async with ControlPlaneClient(GRPC_TARGET, admin_key()) as admin:
        org = (
            await admin.admin.CreateOrganization(
                pb.CreateOrganizationRequest(organization=pb.Organization(display_name="Acme"))
            )
        ).organization.name
        await admin.connections.UpdateConnectorConfig(
            cpb.UpdateConnectorConfigRequest(name=f"{org}/connectors/gmail", enabled=True)
        )
        await admin.connections.SetOAuthApp(
            cpb.SetOAuthAppRequest(
                oauth_app=cpb.OAuthApp(
                    name=f"{org}/oauthApps/gmail",
                    client_id=os.environ["GMAIL_CLIENT_ID"],
                    client_secret=os.environ["GMAIL_CLIENT_SECRET"],
                )
            )
        )
        # Tool calls take a token addressed to agentauth itself with a tools: scope.
        await workload_agents(admin, org, {"mail-agent": ([f"tools:{TOOL}"], [our_issuer])})
    step(f"org {org}: Gmail enabled, agent mail-agent may run {TOOL}")
    return org


async def main() -> None:
    our_issuer = await issuer()
    org = await set_up_org(our_issuer)
    jwt = await kubernetes_workload_token(K8S_ISSUER_URL, "agents", "mail-agent", "agentauth")

    # --- from here on, this is the agent's code: no admin key ----------------------
    async with ControlPlaneClient(GRPC_TARGET) as cp:
        tokens = AgentTokenSource(cp, jwt, organization=org, audience=[our_issuer])
        token = await tokens.token()
        listed = await cp.list_tools("gmail", token=token)
        step(f"tools this token may run: {', '.join(t.name for t in listed)}")

        request_id = unique("list-unread")
        try:
            await cp.execute_tool(TOOL, {"q": "is:unread"}, token=token, request_id=request_id)
            check(False, "the first call must ask for a connection")
        except ToolNotConnected as err:
            step("not connected yet: the call returned a connect URL for the account's owner")
            page = await click_through_consent(err.connect_url)
            check("data-result=success" in page, "the connect page must report success")
            step("the owner connected Gmail")

        events: list[str] = []
        result = await cp.execute_tool(
            TOOL,
            {"q": "is:unread", "maxResults": 5},
            token=token,
            request_id=unique("list-unread"),  # a new call: the first one's outcome is kept
            on_event=lambda message: events.append(str(message.WhichOneof("event"))),
        )
        step(f"stream events: {' -> '.join(events)}")
        step(f"upstream status {result.upstream_status}, output_trust {result.output_trust}")
        # The sandbox's Gmail answers with a generic body; the real one lists messages.
        step(f"data: {str(result.data)[:120]}")
        check(result.upstream_status == 200, "the provider answered 200")
        check(events[0] == "accepted" and events[-1] == "result", "accepted, then the result")
    print("execute tool: OK")


if __name__ == "__main__":
    asyncio.run(main())
