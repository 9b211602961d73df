"""A three-hop delegation chain and a revocation that cascades.

The developer's backend delegates the user alice to an orchestrator agent; the
orchestrator hands a narrower token to a researcher, the researcher to a
summarizer (RFC 8693 token exchange, each hop allowed by a delegation rule).
Revoking the first token then revokes the two exchanged from it.

    python -m control_plane.sandbox kubernetes --port 8701
    AGENTAUTH_ADMIN_KEY=aa_plat_... python examples/delegation_chain.py

Environment:
    AGENTAUTH_GRPC_TARGET  gRPC address                (default 127.0.0.1:50051)
    AGENTAUTH_HTTP_URL     HTTP base URL               (default http://127.0.0.1:8080)
    AGENTAUTH_ADMIN_KEY    platform admin key          (required)
    K8S_ISSUER_URL         the sandbox cluster issuer  (default http://127.0.0.1:8701)
"""

from __future__ import annotations

import asyncio
import json

from _shared import (
    GRPC_TARGET,
    K8S_ISSUER_URL,
    admin_key,
    check,
    claims,
    issuer,
    kubernetes_workload_token,
    step,
    workload_agents,
)
from agentauth import AgentTokenSource, ControlPlaneClient
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import token_pb2 as tpb

DOCS_API = "https://docs.internal.example"
# Each agent's trust policy: the scopes it may ever hold (the backend only delegates).
AGENTS = {
    "backend": [],
    "orchestrator": ["docs:read", "docs:write"],
    "researcher": ["docs:read", "docs:write"],
    "summarizer": ["docs:read"],
}


async def workload(name: str) -> str:
    """The agent's pod token (namespace "agents", service account = its name)."""
    return await kubernetes_workload_token(K8S_ISSUER_URL, "agents", name, "agentauth")


async def main() -> None:
    our_issuer = await issuer()
    async with ControlPlaneClient(GRPC_TARGET, admin_key()) as admin:
        # --- set-up: an org, its user, four agents, two delegation rules ----------
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
        # the backend's token is for agentauth itself (to call DelegateToken)
        agents = await workload_agents(
            admin,
            org,
            {
                name: (scopes, [our_issuer] if name == "backend" else [DOCS_API])
                for name, scopes in AGENTS.items()
            },
        )
        for delegator, delegate in (("orchestrator", "researcher"), ("researcher", "summarizer")):
            await admin.admin.CreateDelegationRule(
                pb.CreateDelegationRuleRequest(
                    parent=org,
                    delegation_rule=pb.DelegationRule(
                        delegator=agents[delegator], delegate=agents[delegate]
                    ),
                )
            )
        step(f"org {org}: user alice, 4 agents, rules orchestrator->researcher->summarizer")

        async with ControlPlaneClient(GRPC_TARGET) as anonymous:
            # --- hop 1: the backend delegates alice to the orchestrator -------------
            backend_source = AgentTokenSource(
                anonymous, await workload("backend"), organization=org, audience=[our_issuer]
            )
            async with ControlPlaneClient(GRPC_TARGET, await backend_source.token()) as backend:
                hop1 = (
                    await backend.tokens.DelegateToken(
                        tpb.DelegateTokenRequest(
                            user=alice,
                            agent=agents["orchestrator"],
                            scope="docs:read docs:write",
                            audience=[DOCS_API],
                        )
                    )
                ).access_token
            step("hop 1: backend -> orchestrator, scope 'docs:read docs:write'")

            # --- hop 2 and 3: each agent narrows and hands on ----------------------
            orchestrator = AgentTokenSource(anonymous, await workload("orchestrator"))
            researcher_jwt = await workload("researcher")
            hop2 = (
                await orchestrator.sub_delegate(hop1, researcher_jwt, scope="docs:read")
            ).access_token
            step("hop 2: orchestrator -> researcher, scope 'docs:read'")
            researcher = AgentTokenSource(anonymous, await workload("researcher"))
            hop3 = (await researcher.sub_delegate(hop2, await workload("summarizer"))).access_token
            step("hop 3: researcher -> summarizer")

        third = claims(hop3)
        shown = {k: third[k] for k in ("sub", "client_id", "act", "scope", "txn")}
        print(json.dumps(shown, indent=2))
        check(third["sub"] == alice, "the user stays the subject on every hop")
        check(third["act"]["act"]["act"]["sub"] == agents["orchestrator"], "the nested actors")
        check(third["txn"] == claims(hop1)["txn"], "one txn for the whole chain")

        # --- revoke hop 1: everything exchanged from it goes too ------------------
        async def active(token: str) -> bool:
            request = tpb.IntrospectTokenRequest(token=token)
            return (await admin.tokens.IntrospectToken(request)).active

        check(await active(hop3), "hop 3 is active before the revocation")
        step("hop 3 active before the revocation: True")
        await admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=hop1))
        step("revoked hop 1")
        for label, token in (("hop 1", hop1), ("hop 2", hop2), ("hop 3", hop3)):
            now_active = await active(token)
            step(f"{label} active: {now_active}")
            check(not now_active, f"{label} must be revoked")
    print("delegation chain: OK")


if __name__ == "__main__":
    asyncio.run(main())
