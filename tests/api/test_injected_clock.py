"""External JWTs are judged at the server's injected clock, never the wall clock.

Issue 10: PyJWT checked ``exp``/``nbf`` against the wall clock while minting
used ``control_plane.clock``. Here the control plane runs on a FakeClock two
days in the past, and the sandbox issuers sign with that same time:

* a token issued "now" by the injected clock is long expired by the wall
  clock, and is accepted;
* a token issued now by the wall clock was, for the server, issued two days
  in the future, and is refused;
* moving the injected clock past a token's ``exp`` refuses it.

One test per inbound JWT kind: a Kubernetes workload token (RFC 8693
subject_token), an RFC 7523 client assertion, and an identity provider's ID
token with a workload actor (the user-assertion exchange).
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from agentauth import UnauthenticatedError
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import trust_policy_pb2 as trust

from control_plane.app import open_runtime, start_servers
from control_plane.audit.hook import RecordingAuditSink
from control_plane.clock import FakeClock
from control_plane.config import Settings
from control_plane.sandbox import KubernetesIssuer, OktaIdentityProvider
from control_plane.services.api_keys import ApiKeyService
from tests.api.conftest import Harness
from tests.api.exchange_helpers import (
    AUDIENCE,
    JWT_BEARER,
    JWT_TYPE,
    NAMESPACE,
    SA_NAME,
    TOKEN_EXCHANGE,
    ec_key,
    k8s_policy,
    setup_agent,
)
from tests.api.test_user_assertion import ALICE, World

SKEW = dt.timedelta(days=2)


@pytest.fixture
async def clocked(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Harness, FakeClock]]:
    """The in-process control plane of conftest.py, on a FakeClock two days behind."""
    clock = FakeClock(dt.datetime.now(dt.UTC) - SKEW)
    settings = Settings(
        data_dir=tmp_path / "data",
        grpc_listen="127.0.0.1:0",
        http_listen="127.0.0.1:0",
        database_url=database_url,
        kek_provider="file",
        jwks_cache_ttl=dt.timedelta(minutes=5),
        # The issuer and IdP emulators listen on http://127.0.0.1: local mode, as in
        # dev and sandbox mode (production refuses loopback; tests/services/
        # test_guarded_fetch.py and the API refusal tests check that).
        outbound_loopback=True,
    )
    settings.data_dir.mkdir(mode=0o700)
    audit = RecordingAuditSink()
    runtime = await open_runtime(settings, clock=clock, audit=audit)
    _, key = await ApiKeyService(runtime.services).create_platform_key("tests")
    servers = await start_servers(runtime)
    h = Harness(runtime, servers, audit, key, database_url, settings.data_dir, [])
    try:
        yield h, clock
    finally:
        for c in h._clients:
            await c.close()
        await servers.stop(0)
        await runtime.close()


def _at(clock: FakeClock) -> Any:
    return lambda: clock.now().timestamp()


def _wall_times(ttl: int = 600) -> dict[str, int]:
    now = int(time.time())
    return {"iat": now, "nbf": now, "exp": now + ttl}


def _exp(token: str) -> float:
    return float(jwt.decode(token, options={"verify_signature": False})["exp"])


async def test_workload_token_is_judged_at_the_injected_time(
    clocked: tuple[Harness, FakeClock],
) -> None:
    h, clock = clocked
    org, admin, _ = await h.new_org()
    tokens = h.client(None).tokens
    async with KubernetesIssuer(clock=_at(clock)) as k8s:
        await setup_agent(admin, org, **k8s_policy(k8s))

        def exchange(subject: str) -> Any:
            return tokens.ExchangeToken(
                tpb.ExchangeTokenRequest(
                    grant_type=TOKEN_EXCHANGE,
                    subject_token=subject,
                    subject_token_type=JWT_TYPE,
                    organization=org,
                )
            )

        issue = {"namespace": NAMESPACE, "service_account": SA_NAME, "audiences": [AUDIENCE]}
        at_server_time = k8s.issue(ttl=600, **issue)
        assert _exp(at_server_time) < time.time() - 3600  # expired by the wall clock
        assert (await exchange(at_server_time)).access_token

        at_wall_time = k8s.issue(ttl=600, extra_claims=_wall_times(), **issue)
        with pytest.raises(UnauthenticatedError) as err:
            await exchange(at_wall_time)
        assert err.value.reason == "INVALID_REQUEST"

        clock.advance(600 + 31)  # past exp + leeway of the first token
        with pytest.raises(UnauthenticatedError) as err:
            await exchange(at_server_time)
        assert err.value.reason == "INVALID_REQUEST"


async def test_client_assertion_is_judged_at_the_injected_time(
    clocked: tuple[Harness, FakeClock],
) -> None:
    h, clock = clocked
    org, admin, _ = await h.new_org()
    key, jwk = ec_key()
    agent, _, _ = await setup_agent(
        admin,
        org,
        kind=trust.TRUST_POLICY_KIND_PRIVATE_KEY_JWT,
        jwks_json=json.dumps({"keys": [jwk]}),
        algorithms=["ES256"],
    )
    audience = str(h.servers.tokens.issuer) + "/oauth2/token"

    def assertion(now: float) -> str:
        claims = {
            "iss": agent.name,
            "sub": agent.name,
            "aud": audience,
            "jti": secrets.token_hex(12),
            "iat": int(now),
            "exp": int(now) + 60,
        }
        return jwt.encode(claims, key, algorithm="ES256", headers={"kid": jwk["kid"]})

    def exchange(token: str) -> Any:
        return h.client(None).tokens.ExchangeToken(
            tpb.ExchangeTokenRequest(
                grant_type="client_credentials",
                client_assertion_type=JWT_BEARER,
                client_assertion=token,
            )
        )

    at_server_time = assertion(clock.now().timestamp())
    assert _exp(at_server_time) < time.time()
    assert (await exchange(at_server_time)).access_token
    for token in (assertion(time.time()), assertion(clock.now().timestamp() - 120)):
        with pytest.raises(UnauthenticatedError) as err:
            await exchange(token)
        assert err.value.reason == "INVALID_CLIENT"


async def test_user_assertion_is_judged_at_the_injected_time(
    clocked: tuple[Harness, FakeClock],
) -> None:
    h, clock = clocked
    async with (
        KubernetesIssuer(clock=_at(clock)) as k8s,
        OktaIdentityProvider(clock=_at(clock)) as okta,
    ):
        world = await World(h, k8s, okta).setup()
        id_token = okta.id_token(ALICE, ttl=600)
        assert _exp(id_token) < time.time() - 3600
        assert (await world.exchange(id_token, world.workload("o"))).access_token

        wall = okta.id_token(ALICE, extra_claims=_wall_times())
        await world.refused(wall, world.workload("o"))

        clock.advance(600 + 31)
        await world.refused(id_token, world.workload("o", ttl=3600))
