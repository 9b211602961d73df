"""Connect a user's Gmail account, in sandbox mode (no Google account needed).

Start the Gmail emulator, then the control plane pointed at it:

    python -m control_plane.sandbox oauth gmail --port 8705 \\
        --client-id example-client --client-secret example-secret
    AGENTAUTH_SANDBOX_URL=http://127.0.0.1:8705 ./scripts/serve
    AGENTAUTH_ADMIN_KEY=aa_plat_... GMAIL_CLIENT_ID=example-client \\
        GMAIL_CLIENT_SECRET=example-secret python examples/connect_gmail.py

The script prints the authorization link a user would open, then plays the user's
browser (Continue, then Allow on the emulator's consent page).

Environment:
    AGENTAUTH_GRPC_TARGET  gRPC address                         (default 127.0.0.1:50051)
    AGENTAUTH_HTTP_URL     HTTP base URL                        (default http://127.0.0.1:8080)
    AGENTAUTH_ADMIN_KEY    platform admin key                   (required)
    GMAIL_CLIENT_ID        the OAuth client the emulator knows  (required)
    GMAIL_CLIENT_SECRET    its secret                           (required)
"""

from __future__ import annotations

import asyncio
import os

from _shared import GRPC_TARGET, admin_key, check, click_through_consent, step
from agentauth import ControlPlaneClient
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import connection_pb2 as cpb


async def main() -> None:
    client_id = os.environ["GMAIL_CLIENT_ID"]
    client_secret = os.environ["GMAIL_CLIENT_SECRET"]
    async with ControlPlaneClient(GRPC_TARGET, admin_key()) as admin:
        org = (
            await admin.admin.CreateOrganization(
                pb.CreateOrganizationRequest(organization=pb.Organization(display_name="Acme"))
            )
        ).organization.name
        alice = (
            await admin.admin.CreateUser(
                pb.CreateUserRequest(parent=org, user=pb.User(external_id="alice"))
            )
        ).user.name

        # New orgs start with every connector disabled.
        await admin.connections.UpdateConnectorConfig(
            cpb.UpdateConnectorConfigRequest(name=f"{org}/connectors/gmail", enabled=True)
        )
        # The OAuth client agentauth uses at the provider (sealed, never returned).
        await admin.connections.SetOAuthApp(
            cpb.SetOAuthAppRequest(
                oauth_app=cpb.OAuthApp(
                    name=f"{org}/oauthApps/gmail", client_id=client_id, client_secret=client_secret
                )
            )
        )
        step("enabled Gmail and set its OAuth app")

        account = (
            await admin.connections.CreateConnectedAccount(
                cpb.CreateConnectedAccountRequest(
                    parent=org,
                    connected_account=cpb.ConnectedAccount(
                        connector="gmail", owner=alice, label="work"
                    ),
                )
            )
        ).connected_account
        state = cpb.ConnectedAccountState.Name(account.state)
        step(f"created {account.name} ({state})")

        link = (
            await admin.connections.GetAuthorizationLink(
                cpb.GetAuthorizationLinkRequest(name=account.name)
            )
        ).url
        # The link is a credential until used: shown shortened, as a log line should.
        step(f"authorization link for alice (single use, 15 min): {link[:-36]}...")

        page = await click_through_consent(link)
        check("data-result=success" in page, "the connect page must report success")
        step("alice pressed Continue and Allow; agentauth's page says connected")

        account = (
            await admin.connections.GetConnectedAccount(
                cpb.GetConnectedAccountRequest(name=account.name)
            )
        ).connected_account
        state = cpb.ConnectedAccountState.Name(account.state)
        step(f"{account.name} is now {state}")
        step(f"granted scopes: {' '.join(sorted(account.granted_scopes))}")
        check(account.state == cpb.CONNECTED_ACCOUNT_STATE_ACTIVE, "the account must be ACTIVE")
    print("connect gmail: OK")


if __name__ == "__main__":
    asyncio.run(main())
