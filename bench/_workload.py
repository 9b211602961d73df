"""An org whose agent a Kubernetes-style workload token admits (the exchange benchmarks).

One agent with a WORKLOAD_TOKEN trust policy for the sandbox Kubernetes issuer's
service account ``bench:agent`` (static JWKS, RS256), scope ``read`` and audience
``https://api.example``; and one workload token that the benchmarks replay as the
RFC 8693 ``subject_token`` for the org's first service account.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

import grpc
from agentauth import client_interceptors
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import admin_pb2_grpc
from agentauth.v1 import trust_policy_pb2 as trust

from control_plane.sandbox import KubernetesIssuer

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
AUDIENCE = "https://api.example"
SCOPE = "read"


@dataclass(frozen=True)
class WorkloadExchange:
    org: str
    workload: str  # the subject token

    def fields(self) -> dict[str, str]:
        """The request, named alike in ``ExchangeTokenRequest`` and the HTTP form."""
        return {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": self.workload,
            "subject_token_type": JWT_TYPE,
            "organization": self.org,
        }

    def form(self) -> bytes:
        """The ``POST /oauth2/token`` body."""
        return urlencode(self.fields()).encode()


async def workload_exchange(target: str, key: str) -> WorkloadExchange:
    """Sets the org up through the admin API of the server at gRPC ``target``."""
    k8s = KubernetesIssuer(issuer="https://kubernetes.default.svc")
    async with grpc.aio.insecure_channel(
        target, interceptors=client_interceptors(key, timeout=30)
    ) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        org = (
            await admin.CreateOrganization(
                pb.CreateOrganizationRequest(organization=pb.Organization(display_name="bench"))
            )
        ).organization.name
        agent = (
            await admin.RegisterAgent(
                pb.RegisterAgentRequest(parent=org, agent=pb.Agent(display_name="bench agent"))
            )
        ).agent.name
        sa = (
            (await admin.ListServiceAccounts(pb.ListServiceAccountsRequest(parent=org)))
            .service_accounts[0]
            .name
        )
        await admin.CreateTrustPolicy(
            pb.CreateTrustPolicyRequest(
                parent=agent,
                trust_policy=trust.TrustPolicy(
                    kind=trust.TRUST_POLICY_KIND_WORKLOAD_TOKEN,
                    issuer=k8s.issuer,
                    jwks_json=json.dumps(k8s.jwks()),
                    audience="agentauth",
                    subject="system:serviceaccount:bench:agent",
                    service_accounts=[sa],
                    scopes=[SCOPE],
                    audiences=[AUDIENCE],
                ),
            )
        )
    workload = k8s.issue(namespace="bench", service_account="agent", audiences=["agentauth"])
    return WorkloadExchange(org, workload)
