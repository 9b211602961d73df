"""The fault harness: a control plane whose only road to PostgreSQL is a fault proxy."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from agentauth import ControlPlaneClient
from agentauth.v1 import admin_pb2 as pb

from control_plane.app import Runtime, Servers
from tests.faults.tcp_proxy import TcpProxy

# Small bounds keep the suite fast; the mechanics do not depend on their size.
STATEMENT_TIMEOUT = 1.0
POOL_TIMEOUT = 1.0
CONNECT_TIMEOUT = 2.0  # libpq's smallest
READINESS_INTERVAL = 0.2


@dataclass
class FaultHarness:
    proxy: TcpProxy
    runtime: Runtime
    servers: Servers
    platform_key: str
    database_url: str  # the real server, for checks that must not go through the proxy
    _clients: list[ControlPlaneClient]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.servers.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.servers.http_port}"

    def client(self, key: str | None, *, timeout: float = 20.0) -> ControlPlaneClient:
        """A client whose deadline is far above any bound: a hang shows as DEADLINE_EXCEEDED."""
        c = ControlPlaneClient(self.target, key, timeout=timeout)
        self._clients.append(c)
        return c

    async def new_org(self) -> tuple[str, ControlPlaneClient]:
        admin = self.client(self.platform_key)
        org = (
            await admin.admin.CreateOrganization(
                pb.CreateOrganizationRequest(organization=pb.Organization(display_name="Acme"))
            )
        ).organization.name
        key = await admin.admin.CreateApiKey(
            pb.CreateApiKeyRequest(parent=org, api_key=pb.ApiKey(display_name="org admin"))
        )
        return org, self.client(key.secret)


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}").geturl()
