"""In-process control plane with the real interceptor chain, on each database backend."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import io
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agentauth import ControlPlaneClient
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import identity_provider_pb2 as idp_pb
from agentauth.v1 import tool_policy_pb2 as tool_policy_pb
from agentauth.v1 import trust_policy_pb2 as trust_pb
from sqlalchemy import text

from control_plane.app import Runtime, Servers, open_runtime, start_servers
from control_plane.audit.hook import RecordingAuditSink
from control_plane.clock import SystemClock
from control_plane.config import Settings
from control_plane.services.api_keys import ApiKeyService
from control_plane.storage.db import Database
from control_plane.storage.models import Base
from control_plane.tracing import Tracing

# A fixed public P-256 key (RFC 7515 A.3) for policies that need some JWKS.
PUBLIC_JWK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    "kid": "fixture-key",
    "alg": "ES256",
}


@dataclass
class Harness:
    runtime: Runtime
    servers: Servers
    audit: RecordingAuditSink
    platform_key: str
    database_url: str
    data_dir: Path
    _clients: list[ControlPlaneClient]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.servers.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.servers.http_port}"

    def client(self, key: str | None) -> ControlPlaneClient:
        c = ControlPlaneClient(self.target, key)
        self._clients.append(c)
        return c

    @property
    def platform(self) -> ControlPlaneClient:
        return self.client(self.platform_key)

    async def new_org(self, name: str = "Acme") -> tuple[str, ControlPlaneClient, str]:
        """Creates an org and an org admin key; returns (org name, its client, its key)."""
        admin = self.platform
        org = (
            await admin.admin.CreateOrganization(
                pb.CreateOrganizationRequest(organization=pb.Organization(display_name=name))
            )
        ).organization.name
        created = await admin.admin.CreateApiKey(
            pb.CreateApiKeyRequest(parent=org, api_key=pb.ApiKey(display_name="org admin"))
        )
        return org, self.client(created.secret), created.secret

    async def populate(self, org: str, client: ControlPlaneClient) -> dict[str, str]:
        """One resource of each kind in ``org``; returns their names."""
        user = await client.admin.CreateUser(
            pb.CreateUserRequest(parent=org, user=pb.User(external_id="u-1", display_name="U"))
        )
        agent = await client.admin.RegisterAgent(
            pb.RegisterAgentRequest(parent=org, agent=pb.Agent(display_name="Agent"))
        )
        sa = await client.admin.CreateServiceAccount(
            pb.CreateServiceAccountRequest(
                parent=org,
                service_account=pb.ServiceAccount(display_name="SA", purpose="reports"),
            )
        )
        key = await client.admin.CreateApiKey(
            pb.CreateApiKeyRequest(parent=org, api_key=pb.ApiKey(display_name="k"))
        )
        policy = await client.admin.CreateTrustPolicy(
            pb.CreateTrustPolicyRequest(
                parent=agent.agent.name,
                trust_policy=trust_pb.TrustPolicy(
                    kind=trust_pb.TRUST_POLICY_KIND_PRIVATE_KEY_JWT,
                    jwks_json=json.dumps({"keys": [PUBLIC_JWK]}),
                    service_accounts=[sa.service_account.name],
                    scopes=["read"],
                    audiences=["https://api.example"],
                ),
            )
        )
        agent2 = await client.admin.RegisterAgent(
            pb.RegisterAgentRequest(parent=org, agent=pb.Agent(display_name="Agent 2"))
        )
        rule = await client.admin.CreateDelegationRule(
            pb.CreateDelegationRuleRequest(
                parent=org,
                delegation_rule=pb.DelegationRule(
                    delegator=agent.agent.name, delegate=agent2.agent.name
                ),
            )
        )
        idp = await client.admin.CreateIdentityProvider(
            pb.CreateIdentityProviderRequest(
                parent=org,
                identity_provider=idp_pb.IdentityProvider(
                    issuer="https://idp.example/oauth2/default",
                    jwks_json=json.dumps({"keys": [PUBLIC_JWK]}),
                    audience="0oa1fixtureclient",
                ),
            )
        )
        tool_rule = await client.admin.CreateToolPolicyRule(
            pb.CreateToolPolicyRuleRequest(
                parent=org,
                tool_policy_rule=tool_policy_pb.ToolPolicyRule(
                    tool="github.create_issue",
                    agents=[agent.agent.name],
                    constraints=[
                        tool_policy_pb.ArgumentConstraint(
                            value="{/owner}/{/repo}", allow=["acme/api"]
                        )
                    ],
                ),
            )
        )
        return {
            "tool_rule": tool_rule.tool_policy_rule.name,
            "idp": idp.identity_provider.name,
            "agent2": agent2.agent.name,
            "rule": rule.delegation_rule.name,
            "policy": policy.trust_policy.name,
            "org": org,
            "user": user.user.name,
            "agent": agent.agent.name,
            "sa": sa.service_account.name,
            "key": key.api_key.name,
        }

    async def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, read as the owner (RLS does not hide rows).

        Rate-limit buckets are left out: every call, refused ones included, is
        charged to them by design; they account for traffic, they hold no data.
        """
        owner = Database(self.database_url, app_role=None)
        try:
            out: dict[str, list[tuple[Any, ...]]] = {}
            async with owner.engine.connect() as conn:
                for table in Base.metadata.sorted_tables:
                    if table.name in ("rate_buckets", "anonymous_rate_buckets"):
                        continue
                    rows = (await conn.execute(text(f"SELECT * FROM {table.name}"))).all()
                    out[table.name] = sorted(tuple(r) for r in rows)
            return out
        finally:
            await owner.dispose()


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every server log line (DEBUG and up) of the test, as JSON lines."""
    import logging

    from control_plane import logs

    stream = io.StringIO()
    logs.configure(level=logging.DEBUG, stream=stream)
    yield stream
    logs.configure(level=logging.WARNING)


@contextlib.asynccontextmanager
async def start_harness(
    database_url: str, tmp_path: Path, *, tracing: Tracing | None = None, **settings: Any
) -> AsyncIterator[Harness]:
    """The in-process control plane; ``settings`` override the test defaults."""
    options: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "grpc_listen": "127.0.0.1:0",
        "http_listen": "127.0.0.1:0",
        "database_url": database_url,
        "kek_provider": "file",
        "jwks_cache_ttl": dt.timedelta(minutes=5),
        # The issuer and IdP emulators listen on http://127.0.0.1: local mode, as in
        # dev and sandbox mode. Production refuses loopback; the `production`
        # harness of tests/api/test_outbound_urls.py runs without this.
        "outbound_loopback": True,
        **settings,
    }
    s = Settings(**options)
    s.data_dir.mkdir(mode=0o700)
    audit = RecordingAuditSink()
    runtime = await open_runtime(s, clock=SystemClock(), audit=audit, tracing=tracing)
    _, key = await ApiKeyService(runtime.services).create_platform_key("tests")
    servers = await start_servers(runtime)
    h = Harness(runtime, servers, audit, key, database_url, s.data_dir, [])
    try:
        yield h
    finally:
        for c in h._clients:
            await c.close()
        await servers.stop(0)
        await runtime.close()


@pytest.fixture
async def harness(database_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    async with start_harness(database_url, tmp_path) as h:
        yield h
