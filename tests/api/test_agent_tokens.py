"""The SDK's AgentTokenSource against the real control plane, on each database backend.

The chain harness (tests/api/chain_helpers.py) gives an org whose agents O, S,
T and U are admitted by their Kubernetes workload tokens; the source exchanges
those for service-account and delegated tokens, caches them on an injected
clock and hands narrower tokens on with one call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agentauth import (
    AgentTokenSource,
    InvalidArgumentError,
    UnauthenticatedError,
    workload_token_file,
)

from tests.api.chain_helpers import API, Chain, claims, open_chain


@pytest.fixture
async def chain(harness: Any) -> AsyncIterator[Chain]:
    async with open_chain(harness) as c:
        yield c


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class CountingWorkload:
    """The agent's workload token getter (async, as one reading a secret store would be)."""

    def __init__(self, chain: Chain, agent: str) -> None:
        self.chain, self.agent, self.calls = chain, agent, 0

    async def __call__(self) -> str:
        self.calls += 1
        await asyncio.sleep(0.01)  # let concurrent callers pile up behind one exchange
        return self.chain.workload(self.agent)


async def test_service_account_token_is_cached_until_near_expiry(chain: Chain) -> None:
    clock = Clock()
    workload = CountingWorkload(chain, "O")
    source = AgentTokenSource(
        chain.h.client(None), workload, organization=chain.org, scope="a b",
        audience=[API], refresh_margin=60, clock=clock,
    )
    first = await source.issued()
    c = claims(first.access_token)
    assert c["sub"] == chain.service_account and c["client_id"] == chain.agents["O"]
    assert c["scope"] == "a b" and c["aud"] in (API, [API]) and "act" not in c
    assert first.scope == "a b"
    lifetime = c["exp"] - c["iat"]
    assert abs(first.expires_at - (clock.now + lifetime)) <= 2
    # Reused while fresh: no second exchange.
    clock.now = first.expires_at - 61
    assert await source.token() == first.access_token and workload.calls == 1
    # Inside the margin: a new one.
    clock.now = first.expires_at - 59
    second = await source.token()
    assert second != first.access_token and workload.calls == 2
    assert claims(second)["jti"] != c["jti"]


async def test_concurrent_callers_share_one_exchange(chain: Chain) -> None:
    workload = CountingWorkload(chain, "O")
    source = AgentTokenSource(chain.h.client(None), workload, organization=chain.org)
    tokens = await asyncio.gather(*(source.token() for _ in range(20)))
    assert len(set(tokens)) == 1 and workload.calls == 1


async def test_a_cancelled_waiter_does_not_cancel_the_exchange(chain: Chain) -> None:
    workload = CountingWorkload(chain, "O")
    source = AgentTokenSource(chain.h.client(None), workload, organization=chain.org)
    impatient = asyncio.ensure_future(source.token())
    patient = asyncio.ensure_future(source.token())
    await asyncio.sleep(0)
    impatient.cancel()
    token = await asyncio.wait_for(patient, 10)
    assert claims(token)["client_id"] == chain.agents["O"] and workload.calls == 1
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_a_refused_exchange_is_typed_and_retried_next_time(chain: Chain) -> None:
    tokens = iter(["not-a-jwt", chain.workload("O")])
    source = AgentTokenSource(chain.h.client(None), lambda: next(tokens), organization=chain.org)
    with pytest.raises((UnauthenticatedError, InvalidArgumentError)):
        await source.token()
    assert claims(await source.token())["client_id"] == chain.agents["O"]


async def test_a_projected_token_file_is_read_for_each_exchange(
    chain: Chain, tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text(chain.workload("O") + "\n")  # kubelet files may end with a newline
    clock = Clock()
    source = AgentTokenSource(
        chain.h.client(None), workload_token_file(path), organization=chain.org, clock=clock
    )
    first = await source.issued()
    path.write_text("rotated-but-garbage")  # the kubelet rewrote it
    clock.now = first.expires_at  # expired: the next call must re-read the file
    with pytest.raises((UnauthenticatedError, InvalidArgumentError)):
        await source.token()


async def test_sub_delegate_hands_a_narrower_token_to_a_subagent(chain: Chain) -> None:
    parent = (await chain.delegate()).access_token  # O acts for the user with "a b c"
    source = AgentTokenSource(chain.h.client(None), lambda: chain.workload("O"))
    child = await source.sub_delegate(parent, chain.workload("S"), scope="a", audience=[API])
    c, p = claims(child.access_token), claims(parent)
    assert c["sub"] == chain.user and c["txn"] == p["txn"]
    assert c["act"] == {"sub": chain.agents["S"], "act": {"sub": chain.agents["O"]}}
    assert c["scope"] == "a" and child.scope == "a" and c["exp"] <= p["exp"]
    assert child.access_token not in repr(child)  # reprs end up in logs
    # Never wider than the parent.
    with pytest.raises(InvalidArgumentError) as err:
        await source.sub_delegate(child.access_token, chain.workload("T"), scope="a b")
    assert err.value.reason == "INVALID_SCOPE"


async def test_a_subagent_source_acts_under_its_parent_token(chain: Chain) -> None:
    parent = (await chain.delegate(scope="a b")).access_token
    source = AgentTokenSource(
        chain.h.client(None), lambda: chain.workload("S"), delegated_from=lambda: parent
    )
    token = await source.token()
    c = claims(token)
    assert c["sub"] == chain.user and c["act"]["sub"] == chain.agents["S"]
    assert c["scope"] == "a b"
    assert await source.token() == token  # cached
    source.invalidate()
    assert await source.token() != token
