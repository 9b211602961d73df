"""URLs an org configures are not a way into the server's network (issue 11, item 13).

CreateTrustPolicy and CreateIdentityProvider refuse discovery URLs that point at
loopback, private, link-local and other internal addresses, or use plain http,
with a field error; the server's production settings are used here (no local
mode). What a create-time check cannot see - a host name that resolves inside, a
discovery document whose ``jwks_uri`` points inside - is refused when the keys
are fetched, and the workload sees only the usual refusal.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from agentauth import InvalidArgumentError, UnauthenticatedError
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import identity_provider_pb2 as idp_pb
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import trust_policy_pb2 as trust

from control_plane.sandbox import KubernetesIssuer
from tests.api.conftest import Harness, start_harness

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
API = "https://api.internal.example"

# The issue's examples first, then the other ranges and spellings.
INTERNAL = [
    "http://127.0.0.1:5432/x",
    "https://10.255.255.1/.well-known/openid-configuration",
    "https://169.254.169.254/latest/meta-data",
    "https://127.0.0.1:5432/x",
    "https://172.16.0.1/x",
    "https://192.168.0.1/x",
    "https://100.64.0.1/x",
    "https://0.0.0.0/x",
    "https://224.0.0.251/x",
    "https://[::1]/x",
    "https://[fd00::1]/x",
    "https://[fe80::1]/x",
    "https://[::ffff:127.0.0.1]/x",
    "https://localhost:8080/x",
    "https://2130706433/x",
    "http://idp.example/.well-known/openid-configuration",
]


@pytest.fixture
async def production(database_url: str, tmp_path: Path) -> AsyncIterator[Harness]:
    """The control plane with production outbound rules (PostgreSQL or a SQLite URL,
    no sandbox, no AGENTAUTH_OUTBOUND_LOOPBACK)."""
    async with start_harness(database_url, tmp_path, outbound_loopback=False) as h:
        assert not h.servers.tokens.outbound.policy.local
        yield h


async def _agent_and_sa(client: Any, org: str) -> tuple[str, str]:
    agent = (
        await client.admin.RegisterAgent(
            pb.RegisterAgentRequest(parent=org, agent=pb.Agent(display_name="agent"))
        )
    ).agent.name
    sa = (
        await client.admin.CreateServiceAccount(
            pb.CreateServiceAccountRequest(
                parent=org,
                service_account=pb.ServiceAccount(display_name="sa", purpose="billing"),
            )
        )
    ).service_account.name
    return agent, sa


def _policy(sa: str, discovery_url: str, issuer: str = "https://issuer.example") -> Any:
    return trust.TrustPolicy(
        kind=trust.TRUST_POLICY_KIND_WORKLOAD_TOKEN,
        issuer=issuer,
        discovery_url=discovery_url,
        audience="agentauth",
        subject="system:serviceaccount:billing:billing-agent",
        service_accounts=[sa],
        scopes=["invoices:read"],
        audiences=[API],
    )


async def test_create_trust_policy_refuses_internal_discovery_urls(production: Harness) -> None:
    org, client, _ = await production.new_org()  # an org admin key
    agent, sa = await _agent_and_sa(client, org)
    before = await production.snapshot()
    for url in INTERNAL:
        for caller in (client, production.platform):
            with pytest.raises(InvalidArgumentError) as info:
                await caller.admin.CreateTrustPolicy(
                    pb.CreateTrustPolicyRequest(parent=agent, trust_policy=_policy(sa, url))
                )
            assert info.value.metadata == {"field": "trust_policy.discovery_url"}, url
            assert "https" in info.value.message or "internal" in info.value.message, url
    assert await production.snapshot() == before


async def test_create_identity_provider_refuses_internal_discovery_urls(
    production: Harness,
) -> None:
    org, client, _ = await production.new_org()
    before = await production.snapshot()
    for url in INTERNAL:
        with pytest.raises(InvalidArgumentError) as info:
            await client.admin.CreateIdentityProvider(
                pb.CreateIdentityProviderRequest(
                    parent=org,
                    identity_provider=idp_pb.IdentityProvider(
                        issuer="https://idp.example", discovery_url=url, audience="client"
                    ),
                )
            )
        assert info.value.metadata == {"field": "identity_provider.discovery_url"}, url
    assert await production.snapshot() == before
    # A public https URL is accepted as before.
    await client.admin.CreateIdentityProvider(
        pb.CreateIdentityProviderRequest(
            parent=org,
            identity_provider=idp_pb.IdentityProvider(
                issuer="https://idp.example",
                discovery_url="https://idp.example/.well-known/openid-configuration",
                audience="client",
            ),
        )
    )


async def test_the_platform_allow_list_admits_an_internal_issuer(
    database_url: str, tmp_path: Path
) -> None:
    async with start_harness(
        database_url, tmp_path, outbound_loopback=False, outbound_allow="10.20.0.0/16,idp.corp"
    ) as h:
        org, client, _ = await h.new_org()
        agent, sa = await _agent_and_sa(client, org)
        for url in ("https://10.20.1.2/.well-known/openid-configuration", "https://idp.corp/d"):
            await client.admin.CreateTrustPolicy(
                pb.CreateTrustPolicyRequest(parent=agent, trust_policy=_policy(sa, url))
            )
        for url in ("https://10.21.1.2/d", "http://10.20.1.2/d", "https://169.254.169.254/d"):
            with pytest.raises(InvalidArgumentError):
                await client.admin.CreateTrustPolicy(
                    pb.CreateTrustPolicyRequest(parent=agent, trust_policy=_policy(sa, url))
                )


async def _exchange_refused(h: Harness, org: str, token: str) -> None:
    with pytest.raises(UnauthenticatedError) as info:
        await h.client(None).tokens.ExchangeToken(
            tpb.ExchangeTokenRequest(
                grant_type=TOKEN_EXCHANGE,
                subject_token=token,
                subject_token_type=JWT_TYPE,
                organization=org,
                scope="invoices:read",
            )
        )
    assert info.value.reason == "INVALID_REQUEST"


async def test_a_host_name_resolving_inside_is_refused_when_the_keys_are_fetched(
    production: Harness, captured_logs: Any
) -> None:
    # Create time cannot know where a name resolves; the fetch checks every address.
    answers = {"k8s.corp.example": ["127.0.0.1"]}

    async def dns(host: str, port: int) -> Sequence[str]:
        return answers[host]

    production.servers.tokens.outbound._lookup = dns  # test-only: stands in for DNS
    org, client, _ = await production.new_org()
    agent, sa = await _agent_and_sa(client, org)
    async with KubernetesIssuer(issuer="https://k8s.corp.example") as k8s:
        port = k8s.url.rsplit(":", 1)[1]
        url = f"https://k8s.corp.example:{port}/.well-known/openid-configuration"
        await client.admin.CreateTrustPolicy(
            pb.CreateTrustPolicyRequest(parent=agent, trust_policy=_policy(sa, url, k8s.issuer))
        )
        token = k8s.issue(namespace="billing", service_account="billing-agent", audiences=["agentauth"])
        await _exchange_refused(production, org, token)
        assert sum(k8s.requests.values()) == 0  # never contacted
    lines = [json.loads(x) for x in captured_logs.getvalue().splitlines()]
    refusals = [x for x in lines if x.get("event") == "outbound fetch refused"]
    assert refusals and refusals[0]["host"] == "k8s.corp.example"
    assert refusals[0]["org_id"] == org.split("/")[1]
    assert "127.0.0.1" in refusals[0]["reason"]


async def test_a_jwks_uri_pointing_inside_is_refused(harness: Harness) -> None:
    # Local mode (the emulator is on loopback), yet the discovery document names a
    # link-local jwks_uri: the same rules apply to it, so it is never fetched.
    org, client, _ = await harness.new_org()
    agent, sa = await _agent_and_sa(client, org)
    async with KubernetesIssuer(issuer="https://169.254.169.254") as k8s:
        url = k8s.url + "/.well-known/openid-configuration"
        await client.admin.CreateTrustPolicy(
            pb.CreateTrustPolicyRequest(parent=agent, trust_policy=_policy(sa, url, k8s.issuer))
        )
        token = k8s.issue(namespace="billing", service_account="billing-agent", audiences=["agentauth"])
        await _exchange_refused(harness, org, token)
        assert k8s.jwks_uri == "https://169.254.169.254/openid/v1/jwks"
        assert dict(k8s.requests) == {"/.well-known/openid-configuration": 1}
