"""User-delegated tokens and RFC 8693 sub-delegation chains with nested act."""

from __future__ import annotations

import pytest
from agentauth import (
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import token_pb2 as tpb
from google.protobuf import field_mask_pb2

from tests.api.chain_helpers import (
    ACCESS_TYPE,
    API,
    JWT_TYPE,
    TOKEN_EXCHANGE,
    Chain,
    claims,
    open_chain,
)


@pytest.fixture
async def chain(harness):
    async with open_chain(harness) as c:
        yield c


async def test_rfc8693_4_1_chain_nests_act_narrows_and_keeps_sub(chain: Chain) -> None:
    t1 = (await chain.delegate()).access_token
    c1 = claims(t1)
    assert c1["sub"] == chain.user and c1["act"] == {"sub": chain.agents["O"]}
    assert c1["client_id"] == chain.agents["O"] and c1["scope"] == "a b c" and c1["txn"]

    t2 = (await chain.hop(t1, "S")).access_token
    c2 = claims(t2)
    assert c2["sub"] == chain.user and c2["org_id"] == c1["org_id"]
    assert c2["act"] == {"sub": chain.agents["S"], "act": {"sub": chain.agents["O"]}}
    assert c2["scope"] == "a b" and c2["exp"] <= c1["exp"] and c2["txn"] == c1["txn"]

    t3 = (await chain.hop(t2, "T", scope="a")).access_token
    c3 = claims(t3)
    assert c3["act"] == {
        "sub": chain.agents["T"],
        "act": {"sub": chain.agents["S"], "act": {"sub": chain.agents["O"]}},
    }
    assert c3["scope"] == "a" and c3["exp"] <= c2["exp"] and c3["txn"] == c1["txn"]
    assert c3["client_id"] == chain.agents["T"]


async def test_rfc8693_2_2_2_scope_widening_is_invalid_scope(chain: Chain) -> None:
    t1 = (await chain.delegate(scope="a")).access_token
    with pytest.raises(InvalidArgumentError) as err:
        await chain.hop(t1, "S", scope="a b")
    assert err.value.reason == "INVALID_SCOPE"
    assert err.value.message == "scope not allowed: b"  # beyond the parent's scope


async def test_rfc8693_4_4_may_act_policy_refuses_unlisted_hops(chain: Chain) -> None:
    t1 = (await chain.delegate()).access_token
    before = await chain.h.snapshot()
    with pytest.raises(InvalidArgumentError) as err:
        await chain.hop(t1, "T")  # O -> T is not a rule
    assert err.value.reason == "INVALID_REQUEST"
    assert await chain.h.snapshot() == before


async def test_rfc8693_5_depth_limit(chain: Chain) -> None:
    await chain.admin.admin.UpdateOrganization(pb.UpdateOrganizationRequest(
        organization=pb.Organization(name=chain.org, max_delegation_depth=3),
        update_mask=field_mask_pb2.FieldMask(paths=["max_delegation_depth"])))
    t1 = (await chain.delegate()).access_token
    t3 = (await chain.hop((await chain.hop(t1, "S")).access_token, "T")).access_token
    with pytest.raises(InvalidArgumentError) as err:
        await chain.hop(t3, "U")
    assert err.value.reason == "INVALID_REQUEST"


async def test_rfc7009_2_1_revoking_a_link_revokes_everything_below(chain: Chain) -> None:
    t1 = (await chain.delegate()).access_token
    t2 = (await chain.hop(t1, "S")).access_token
    t3 = (await chain.hop(t2, "T")).access_token
    other = (await chain.delegate()).access_token
    await chain.admin.tokens.RevokeToken(tpb.RevokeTokenRequest(token=t2))
    assert await chain.active(t1) and await chain.active(other)
    assert not await chain.active(t2) and not await chain.active(t3)
    with pytest.raises(UnauthenticatedError) as err:
        await chain.hop(t2, "T")  # a revoked parent cannot be exchanged
    assert err.value.reason == "INVALID_REQUEST"


async def test_a_workload_token_is_not_a_delegated_subject(chain: Chain) -> None:
    with pytest.raises((InvalidArgumentError, UnauthenticatedError)):
        await chain.tokens.ExchangeToken(tpb.ExchangeTokenRequest(
            grant_type=TOKEN_EXCHANGE, subject_token=chain.workload("O"),
            subject_token_type=ACCESS_TYPE, actor_token=chain.workload("S"),
            actor_token_type=JWT_TYPE))


async def test_delegate_requires_the_backend_and_its_own_org(chain: Chain, harness) -> None:
    with pytest.raises(PermissionDeniedError):  # an org admin key is not the backend
        await chain.admin.tokens.DelegateToken(tpb.DelegateTokenRequest(
            user=chain.user, agent=chain.agents["O"], audience=[API]))
    other_org, other, _ = await harness.new_org("other")
    stranger = (await other.admin.CreateUser(pb.CreateUserRequest(
        parent=other_org, user=pb.User(external_id="bob")))).user.name
    with pytest.raises(NotFoundError):
        await chain.backend.tokens.DelegateToken(tpb.DelegateTokenRequest(
            user=stranger, agent=chain.agents["O"], audience=[API]))


@pytest.mark.parametrize("selector", ["user", "agent", "txn", "all_tokens"])
async def test_bulk_revocation_by_user_agent_chain_and_org(chain: Chain, selector: str) -> None:
    t1 = (await chain.delegate()).access_token
    t2 = (await chain.hop(t1, "S")).access_token
    t3 = (await chain.hop(t2, "T")).access_token
    c1 = claims(t1)
    request = {
        "user": tpb.RevokeTokensRequest(parent=chain.org, user=chain.user),
        "agent": tpb.RevokeTokensRequest(parent=chain.org, agent=chain.agents["S"]),
        "txn": tpb.RevokeTokensRequest(parent=chain.org, txn=c1["txn"]),
        "all_tokens": tpb.RevokeTokensRequest(parent=chain.org, all_tokens=True),
    }[selector]
    resp = await chain.admin.tokens.RevokeTokens(request)
    # Revoking by agent S takes S's token and everything below it; the others take all three.
    expected_dead = [t2, t3] if selector == "agent" else [t1, t2, t3]
    assert resp.revoked_count >= len(expected_dead)
    for token in (t1, t2, t3):
        assert await chain.active(token) == (token not in expected_dead)


async def test_bulk_revocation_refuses_ambiguous_and_cross_org_selectors(chain: Chain, harness) -> None:
    with pytest.raises(InvalidArgumentError):
        await chain.admin.tokens.RevokeTokens(tpb.RevokeTokensRequest(parent=chain.org))
    with pytest.raises(InvalidArgumentError):
        await chain.admin.tokens.RevokeTokens(
            tpb.RevokeTokensRequest(parent=chain.org, user=chain.user, all_tokens=True))
    with pytest.raises(InvalidArgumentError):
        await chain.admin.tokens.RevokeTokens(
            tpb.RevokeTokensRequest(parent=chain.org, txn="' OR 1=1 --"))
    other_org, other, _ = await harness.new_org("other")
    t1 = (await chain.delegate()).access_token
    with pytest.raises(NotFoundError):  # org B's admin naming org A
        await other.tokens.RevokeTokens(tpb.RevokeTokensRequest(parent=chain.org, all_tokens=True))
    assert await chain.active(t1)
