"""The hosted connect flow with a custom connector whose definition names a loopback
authorization server over plain http (AGENTAUTH_DEV_LOOPBACK_CONNECTORS=1), no sandbox
URL rewrite involved: the sandbox provider stands in for the developer's own server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentauth.v1 import connection_pb2 as pb

from control_plane.app import load_connectors
from control_plane.config import Settings
from control_plane.sandbox.oauth_provider import SandboxProvider
from tests.api.connect_helpers import browser, consent, finish, start
from tests.connectors.test_dev_loopback import write_loopback_gmail


async def test_connect_flow_against_a_loopback_authorization_server(
    harness: Any, tmp_path: Path
) -> None:
    org, admin, _ = await harness.new_org()
    names = await harness.populate(org, admin)
    shipped = harness.runtime.catalog.connectors["gmail"]
    async with SandboxProvider(
        shipped, client_id="dev-client", redirect_uris=[harness.http + "/oauth/callback"]
    ) as server:
        write_loopback_gmail(tmp_path, server.base_url)
        dev = Settings(data_dir=tmp_path, connectors_dir=str(tmp_path), dev_loopback_connectors=True)
        gmail = load_connectors(dev).connectors["gmail"]
        assert gmail.auth.token_url.startswith(server.base_url + "/")
        harness.runtime.catalog.connectors["gmail"] = gmail  # this runtime's mapping only

        await admin.connections.UpdateConnectorConfig(
            pb.UpdateConnectorConfigRequest(name=f"{org}/connectors/gmail", enabled=True))
        await admin.connections.SetOAuthApp(pb.SetOAuthAppRequest(oauth_app=pb.OAuthApp(
            name=f"{org}/oauthApps/gmail", client_id="dev-client",
            client_secret=server.client_secret)))
        account = (await admin.connections.CreateConnectedAccount(pb.CreateConnectedAccountRequest(
            parent=org, connected_account=pb.ConnectedAccount(
                connector="gmail", owner=names["user"])))).connected_account
        link = (await admin.connections.GetAuthorizationLink(
            pb.GetAuthorizationLinkRequest(name=account.name))).url

        async with browser() as b:
            authorize = await start(b, link)
            assert authorize.startswith(server.base_url + "/accounts.google.com/")
            redirect = await consent(b, authorize)
            status, page = await finish(b, redirect)
        assert status == 200 and "data-result=success" in page, page[:300]
        got = (await admin.connections.GetConnectedAccount(
            pb.GetConnectedAccountRequest(name=account.name))).connected_account
        assert got.state == pb.CONNECTED_ACCOUNT_STATE_ACTIVE
        assert any(t.kind == "access" for t in server.issued)  # its token endpoint answered
