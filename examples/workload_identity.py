"""Workload identity: an agent in Kubernetes gets short-lived, org-scoped tokens with
no secret of its own, by exchanging its projected service-account token.

Run `./scripts/serve` and, for the Kubernetes side, the sandbox issuer:

    python -m control_plane.sandbox kubernetes --port 8701
    AGENTAUTH_ADMIN_KEY=aa_plat_... python examples/workload_identity.py

Environment:
    AGENTAUTH_GRPC_TARGET  gRPC address                (default 127.0.0.1:50051)
    AGENTAUTH_HTTP_URL     HTTP base URL               (default http://127.0.0.1:8080)
    AGENTAUTH_ADMIN_KEY    platform admin key          (required)
    K8S_ISSUER_URL         the sandbox cluster issuer  (default http://127.0.0.1:8701)
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from _shared import (
    GRPC_TARGET,
    K8S_ISSUER_URL,
    admin_key,
    check,
    claims,
    kubernetes_workload_token,
    step,
    unique,
)
from agentauth import AgentAuthError, AgentTokenSource, ControlPlaneClient, workload_token_file
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import trust_policy_pb2 as trust

BILLING_API = "https://billing.internal"


async def main() -> None:
    async with ControlPlaneClient(GRPC_TARGET, admin_key()) as admin:
        # --- the platform team: an org, an agent, and a trust policy for it --------
        org = (
            await admin.admin.CreateOrganization(
                pb.CreateOrganizationRequest(organization=pb.Organization(display_name="Acme"))
            )
        ).organization
        # Every org starts with one service account: the principal agents act as.
        service_account = (
            await admin.admin.ListServiceAccounts(pb.ListServiceAccountsRequest(parent=org.name))
        ).service_accounts[0]
        agent = (
            await admin.admin.RegisterAgent(
                pb.RegisterAgentRequest(
                    parent=org.name, agent=pb.Agent(display_name=unique("invoice-bot"))
                )
            )
        ).agent
        step(f"registered agent {agent.name}")
        # Who the agent is: pod tokens of service account agents/invoice-bot from this
        # cluster issuer, addressed to "agentauth". What it may get: invoices:read for
        # the billing API, as the org's service account.
        await admin.admin.CreateTrustPolicy(
            pb.CreateTrustPolicyRequest(
                parent=agent.name,
                trust_policy=trust.TrustPolicy(
                    kind=trust.TRUST_POLICY_KIND_WORKLOAD_TOKEN,
                    issuer=K8S_ISSUER_URL,
                    discovery_url=K8S_ISSUER_URL + "/.well-known/openid-configuration",
                    audience="agentauth",
                    claim_equals={
                        "kubernetes.io.namespace": "agents",
                        "kubernetes.io.serviceaccount.name": "invoice-bot",
                    },
                    service_accounts=[service_account.name],
                    scopes=["invoices:read"],
                    audiences=[BILLING_API],
                ),
            )
        )
        step("trust policy: namespace agents, service account invoice-bot -> invoices:read")

    # --- the agent: it holds no key, only the token file the kubelet rotates ---------
    jwt = await kubernetes_workload_token(K8S_ISSUER_URL, "agents", "invoice-bot", "agentauth")
    with tempfile.TemporaryDirectory() as pod:
        token_file = Path(pod) / "agentauth-token"
        token_file.write_text(jwt)
        step(f"the pod's projected token is in {token_file}")

        async with ControlPlaneClient(GRPC_TARGET) as cp:  # no API key: the JWT is the proof
            tokens = AgentTokenSource(
                cp,
                workload_token_file(token_file),
                organization=org.name,
                audience=[BILLING_API],
                scope="invoices:read",
            )
            issued = await tokens.issued()
            c = claims(issued.access_token)
            step(f"exchanged for an access token: sub={c['sub']}")
            step(f"  aud={c['aud']} scope={c['scope']} lifetime={c['exp'] - c['iat']}s")
            check(c["client_id"] == agent.name, "client_id must be the agent")
            check(c["scope"] == "invoices:read", "the granted scope")
            check(await tokens.token() == issued.access_token, "the token is reused, not re-minted")
            step("a second tokens.token() reuses the cached token")

            # Asking for more than the policy allows is refused, never silently narrowed.
            greedy = AgentTokenSource(
                cp, jwt, organization=org.name, audience=[BILLING_API], scope="invoices:write"
            )
            try:
                await greedy.token()
                check(False, "invoices:write must be refused")
            except AgentAuthError as err:
                step(f"asking for invoices:write is refused: {err.reason}")
    print("workload identity: OK")


if __name__ == "__main__":
    asyncio.run(main())
