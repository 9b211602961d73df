"""Scaffolding for ExecuteTool tests: an org, its user, agents, and a sandbox provider.

A :class:`ToolWorld` is an org whose backend (a service account, by a workload
token exchange) delegates the user ``alice`` to the orchestrator agent O with a
token addressed to agentauth; O may hand on to the subagent S (a delegation
rule). The connector under test points at a sandbox provider, is enabled, and
has an OAuth app; :meth:`ToolWorld.connect` runs the hosted connect flow for
alice like a browser would. :func:`key_world` is the same world for a connector
authenticated by a key, pointed at a :class:`SandboxApiKeyProvider` instead (no
OAuth app: the key comes from :meth:`ToolWorld.set_api_key` or
:meth:`ToolWorld.set_developer_secret`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agentauth import AgentAuthError
from agentauth.v1 import admin_pb2 as apb
from agentauth.v1 import connection_pb2 as cpb
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import tool_pb2 as pb
from agentauth.v1 import tool_pb2_grpc
from agentauth.v1 import trust_policy_pb2 as trust
from google.protobuf import duration_pb2, json_format, struct_pb2

from control_plane.sandbox import KubernetesIssuer
from control_plane.sandbox.api_key_provider import SandboxApiKeyProvider
from control_plane.sandbox.oauth_provider import SandboxProvider
from tests.api.connect_helpers import CANARY_CLIENT_SECRET, browser, consent, finish, start

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"
#: What the agents' trust policies allow (the orchestrator more than the subagent).
AGENT_SCOPES = {
    "backend": ["confirmations:decide"],  # it records its users' confirmations
    "O": [
        "tools:*",
        "tools:gmail.*",
        "tools:gmail.list_messages",
        "tools:gmail.send_message",
        "tools:github.*",
    ],
    "S": ["tools:gmail.list_messages", "tools:gmail.*"],
}


@dataclass
class Outcome:
    """What one ExecuteTool stream carried."""

    messages: list[pb.ExecuteToolResponse] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [str(m.WhichOneof("event")) for m in self.messages]

    @property
    def terminal(self) -> pb.ExecuteToolResponse:
        return self.messages[-1]

    @property
    def error(self) -> pb.ToolError:
        assert self.kinds[-1] == "error", self.kinds
        return self.terminal.error

    @property
    def result(self) -> pb.ToolResult:
        assert self.kinds[-1] == "result", (self.kinds, self.terminal)
        return self.terminal.result

    @property
    def code(self) -> str:
        return str(pb.ToolErrorCode.Name(self.error.code)).removeprefix("TOOL_ERROR_CODE_")

    @property
    def data(self) -> Any:
        r = self.result
        if r.chunked:
            import json

            return json.loads(
                b"".join(
                    m.output_chunk.data
                    for m in self.messages[:-1]
                    if m.WhichOneof("event") == "output_chunk"
                )
            )
        return json_format.MessageToDict(r.data) if r.HasField("data") else None

    @property
    def accepted(self) -> pb.ToolCallAccepted:
        return next(m.accepted for m in self.messages if m.WhichOneof("event") == "accepted")


class ToolWorld:
    org: str
    admin: Any
    user: str
    service_account: str
    agents: dict[str, str]
    backend: Any
    provider: Any  # SandboxProvider, or SandboxApiKeyProvider in a key_world

    def __init__(self, harness: Any, k8s: KubernetesIssuer, connector_id: str) -> None:
        self.h = harness
        self.k8s = k8s
        self.connector_id = connector_id

    async def setup(self, provider: SandboxProvider | SandboxApiKeyProvider) -> ToolWorld:
        h = self.h
        self.provider = provider
        self.org, self.admin, _ = await h.new_org()
        self.user = await self.new_user("alice")
        self.service_account = (
            (
                await self.admin.admin.ListServiceAccounts(
                    apb.ListServiceAccountsRequest(parent=self.org)
                )
            )
            .service_accounts[0]
            .name
        )
        self.agents = {}
        for name, allowed in AGENT_SCOPES.items():
            agent = (
                await self.admin.admin.RegisterAgent(
                    apb.RegisterAgentRequest(parent=self.org, agent=apb.Agent(display_name=name))
                )
            ).agent.name
            self.agents[name] = agent
            await self.admin.admin.CreateTrustPolicy(
                apb.CreateTrustPolicyRequest(
                    parent=agent,
                    trust_policy=trust.TrustPolicy(
                        kind=trust.TRUST_POLICY_KIND_WORKLOAD_TOKEN,
                        issuer=self.k8s.issuer,
                        discovery_url=self.k8s.issuer + "/.well-known/openid-configuration",
                        audience="agentauth",
                        subject=f"system:serviceaccount:agents:{name.lower()}",
                        service_accounts=[self.service_account],
                        scopes=allowed,
                        audiences=[h.servers.tokens.issuer],
                    ),
                )
            )
        await self.admin.admin.CreateDelegationRule(
            apb.CreateDelegationRuleRequest(
                parent=self.org,
                delegation_rule=apb.DelegationRule(
                    delegator=self.agents["O"], delegate=self.agents["S"]
                ),
            )
        )
        self.backend = h.client(await self.sa_token("backend"))
        h.runtime.catalog.connectors[self.connector_id] = provider.connector_for_sandbox()
        await self.enable()
        if isinstance(provider, SandboxApiKeyProvider):
            return self
        await self.admin.connections.SetOAuthApp(
            cpb.SetOAuthAppRequest(
                oauth_app=cpb.OAuthApp(
                    name=f"{self.org}/oauthApps/{self.connector_id}",
                    client_id="sandbox-client",
                    client_secret=CANARY_CLIENT_SECRET,
                )
            )
        )
        return self

    async def new_user(self, external_id: str) -> str:
        return str(
            (
                await self.admin.admin.CreateUser(
                    apb.CreateUserRequest(parent=self.org, user=apb.User(external_id=external_id))
                )
            ).user.name
        )

    async def enable(self, tools: list[str] | None = None, connector: str = "") -> None:
        connector = connector or self.connector_id
        await self.admin.connections.UpdateConnectorConfig(
            cpb.UpdateConnectorConfigRequest(
                name=f"{self.org}/connectors/{connector}", enabled=True, enabled_tools=tools or []
            )
        )

    def workload(self, name: str) -> str:
        return self.k8s.issue(
            namespace="agents", service_account=name.lower(), audiences=["agentauth"]
        )

    async def sa_token(self, agent: str, scope: str = "") -> str:
        return str(
            (
                await self.h.client(None).tokens.ExchangeToken(
                    tpb.ExchangeTokenRequest(
                        grant_type=TOKEN_EXCHANGE,
                        subject_token=self.workload(agent),
                        subject_token_type=JWT_TYPE,
                        organization=self.org,
                        scope=scope,
                    )
                )
            ).access_token
        )

    async def delegated(self, scope: str = "tools:*", user: str = "") -> str:
        """The orchestrator O acting for the user (``alice`` by default)."""
        resp = await self.backend.tokens.DelegateToken(
            tpb.DelegateTokenRequest(
                user=user or self.user,
                agent=self.agents["O"],
                scope=scope,
                audience=[self.h.servers.tokens.issuer],
            )
        )
        return str(resp.access_token)

    async def hop(self, parent: str, actor: str = "S", scope: str = "") -> str:
        resp = await self.h.client(None).tokens.ExchangeToken(
            tpb.ExchangeTokenRequest(
                grant_type=TOKEN_EXCHANGE,
                subject_token=parent,
                subject_token_type=ACCESS_TYPE,
                actor_token=self.workload(actor),
                actor_token_type=JWT_TYPE,
                scope=scope,
            )
        )
        return str(resp.access_token)

    async def create_account(self, user: str = "", **kw: Any) -> Any:
        return (
            await self.admin.connections.CreateConnectedAccount(
                cpb.CreateConnectedAccountRequest(
                    parent=self.org,
                    connected_account=cpb.ConnectedAccount(
                        connector=self.connector_id, owner=user or self.user, **kw
                    ),
                )
            )
        ).connected_account

    async def connect(self, user: str = "", account: Any = None) -> str:
        """Run the hosted connect flow for ``user``'s account; its name."""
        account = account or await self.create_account(user)
        link = (
            await self.admin.connections.GetAuthorizationLink(
                cpb.GetAuthorizationLinkRequest(name=account.name)
            )
        ).url
        async with browser() as b:
            done = await consent(b, await start(b, link))
            status, _ = await finish(b, done)
        assert status == 200
        return str(account.name)

    async def set_api_key(self, key: str, user: str = "") -> str:
        """A BYOK account of ``user`` (alice by default) holding ``key``; its name."""
        account = await self.create_account(user)
        await self.admin.connections.SetApiKey(cpb.SetApiKeyRequest(name=account.name, api_key=key))
        return str(account.name)

    async def set_developer_secret(self, secret: str, requests: int = 0, period: int = 0) -> None:
        """The org's developer secret for the connector, with a per-user limit if given."""
        limit = (
            cpb.RateLimit(requests=requests, period=duration_pb2.Duration(seconds=period))
            if requests
            else None
        )
        await self.admin.connections.SetDeveloperSecret(
            cpb.SetDeveloperSecretRequest(
                developer_secret=cpb.DeveloperSecret(
                    name=f"{self.org}/developerSecrets/{self.connector_id}",
                    secret=secret,
                    per_user_rate_limit=limit,
                )
            )
        )

    async def account(self, name: str) -> cpb.ConnectedAccount:
        return (
            await self.admin.connections.GetConnectedAccount(
                cpb.GetConnectedAccountRequest(name=name)
            )
        ).connected_account

    def stub(self, token: str) -> Any:
        return tool_pb2_grpc.ToolServiceStub(self.h.client(token).channel)  # type: ignore[no-untyped-call]

    async def run(
        self,
        token: str,
        tool: str,
        arguments: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Outcome:
        args = struct_pb2.Struct()
        args.update(arguments or {})
        call = self.stub(token).ExecuteTool(
            pb.ExecuteToolRequest(tool=tool, arguments=args, **fields)
        )
        outcome = Outcome()
        async for message in call:
            outcome.messages.append(message)
        return outcome

    async def list_tools(self, token: str, connector: str = "") -> list[pb.Tool]:
        resp = await self.stub(token).ListTools(pb.ListToolsRequest(connector=connector))
        return list(resp.tools)


async def rpc_error(awaitable: Any) -> AgentAuthError:
    """The SDK's typed error for a refused call (streams raise them like unary calls)."""
    try:
        await awaitable
    except AgentAuthError as exc:
        return exc
    raise AssertionError("the call succeeded")


@contextlib.asynccontextmanager
async def tool_world(
    harness: Any, connector_id: str = "gmail", **provider_options: Any
) -> AsyncIterator[ToolWorld]:
    real = harness.runtime.catalog.connectors[connector_id]
    async with (
        KubernetesIssuer() as k8s,
        SandboxProvider(
            real,
            client_id="sandbox-client",
            client_secret=CANARY_CLIENT_SECRET,
            redirect_uris=[harness.http + "/oauth/callback"],
            **provider_options,
        ) as provider,
    ):
        yield await ToolWorld(harness, k8s, connector_id).setup(provider)


@contextlib.asynccontextmanager
async def key_world(
    harness: Any, connector_id: str, **provider_options: Any
) -> AsyncIterator[ToolWorld]:
    """A :class:`ToolWorld` for an ``api_key`` or ``developer_secret`` connector, with
    the catalog pointed at its API-key emulator (restored afterwards)."""
    catalog = harness.runtime.catalog.connectors
    real = catalog[connector_id]
    async with (
        KubernetesIssuer() as k8s,
        SandboxApiKeyProvider(real, **provider_options) as provider,
    ):
        try:
            yield await ToolWorld(harness, k8s, connector_id).setup(provider)
        finally:
            catalog[connector_id] = real


async def another_org(w: ToolWorld) -> ToolWorld:
    """A second org on the same server, provider and issuer as ``w``."""
    return await ToolWorld(w.h, w.k8s, w.connector_id).setup(w.provider)
