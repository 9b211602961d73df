"""One parser for the token grants: the same bad field gets the same answer on each.

Each of the four grants gets a request that reaches it (shown by a control: without
the bad field, it is admitted or refused for a reason of its own), then the same
request with one malformed or contradictory field. The answer is the same on every
grant and on both transports, and nothing is written.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
from agentauth import AgentAuthError, InvalidArgumentError, UnauthenticatedError
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import trust_policy_pb2 as trust_pb

from control_plane.sandbox import KubernetesIssuer
from tests.api.exchange_helpers import (
    ACCESS_TOKEN_TYPE,
    JWT_BEARER,
    JWT_TYPE,
    TOKEN_EXCHANGE,
    World,
    assert_oauth_error,
    ec_key,
    k8s_policy,
    open_world,
    post_form,
    setup_agent,
)

GRANTS = ("workload", "user-assertion", "sub-delegation", "client-credentials")


class Grants:
    """A valid-looking request for each grant of one world."""

    def __init__(self, world: World, keyed_agent: Any, key: Any, sa_token: str) -> None:
        self.world = world
        self.keyed_agent = keyed_agent
        self.key = key
        self.sa_token = sa_token

    def assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.keyed_agent.name,
            "sub": self.keyed_agent.name,
            "aud": str(self.world.harness.servers.tokens.issuer) + "/oauth2/token",
            "jti": secrets.token_hex(12),
            "iat": now,
            "exp": now + 60,
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": "agent-key-1"})

    def fields(self, grant: str) -> dict[str, Any]:
        w = self.world
        if grant == "workload":
            return {
                "grant_type": TOKEN_EXCHANGE,
                "subject_token_type": JWT_TYPE,
                "subject_token": w.workload(),
                "organization": w.org,
            }
        if grant == "user-assertion":
            return {
                "grant_type": TOKEN_EXCHANGE,
                "subject_token_type": JWT_TYPE,
                "subject_token": w.workload(),
                "actor_token_type": JWT_TYPE,
                "actor_token": w.workload(),
                "organization": w.org,
            }
        if grant == "sub-delegation":
            return {
                "grant_type": TOKEN_EXCHANGE,
                "subject_token_type": ACCESS_TOKEN_TYPE,
                "subject_token": self.sa_token,
                "actor_token_type": JWT_TYPE,
                "actor_token": w.workload(),
                "organization": w.org,
            }
        assert grant == "client-credentials"
        return {
            "grant_type": "client_credentials",
            "client_assertion_type": JWT_BEARER,
            "client_assertion": self.assertion(),
        }


@pytest.fixture
async def grants(harness: Any) -> AsyncIterator[Grants]:
    async with KubernetesIssuer() as k8s:
        world = await open_world(harness, k8s)
        key, jwk = ec_key()
        keyed, _, _ = await setup_agent(
            world.admin,
            world.org,
            "keyed agent",
            kind=trust_pb.TRUST_POLICY_KIND_PRIVATE_KEY_JWT,
            jwks_json=json.dumps({"keys": [jwk]}),
            algorithms=["ES256"],
        )
        sa_token = (await world.exchange(subject_token=world.workload())).access_token
        yield Grants(world, keyed, key, sa_token)


async def _grpc(g: Grants, fields: dict[str, Any]) -> AgentAuthError | None:
    try:
        await g.world.tokens.ExchangeToken(tpb.ExchangeTokenRequest(**fields))
    except AgentAuthError as err:
        return err
    return None


def _shape(err: AgentAuthError | None) -> tuple[Any, ...]:
    assert err is not None
    return type(err), err.reason, err.message


async def test_controls_each_request_reaches_its_grant(grants: Grants) -> None:
    """Without a bad field: the workload and client-credentials requests are admitted,
    the user assertion is refused for want of an identity provider, and the
    sub-delegation because its subject is not a delegated token - four grants."""
    assert await _grpc(grants, grants.fields("workload")) is None
    assert await _grpc(grants, grants.fields("client-credentials")) is None
    ua = await _grpc(grants, grants.fields("user-assertion"))
    assert isinstance(ua, UnauthenticatedError) and ua.reason == "INVALID_REQUEST"
    sd = await _grpc(grants, grants.fields("sub-delegation"))
    assert isinstance(sd, InvalidArgumentError) and "not a delegated token" in sd.message


def _other_org_agent() -> str:
    return f"orgs/{secrets.token_hex(16)}/agents/{secrets.token_hex(16)}"


def _other_org_sa() -> str:
    return f"orgs/{secrets.token_hex(16)}/serviceAccounts/{secrets.token_hex(16)}"


HEX_IDS = " (ids are 32 lower-case hex characters, as the server returned them)"

# field edits -> the one message every grant answers with
BAD_FIELDS: dict[str, tuple[Callable[[World], dict[str, str]], str]] = {
    "organization-malformed": (
        lambda w: {"organization": "org/x"},
        "organization must be orgs/{org}" + HEX_IDS,
    ),
    "client_id-malformed": (
        lambda w: {"organization": w.org, "client_id": "agents/x"},
        "client_id must be orgs/{org}/agents/{agent}" + HEX_IDS,
    ),
    "client_id-other-org": (
        lambda w: {"organization": w.org, "client_id": _other_org_agent()},
        "client_id is not an agent of that organization",
    ),
    "service_account-malformed": (
        lambda w: {"organization": w.org, "service_account": "serviceAccounts/x"},
        "service_account must be orgs/{org}/serviceAccounts/{id}" + HEX_IDS,
    ),
    "service_account-other-org": (
        lambda w: {"organization": w.org, "service_account": _other_org_sa()},
        "service_account is not in that organization",
    ),
    "scope-too-long": (
        lambda w: {"organization": w.org, "scope": "s" * (16 * 1024 + 1)},
        "a parameter is too long",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
async def test_the_same_bad_field_gets_the_same_answer_on_every_grant(
    grants: Grants, case: str
) -> None:
    edit, message = BAD_FIELDS[case]
    harness = grants.world.harness
    before = await harness.snapshot()
    answers = {}
    bodies = {}
    for grant in GRANTS:
        fields = {**grants.fields(grant), **edit(grants.world)}
        err = await _grpc(grants, fields)
        assert isinstance(err, InvalidArgumentError), (grant, err)
        assert err.reason == "INVALID_REQUEST" and err.message == message, (grant, err)
        answers[grant] = _shape(err)
        got = await post_form(grants.world.token_url, fields)
        assert_oauth_error(*got, 400, "invalid_request")
        bodies[grant] = got[2]
    assert len(set(answers.values())) == 1, answers
    assert all(
        b == {"error": "invalid_request", "error_description": message} for b in bodies.values()
    )
    assert await harness.snapshot() == before


async def test_a_client_id_of_an_org_that_does_not_exist_is_answered_alike(
    grants: Grants,
) -> None:
    """The contradiction is read from the names alone: another real org's agent and an
    agent of an org that does not exist get the same answer (no org oracle)."""
    w = grants.world
    org_b, b_admin, _ = await w.harness.new_org("B")
    agent_b, _, _ = await setup_agent(b_admin, org_b, "b agent", **k8s_policy(w.k8s))
    for grant in GRANTS:
        real = await _grpc(grants, {**grants.fields(grant), "client_id": agent_b.name})
        ghost = await _grpc(grants, {**grants.fields(grant), "client_id": _other_org_agent()})
        if grant == "client-credentials":
            # No organization in the request: client_id is compared with the assertion.
            assert isinstance(real, UnauthenticatedError) and real.reason == "INVALID_CLIENT"
        assert _shape(real) == _shape(ghost), grant


async def test_organization_that_is_not_the_credentials_org(grants: Grants) -> None:
    """``organization`` names a real other org: what the credential says wins, and each
    grant answers as for a credential that org does not accept - never with that org's
    data, and without revealing whether it exists."""
    w = grants.world
    org_b, _, _ = await w.harness.new_org("B")
    ghost = "orgs/" + secrets.token_hex(16)
    want = {
        "workload": (UnauthenticatedError, "INVALID_REQUEST"),
        "user-assertion": (UnauthenticatedError, "INVALID_REQUEST"),
        "sub-delegation": (UnauthenticatedError, "INVALID_REQUEST"),
        "client-credentials": (UnauthenticatedError, "INVALID_CLIENT"),
    }
    before = await w.harness.snapshot()
    for grant, (kind, reason) in want.items():
        real = await _grpc(grants, {**grants.fields(grant), "organization": org_b})
        missing = await _grpc(grants, {**grants.fields(grant), "organization": ghost})
        assert isinstance(real, kind) and real.reason == reason, (grant, real)
        assert _shape(real) == _shape(missing), grant
    assert await w.harness.snapshot() == before
