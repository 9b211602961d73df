"""Two ``control-plane serve`` processes on one PostgreSQL: a delegation chain built
across both, and a revocation on one that the other (and an SDK validator
watching the other) honours within the propagation bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from agentauth import (
    AsyncTokenValidator,
    ControlPlaneClient,
    InvalidArgumentError,
    RevocationList,
    RevocationWatcher,
    TokenInvalidError,
    UnauthenticatedError,
)
from agentauth.v1 import token_pb2 as tpb

from bench._delegation import API, delegation_org
from bench._harness import Replica, cluster_on_postgres
from control_plane.sandbox import KubernetesIssuer
from tests.conftest import PG_ADMIN_URL, REQUIRE_PG, _pg_reachable

pytestmark = pytest.mark.slow

# Propagation bound asserted here; bench/revocation_propagation.py measures it.
BOUND_SECONDS = 2.0


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[list[Replica], str]]:
    problem = _pg_reachable()
    if problem is not None:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL required but unreachable: {problem}")
        pytest.skip("needs PostgreSQL")
    with cluster_on_postgres(PG_ADMIN_URL, replicas=2) as running:
        yield running


def claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


async def _within(bound: float, check: Any) -> float:
    """Seconds until ``await check()`` is true; fails past ``bound``."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < bound, "not propagated within the bound"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_chain_across_replicas_and_revocation_seen_on_the_other(
    cluster: tuple[list[Replica], str],
) -> None:
    (a, b), platform_key = cluster
    issuer = a.http  # the cluster's shared issuer
    async with KubernetesIssuer() as k8s, ControlPlaneClient(a.target, platform_key) as plat:
        # The org is configured on A; the backend exchanges its workload token on B.
        world = await delegation_org(plat, k8s, issuer, b.target)
        admin_a = ControlPlaneClient(a.target, world.admin_key)
        admin_b = ControlPlaneClient(b.target, world.admin_key)
        anon_a, anon_b = ControlPlaneClient(a.target), ControlPlaneClient(b.target)
        try:
            agents, org = world.agents, world.org
            # user -> orchestrator O -> subagent S (on B) -> sub-subagent T (on A)
            d = await world.delegate("a b c")
            s = await world.hop(anon_b, d, "S", "a b")
            t = await world.hop(anon_a, s, "T", "a")
            cd, cs, ct = claims(d), claims(s), claims(t)
            assert cd["sub"] == cs["sub"] == ct["sub"] == world.user
            assert cd["org_id"] == cs["org_id"] == ct["org_id"] == org.split("/")[1]
            assert cd["act"] == {"sub": agents["O"]}
            assert cs["act"] == {"sub": agents["S"], "act": {"sub": agents["O"]}}
            assert ct["act"] == {"sub": agents["T"], "act": cs["act"]}
            assert cd["txn"] == cs["txn"] == ct["txn"]
            assert (cd["scope"], cs["scope"], ct["scope"]) == ("a b c", "a b", "a")
            assert cd["exp"] >= cs["exp"] >= ct["exp"]
            assert cs["client_id"] == agents["S"] and ct["client_id"] == agents["T"]
            with pytest.raises(InvalidArgumentError) as widened:  # attenuation only
                await world.hop(anon_b, s, "T", "c")
            assert widened.value.reason == "INVALID_SCOPE"

            # An SDK validator that follows replica B's feed.
            revocations = RevocationList()
            validator = AsyncTokenValidator(
                issuer,
                API,
                jwks_url=b.http + "/.well-known/jwks.json",
                revocations=revocations,
                max_staleness=60,
            )
            async with RevocationWatcher(admin_b, org, revocations) as watcher:
                await asyncio.wait_for(watcher.wait_synced(), 10)
                for tok in (d, s, t):
                    await validator.validate(tok)

                # Revoke the orchestrator's token on replica A.
                await admin_a.tokens.RevokeToken(tpb.RevokeTokenRequest(token=d))

                async def inactive_on_b(tok: str) -> bool:
                    resp = await admin_b.tokens.IntrospectToken(
                        tpb.IntrospectTokenRequest(token=tok)
                    )
                    return not resp.active

                for tok in (d, s, t):
                    await _within(BOUND_SECONDS, lambda tok=tok: inactive_on_b(tok))
                # B refuses to exchange anything below the revoked link.
                with pytest.raises(UnauthenticatedError) as refused:
                    await world.hop(anon_b, s, "T", "a")
                assert refused.value.reason == "INVALID_REQUEST"

                async def listed() -> bool:
                    return all(claims(x)["jti"] in revocations for x in (d, s, t))

                # Within the bound and well before B's 5 s catch-up poll: NOTIFY.
                await _within(BOUND_SECONDS, listed)
                for tok in (s, t):
                    with pytest.raises(TokenInvalidError) as info:
                        await validator.validate(tok)
                    assert info.value.reason == "TOKEN_REVOKED"
        finally:
            for c in (admin_a, admin_b, anon_a, anon_b, world.backend):
                await c.close()
