"""The HTTP surface: JWKS, health, readiness, metrics, and precise errors."""

from __future__ import annotations

import base64

import aiohttp
import pytest
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
            # RFC 9110 §15.5.6: a 405 lists the methods the resource supports.
            assert r.headers["Allow"] == "GET,HEAD"
        async with http.get(harness.http + "/oauth2/token") as r:
            assert r.status == 405 and r.headers["Allow"] == "POST"
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
    # prometheus_client writes labels in name order
    line = 'agentauth_rpc_total{code="OK",method="/agentauth.v1.AdminService/GetOrganization"} 1.0'
    assert line in text
    assert org.split("/")[1] not in text  # no org ids in metric labels


CORS_DOCUMENTS = ("/.well-known/jwks.json", "/.well-known/oauth-authorization-server")


@pytest.mark.parametrize("path", CORS_DOCUMENTS)
async def test_public_documents_allow_simple_cross_origin_gets(harness, path: str) -> None:
    """A browser client may read the keys and the metadata from any origin, without
    credentials (``*`` never goes with Access-Control-Allow-Credentials)."""
    async with aiohttp.ClientSession() as http:
        for method in ("GET", "HEAD"):
            async with http.request(
                method, harness.http + path, headers={"Origin": "https://app.example"}
            ) as r:
                assert r.status == 200
                assert r.headers["Access-Control-Allow-Origin"] == "*"
                assert "Access-Control-Allow-Credentials" not in r.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("POST", "/oauth2/token"),
        ("POST", "/oauth2/introspect"),
        ("POST", "/oauth2/revoke"),
        ("GET", "/connect/nope"),
        ("GET", "/oauth/callback"),
        ("POST", "/.well-known/jwks.json"),
        ("GET", "/nope"),
    ],
)
async def test_no_other_route_answers_cross_origin(harness, method: str, path: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method, harness.http + path, headers={"Origin": "https://app.example"}
        ) as r:
            assert not [h for h in r.headers if h.lower().startswith("access-control-")]


async def test_jwks_has_an_etag_and_answers_if_none_match_with_304(harness) -> None:
    url = harness.http + "/.well-known/jwks.json"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            tag, body = r.headers["ETag"], await r.text()
        assert tag.startswith('"') and tag.endswith('"') and len(tag) > 2
        # RFC 9110 §13.1.2: weak comparison, lists and "*" all match.
        for header in (tag, "W/" + tag, f'"other", {tag}', "*"):
            async with http.get(url, headers={"If-None-Match": header}) as r:
                assert r.status == 304 and await r.read() == b""
                assert r.headers["ETag"] == tag
                assert r.headers["Cache-Control"] == "public, max-age=300"
        async with http.get(url, headers={"If-None-Match": '"stale"'}) as r:
            assert r.status == 200 and await r.text() == body
        # A new key changes the document, so its tag.
        await harness.runtime.keys.rotate()
        async with http.get(url, headers={"If-None-Match": tag}) as r:
            assert r.status == 200 and r.headers["ETag"] != tag


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.parametrize("path", ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"])
async def test_rfc6749_5_2_a_basic_client_gets_a_basic_challenge(harness, path: str) -> None:
    """"include the WWW-Authenticate response header field matching the authentication
    scheme used by the client" (we take no client secrets, so Basic always fails)."""
    basic = "Basic " + base64.b64encode(b"client:secret").decode()
    async with aiohttp.ClientSession() as http:
        async with http.post(
            harness.http + path, data="grant_type=client_credentials&token=x",
            headers={**FORM, "Authorization": basic},
        ) as r:
            assert r.status == 401 and (await r.json())["error"] == "invalid_client"
            assert r.headers["WWW-Authenticate"] == 'Basic realm="agentauth", charset="UTF-8"'
            assert "secret" not in await r.text()


async def test_rfc6750_3_a_bearer_client_still_gets_a_bearer_challenge(harness) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(
            harness.http + "/oauth2/introspect", data="token=x",
            headers={**FORM, "Authorization": "Bearer not-a-key"},
        ) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
