"""ConnectionService: connectors, OAuth apps, developer secrets, connected accounts, BYOK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from agentauth.v1 import connection_pb2 as pb
from agentauth.v1 import connection_pb2_grpc

from control_plane.api.convert import ts
from control_plane.api.pipeline import current_principal
from control_plane.services.connect_flow import ConnectFlow
from control_plane.services.connected_accounts import (
    AccountWatch,
    ConnectedAccountService,
    ConnectedAccountView,
)
from control_plane.services.connectors import ConnectorConfigService, ConnectorView
from control_plane.services.developer_secrets import DeveloperSecretService, DeveloperSecretView
from control_plane.services.feed_watch import WatchItem
from control_plane.services.oauth_apps import OAuthAppService, OAuthAppView
from control_plane.storage import account_events

_AUTH_TYPES = {
    "oauth2": pb.CONNECTOR_AUTH_TYPE_OAUTH2,
    "api_key": pb.CONNECTOR_AUTH_TYPE_API_KEY,
    "developer_secret": pb.CONNECTOR_AUTH_TYPE_DEVELOPER_SECRET,
    "service_account": pb.CONNECTOR_AUTH_TYPE_SERVICE_ACCOUNT,
    "key_pair_jwt": pb.CONNECTOR_AUTH_TYPE_KEY_PAIR_JWT,
}
OUTPUT_TRUST = {"trusted": pb.OUTPUT_TRUST_TRUSTED, "untrusted": pb.OUTPUT_TRUST_UNTRUSTED}
_SOURCE = {
    "NONE": pb.CREDENTIAL_SOURCE_NONE,
    "DEPLOYMENT": pb.CREDENTIAL_SOURCE_DEPLOYMENT,
    "ORGANIZATION": pb.CREDENTIAL_SOURCE_ORGANIZATION,
}
_STATE = {
    "PENDING": pb.CONNECTED_ACCOUNT_STATE_PENDING,
    "ACTIVE": pb.CONNECTED_ACCOUNT_STATE_ACTIVE,
    "EXPIRED": pb.CONNECTED_ACCOUNT_STATE_EXPIRED,
    "REVOKED": pb.CONNECTED_ACCOUNT_STATE_REVOKED,
    "ERROR": pb.CONNECTED_ACCOUNT_STATE_ERROR,
}
Ctx = grpc.aio.ServicerContext[Any, Any]


def connector(v: ConnectorView) -> pb.Connector:
    return pb.Connector(
        name=v.name,
        display_name=v.display_name,
        description=v.description,
        auth_type=_AUTH_TYPES[v.auth_type],
        enabled=v.enabled,
        tools=[
            pb.ConnectorTool(
                name=t.name,
                description=t.description,
                input_schema_json=t.input_schema_json,
                scopes=list(t.scopes),
                destructive=t.destructive,
                output_trust=OUTPUT_TRUST[t.output_trust],
                enabled=t.enabled,
            )
            for t in v.tools
        ],
        oauth_app_source=_SOURCE[v.oauth_app_source],
        connection_params=list(v.connection_params),
    )


def oauth_app(v: OAuthAppView) -> pb.OAuthApp:
    return pb.OAuthApp(
        name=v.name, client_id=v.client_id, client_secret_set=True, update_time=ts(v.update_time)
    )


def developer_secret(v: DeveloperSecretView) -> pb.DeveloperSecret:
    limit = pb.RateLimit(requests=v.rate_requests)
    if v.rate_requests:
        limit.period.seconds = v.rate_period_seconds
    return pb.DeveloperSecret(
        name=v.name,
        secret_hint=v.secret_hint,
        per_user_rate_limit=limit,
        create_time=ts(v.create_time),
        rotate_time=ts(v.rotate_time),
    )


def account(v: ConnectedAccountView) -> pb.ConnectedAccount:
    return pb.ConnectedAccount(
        name=v.name,
        connector=v.connector,
        owner=v.owner,
        label=v.label,
        default=v.default,
        state=_STATE[v.state],
        state_reason=v.state_reason,
        connection_params=v.connection_params,
        granted_scopes=v.granted_scopes,
        provider_metadata=v.provider_metadata,
        api_key_hint=v.api_key_hint,
        create_time=ts(v.create_time),
        update_time=ts(v.update_time),
        state_change_time=ts(v.state_change_time),
        last_used_time=ts(v.last_used_time),
        last_refreshed_time=ts(v.last_refreshed_time),
        secret_create_time=ts(v.secret_create_time),
        secret_rotate_time=ts(v.secret_rotate_time),
        access_expire_time=ts(v.access_expire_time),
    )


class ConnectionServicer(connection_pb2_grpc.ConnectionServiceServicer):
    def __init__(
        self,
        connectors: ConnectorConfigService,
        oauth_apps: OAuthAppService,
        secrets: DeveloperSecretService,
        accounts: ConnectedAccountService,
        flow: ConnectFlow,
        watch: AccountWatch,
    ) -> None:
        self.flow = flow
        self.watch = watch
        self.connectors = connectors
        self.oauth_apps = oauth_apps
        self.secrets = secrets
        self.accounts = accounts

    async def ListConnectors(
        self, request: pb.ListConnectorsRequest, context: Ctx
    ) -> pb.ListConnectorsResponse:
        views = await self.connectors.list(current_principal(), request.parent)
        return pb.ListConnectorsResponse(connectors=[connector(v) for v in views])

    async def UpdateConnectorConfig(
        self, request: pb.UpdateConnectorConfigRequest, context: Ctx
    ) -> pb.UpdateConnectorConfigResponse:
        v = await self.connectors.update(
            current_principal(), request.name, request.enabled, request.enabled_tools
        )
        return pb.UpdateConnectorConfigResponse(connector=connector(v))

    async def SetOAuthApp(
        self, request: pb.SetOAuthAppRequest, context: Ctx
    ) -> pb.SetOAuthAppResponse:
        app = request.oauth_app
        v = await self.oauth_apps.set(
            current_principal(), app.name, app.client_id, app.client_secret
        )
        return pb.SetOAuthAppResponse(oauth_app=oauth_app(v))

    async def GetOAuthApp(
        self, request: pb.GetOAuthAppRequest, context: Ctx
    ) -> pb.GetOAuthAppResponse:
        v = await self.oauth_apps.get(current_principal(), request.name)
        return pb.GetOAuthAppResponse(oauth_app=oauth_app(v))

    async def DeleteOAuthApp(
        self, request: pb.DeleteOAuthAppRequest, context: Ctx
    ) -> pb.DeleteOAuthAppResponse:
        await self.oauth_apps.delete(current_principal(), request.name)
        return pb.DeleteOAuthAppResponse()

    async def SetDeveloperSecret(
        self, request: pb.SetDeveloperSecretRequest, context: Ctx
    ) -> pb.SetDeveloperSecretResponse:
        d = request.developer_secret
        limit = d.per_user_rate_limit
        v = await self.secrets.set(
            current_principal(),
            d.name,
            d.secret,
            limit.requests,
            int(limit.period.seconds) if limit.period.nanos == 0 else -1,
        )
        return pb.SetDeveloperSecretResponse(developer_secret=developer_secret(v))

    async def GetDeveloperSecret(
        self, request: pb.GetDeveloperSecretRequest, context: Ctx
    ) -> pb.GetDeveloperSecretResponse:
        v = await self.secrets.get(current_principal(), request.name)
        return pb.GetDeveloperSecretResponse(developer_secret=developer_secret(v))

    async def DeleteDeveloperSecret(
        self, request: pb.DeleteDeveloperSecretRequest, context: Ctx
    ) -> pb.DeleteDeveloperSecretResponse:
        await self.secrets.delete(current_principal(), request.name)
        return pb.DeleteDeveloperSecretResponse()

    async def CreateConnectedAccount(
        self, request: pb.CreateConnectedAccountRequest, context: Ctx
    ) -> pb.CreateConnectedAccountResponse:
        a = request.connected_account
        v = await self.accounts.create(
            current_principal(),
            request.parent,
            a.connector,
            a.owner,
            a.label,
            dict(a.connection_params),
            request.request_id,
        )
        return pb.CreateConnectedAccountResponse(connected_account=account(v))

    async def GetConnectedAccount(
        self, request: pb.GetConnectedAccountRequest, context: Ctx
    ) -> pb.GetConnectedAccountResponse:
        v = await self.accounts.get(current_principal(), request.name)
        return pb.GetConnectedAccountResponse(connected_account=account(v))

    async def ListConnectedAccounts(
        self, request: pb.ListConnectedAccountsRequest, context: Ctx
    ) -> pb.ListConnectedAccountsResponse:
        page = await self.accounts.list(
            current_principal(),
            request.parent,
            request.owner,
            request.connector,
            request.page_size,
            request.page_token,
        )
        return pb.ListConnectedAccountsResponse(
            connected_accounts=[account(v) for v in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateConnectedAccount(
        self, request: pb.UpdateConnectedAccountRequest, context: Ctx
    ) -> pb.UpdateConnectedAccountResponse:
        v = await self.accounts.update(
            current_principal(), request.name, request.label, request.make_default
        )
        return pb.UpdateConnectedAccountResponse(connected_account=account(v))

    async def DeleteConnectedAccount(
        self, request: pb.DeleteConnectedAccountRequest, context: Ctx
    ) -> pb.DeleteConnectedAccountResponse:
        await self.accounts.delete(current_principal(), request.name)
        return pb.DeleteConnectedAccountResponse()

    async def SetApiKey(self, request: pb.SetApiKeyRequest, context: Ctx) -> pb.SetApiKeyResponse:
        v = await self.accounts.set_api_key(current_principal(), request.name, request.api_key)
        return pb.SetApiKeyResponse(connected_account=account(v))

    async def GetAuthorizationLink(
        self, request: pb.GetAuthorizationLinkRequest, context: Ctx
    ) -> pb.GetAuthorizationLinkResponse:
        url, expires = await self.flow.create_link(current_principal(), request.name)
        return pb.GetAuthorizationLinkResponse(url=url, expire_time=ts(expires))

    async def RefreshConnectedAccount(
        self, request: pb.RefreshConnectedAccountRequest, context: Ctx
    ) -> pb.RefreshConnectedAccountResponse:
        v = await self.accounts.refresh(current_principal(), request.name, request.force)
        return pb.RefreshConnectedAccountResponse(connected_account=account(v))

    async def WatchConnectedAccounts(
        self, request: pb.WatchConnectedAccountsRequest, context: Ctx
    ) -> AsyncIterator[pb.WatchConnectedAccountsResponse]:
        stream = await self.watch.open(current_principal(), request.parent, request.cursor)
        return _account_events(stream)


async def _account_events(
    stream: AsyncIterator[WatchItem[account_events.Event]],
) -> AsyncIterator[pb.WatchConnectedAccountsResponse]:
    async for item in stream:
        e = item.event
        if e is None:
            yield pb.WatchConnectedAccountsResponse(cursor=item.cursor, synced=item.synced)
            continue
        yield pb.WatchConnectedAccountsResponse(
            connected_account=f"orgs/{e.org_id}/connectedAccounts/{e.account_id}",
            connector=e.connector_id,
            state=_STATE.get(e.state, pb.CONNECTED_ACCOUNT_STATE_UNSPECIFIED),
            state_reason=e.state_reason,
            deleted=e.state == "DELETED",
            event_time=ts(e.event_time),
            cursor=item.cursor,
        )
