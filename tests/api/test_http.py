"""The HTTP surface: JWKS, health, readiness, metrics, and precise errors."""

from __future__ import annotations

import aiohttp
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import token_pb2


async def test_jwks_matches_grpc_and_has_no_private_members(harness) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(harness.http + "/.well-known/jwks.json") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("application/json")
            assert r.headers["Cache-Control"] == "public, max-age=300"
            body = await r.text()
    grpc_jwks = await harness.client(None).tokens.GetJwks(token_pb2.GetJwksRequest())
    assert grpc_jwks.jwks_json == body
    for key in grpc_jwks.keys:
        assert key.kid and key.alg in {"ES256", "EdDSA"} and key.use == "sig"
    assert '"d"' not in body


async def test_health_and_readiness(harness) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(harness.http + "/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
        async with http.get(harness.http + "/readyz") as r:
            body = await r.json()
            assert r.status == 200
            assert body == {"status": "ready", "checks": {"database": True, "signing_keys": True}}


async def test_readyz_and_grpc_health_answer_from_one_readiness(harness) -> None:
    """Both probes read one state; a failing check turns both, draining wins for good.

    The checks are injected here; tests/faults makes the database really stall
    and go away, behind a proxy.
    """
    from aiohttp.test_utils import TestClient, TestServer
    from grpc_health.v1 import health, health_pb2

    from control_plane.api.authz import ROUTES
    from control_plane.api.http import build_http_app
    from control_plane.api.readiness import Readiness
    from control_plane.app import pipeline_for

    database_up = True

    async def database() -> bool:
        return database_up

    async def keys() -> bool:
        return True

    servicer = health.aio.HealthServicer()
    names = ("", "agentauth.v1.AdminService")
    readiness = Readiness(
        servicer, names, {"database": database, "signing_keys": keys}, interval=60
    )
    pipeline = pipeline_for(
        harness.runtime, ROUTES, harness.servers.tokens, harness.servers.connections
    )
    app = build_http_app(
        harness.runtime.keys, harness.runtime.metrics, readiness, 300, pipeline=pipeline
    )

    async def grpc_statuses() -> set[int]:
        out = set()
        for name in names:
            request = health_pb2.HealthCheckRequest(service=name)
            out.add((await servicer.Check(request, None)).status)
        return out

    async with TestClient(TestServer(app)) as client:
        await readiness.start()
        try:
            r = await client.get("/readyz")
            assert r.status == 200 and await grpc_statuses() == {
                health_pb2.HealthCheckResponse.SERVING
            }
            database_up = False
            assert await readiness.refresh() is False
            r = await client.get("/readyz")
            assert r.status == 503
            assert await r.json() == {
                "status": "not_ready",
                "checks": {"database": False, "signing_keys": True},
            }
            assert await grpc_statuses() == {health_pb2.HealthCheckResponse.NOT_SERVING}
            assert (await client.get("/healthz")).status == 200  # liveness is not readiness
            database_up = True
            assert await readiness.refresh() is True
            assert (await client.get("/readyz")).status == 200
            assert await grpc_statuses() == {health_pb2.HealthCheckResponse.SERVING}
            await readiness.set_draining()
            assert await readiness.refresh() is False  # checks pass; draining wins
            r = await client.get("/readyz")
            assert r.status == 503 and (await r.json())["status"] == "draining"
            assert await grpc_statuses() == {health_pb2.HealthCheckResponse.NOT_SERVING}
        finally:
            await readiness.stop()


async def test_unknown_routes_and_methods_are_precise(harness) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(harness.http + "/.well-known/../../etc/passwd") as r:
            assert r.status == 404
        async with http.get(harness.http + "/nope") as r:
            assert r.status == 404 and (await r.json()) == {"error": "not_found"}
        async with http.post(harness.http + "/.well-known/jwks.json", data=b"x" * 10) as r:
            assert r.status == 405
        async with http.get(harness.http + "/healthz", headers={"X-Big": "a" * 9000}) as r:
            assert r.status in (400, 431)
        async with http.get(harness.http + "/healthz") as r:
            assert r.headers["X-Content-Type-Options"] == "nosniff"


async def test_metrics_count_rpcs_by_method_and_code(harness) -> None:
    org, client, _ = await harness.new_org()
    await client.admin.GetOrganization(pb.GetOrganizationRequest(name=org))
    async with aiohttp.ClientSession() as http:
        async with http.get(harness.http + "/metrics") as r:
            text = await r.text()
    line = 'agentauth_rpc_total{method="/agentauth.v1.AdminService/GetOrganization",code="OK"} 1'
    assert line in text
    assert org.split("/")[1] not in text  # no org ids in metric labels
