"""An org set up for delegation chains on a running cluster (tests and benchmarks).

User ``alice``; agents ``backend`` (delegates users with its service-account
token), ``O`` (orchestrator), ``S`` and ``T``; delegation rules O→S→T; each
agent is admitted by a WORKLOAD_TOKEN policy for the loopback Kubernetes
issuer's service account ``agents:<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentauth import ControlPlaneClient
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import trust_policy_pb2 as trust

from control_plane.sandbox import KubernetesIssuer

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"
API = "https://api.internal.example"
SCOPES = {"backend": [], "O": ["a", "b", "c"], "S": ["a", "b"], "T": ["a", "b"]}
RULES = (("O", "S"), ("S", "T"))


@dataclass
class DelegationOrg:
    org: str
    admin_key: str
    user: str
    agents: dict[str, str]
    k8s: KubernetesIssuer
    backend: ControlPlaneClient  # the developer's backend, by its SA token

    def workload(self, agent: str) -> str:
        return self.k8s.issue(
            namespace="agents", service_account=agent.lower(), audiences=["agentauth"]
        )

    async def delegate(self, scope: str = "a b c") -> str:
        """user → orchestrator O, by the trusted backend."""
        resp = await self.backend.tokens.DelegateToken(
            tpb.DelegateTokenRequest(
                user=self.user, agent=self.agents["O"], scope=scope, audience=[API]
            )
        )
        return str(resp.access_token)

    async def hop(self, client: ControlPlaneClient, parent: str, actor: str, scope: str) -> str:
        """RFC 8693 sub-delegation of ``parent`` to agent ``actor`` through ``client``."""
        resp = await client.tokens.ExchangeToken(
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


async def delegation_org(
    platform: ControlPlaneClient, k8s: KubernetesIssuer, issuer: str, backend_target: str
) -> DelegationOrg:
    """Creates the org through ``platform``; the backend talks to ``backend_target``."""
    org = (
        await platform.admin.CreateOrganization(
            pb.CreateOrganizationRequest(organization=pb.Organization(display_name="Chains"))
        )
    ).organization.name
    key = (
        await platform.admin.CreateApiKey(
            pb.CreateApiKeyRequest(parent=org, api_key=pb.ApiKey(display_name="admin"))
        )
    ).secret
    admin = platform.admin
    user = (
        await admin.CreateUser(pb.CreateUserRequest(parent=org, user=pb.User(external_id="alice")))
    ).user.name
    sa = (
        (await admin.ListServiceAccounts(pb.ListServiceAccountsRequest(parent=org)))
        .service_accounts[0]
        .name
    )
    agents: dict[str, str] = {}
    for name, scopes in SCOPES.items():
        agents[name] = (
            await admin.RegisterAgent(
                pb.RegisterAgentRequest(parent=org, agent=pb.Agent(display_name=name))
            )
        ).agent.name
        await admin.CreateTrustPolicy(
            pb.CreateTrustPolicyRequest(
                parent=agents[name],
                trust_policy=trust.TrustPolicy(
                    kind=trust.TRUST_POLICY_KIND_WORKLOAD_TOKEN,
                    issuer=k8s.issuer,
                    discovery_url=k8s.issuer + "/.well-known/openid-configuration",
                    audience="agentauth",
                    subject=f"system:serviceaccount:agents:{name.lower()}",
                    service_accounts=[sa],
                    scopes=scopes,
                    audiences=[issuer] if name == "backend" else [API],
                ),
            )
        )
    for frm, to in RULES:
        await admin.CreateDelegationRule(
            pb.CreateDelegationRuleRequest(
                parent=org,
                delegation_rule=pb.DelegationRule(delegator=agents[frm], delegate=agents[to]),
            )
        )
    world = DelegationOrg(org, key, user, agents, k8s, platform)
    async with ControlPlaneClient(backend_target) as anon:
        token = (
            await anon.tokens.ExchangeToken(
                tpb.ExchangeTokenRequest(
                    grant_type=TOKEN_EXCHANGE,
                    subject_token=world.workload("backend"),
                    subject_token_type=JWT_TYPE,
                    organization=org,
                )
            )
        ).access_token
    world.backend = ControlPlaneClient(backend_target, token)
    return world
