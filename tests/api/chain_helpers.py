"""Scaffolding for delegation-chain tests: one org with a user, a backend and agents.

A :class:`Chain` is an org whose backend (a service account, by a workload token
exchange) delegates the user to agent O with ``DelegateToken``; O may hand on to
S, S to T and T to U (delegation rules, RFC 8693 §4.4 ``may_act`` as policy).
Each agent's WORKLOAD_TOKEN policy admits the loopback Kubernetes issuer's
service account ``agents:<name>``. Tests build the fixture with :func:`open_chain`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import jwt
from agentauth import ControlPlaneClient
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import trust_policy_pb2 as trust

from control_plane.sandbox import KubernetesIssuer

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"
API = "https://api.internal.example"
# Each agent's policy scopes; the backend only delegates, so it is granted none.
AGENT_SCOPES: dict[str, list[str]] = {
    "backend": [],
    "O": ["a", "b", "c"],
    "S": ["a", "b"],
    "T": ["a", "b"],
    "U": ["a"],
}
RULES = (("O", "S"), ("S", "T"), ("T", "U"))


class Chain:
    """An org with a user, a backend, and agents O (orchestrator), S, T and U."""

    org: str
    admin: ControlPlaneClient
    user: str
    service_account: str
    agents: dict[str, str]
    backend: ControlPlaneClient

    def __init__(self, harness: Any, k8s: KubernetesIssuer) -> None:
        self.h = harness
        self.k8s = k8s

    async def setup(self) -> Chain:
        h = self.h
        self.org, self.admin, _ = await h.new_org()
        self.user = (
            await self.admin.admin.CreateUser(
                pb.CreateUserRequest(parent=self.org, user=pb.User(external_id="alice"))
            )
        ).user.name
        self.service_account = (
            (
                await self.admin.admin.ListServiceAccounts(
                    pb.ListServiceAccountsRequest(parent=self.org)
                )
            )
            .service_accounts[0]
            .name
        )
        self.agents = {}
        for name, allowed in AGENT_SCOPES.items():
            agent = (
                await self.admin.admin.RegisterAgent(
                    pb.RegisterAgentRequest(parent=self.org, agent=pb.Agent(display_name=name))
                )
            ).agent.name
            self.agents[name] = agent
            await self.admin.admin.CreateTrustPolicy(
                pb.CreateTrustPolicyRequest(
                    parent=agent,
                    trust_policy=trust.TrustPolicy(
                        kind=trust.TRUST_POLICY_KIND_WORKLOAD_TOKEN,
                        issuer=self.k8s.issuer,
                        discovery_url=self.k8s.issuer + "/.well-known/openid-configuration",
                        audience="agentauth",
                        subject=f"system:serviceaccount:agents:{name.lower()}",
                        service_accounts=[self.service_account],
                        scopes=allowed,
                        audiences=[h.servers.tokens.issuer] if name == "backend" else [API],
                    ),
                )
            )
        for frm, to in RULES:
            await self.add_rule(frm, to)
        backend_token = (
            await self.tokens.ExchangeToken(
                tpb.ExchangeTokenRequest(
                    grant_type=TOKEN_EXCHANGE,
                    subject_token=self.workload("backend"),
                    subject_token_type=JWT_TYPE,
                    organization=self.org,
                )
            )
        ).access_token
        self.backend = h.client(backend_token)
        return self

    async def add_rule(self, delegator: str, delegate: str) -> None:
        await self.admin.admin.CreateDelegationRule(
            pb.CreateDelegationRuleRequest(
                parent=self.org,
                delegation_rule=pb.DelegationRule(
                    delegator=self.agents[delegator], delegate=self.agents[delegate]
                ),
            )
        )

    @property
    def tokens(self) -> Any:
        return self.h.client(None).tokens

    @property
    def token_url(self) -> str:
        return str(self.h.http) + "/oauth2/token"

    def workload(self, name: str, **kw: Any) -> str:
        return self.k8s.issue(
            namespace="agents", service_account=name.lower(), audiences=["agentauth"], **kw
        )

    async def delegate(self, scope: str = "a b c") -> tpb.DelegateTokenResponse:
        return await self.backend.tokens.DelegateToken(
            tpb.DelegateTokenRequest(
                user=self.user, agent=self.agents["O"], scope=scope, audience=[API]
            )
        )

    def request(self, parent: str, actor: str, **fields: Any) -> tpb.ExchangeTokenRequest:
        """A sub-delegation of ``parent`` to agent ``actor`` (its workload token)."""
        base: dict[str, Any] = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": parent,
            "subject_token_type": ACCESS_TYPE,
            "actor_token": self.workload(actor),
            "actor_token_type": JWT_TYPE,
        }
        base.update(fields)
        return tpb.ExchangeTokenRequest(**base)

    def form(self, parent: str, actor: str, **fields: str) -> dict[str, str]:
        """The same request as ``application/x-www-form-urlencoded`` fields."""
        base = {
            "grant_type": TOKEN_EXCHANGE,
            "subject_token": parent,
            "subject_token_type": ACCESS_TYPE,
            "actor_token": self.workload(actor),
            "actor_token_type": JWT_TYPE,
        }
        base.update(fields)
        return base

    async def hop(self, parent: str, actor: str, scope: str = "") -> tpb.ExchangeTokenResponse:
        return await self.tokens.ExchangeToken(self.request(parent, actor, scope=scope))

    async def active(self, token: str) -> bool:
        resp = await self.admin.tokens.IntrospectToken(tpb.IntrospectTokenRequest(token=token))
        return bool(resp.active)


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


@contextlib.asynccontextmanager
async def open_chain(harness: Any) -> AsyncIterator[Chain]:
    """A set-up :class:`Chain` on ``harness`` with its own loopback Kubernetes issuer."""
    async with KubernetesIssuer() as k8s:
        yield await Chain(harness, k8s).setup()
