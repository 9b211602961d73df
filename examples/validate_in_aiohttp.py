"""Validating agentauth tokens in your own aiohttp service.

A tiny "billing" API admits only requests with a valid agentauth access token for
its audience and the scope invoices:read. The script starts it on a free loopback
port, gets an agent a token (workload identity, as in workload_identity.py), and
calls it with no token, a good token, a token for the wrong scope and a forged one.

    python -m control_plane.sandbox kubernetes --port 8701
    AGENTAUTH_ADMIN_KEY=aa_plat_... python examples/validate_in_aiohttp.py

Environment:
    AGENTAUTH_GRPC_TARGET  gRPC address                (default 127.0.0.1:50051)
    AGENTAUTH_HTTP_URL     HTTP base URL               (default http://127.0.0.1:8080)
    AGENTAUTH_ADMIN_KEY    platform admin key          (required)
    K8S_ISSUER_URL         the sandbox cluster issuer  (default http://127.0.0.1:8701)
"""

from __future__ import annotations

import asyncio

import aiohttp
from _shared import (
    GRPC_TARGET,
    K8S_ISSUER_URL,
    admin_key,
    check,
    issuer,
    kubernetes_workload_token,
    step,
    workload_agents,
)
from agentauth import AgentTokenSource, AsyncTokenValidator, ControlPlaneClient
from agentauth.integrations.aiohttp_auth import validator_middleware, verified_token
from agentauth.v1 import admin_pb2 as pb
from aiohttp import web

BILLING_API = "https://billing.internal"


# --- the service: this is all a resource server needs -------------------------------
async def list_invoices(request: web.Request) -> web.Response:
    token = verified_token(request)  # verified signature, issuer, audience, expiry, scope
    assert token is not None
    return web.json_response(
        {"invoices": [], "for": token.subject, "agent": token.client_id, "org": token.org_id}
    )


def billing_app(our_issuer: str) -> web.Application:
    # Keys come from the issuer's JWKS (cached, refetched on an unknown kid); the
    # algorithms come from configuration, never from the token.
    validator = AsyncTokenValidator(our_issuer, BILLING_API)
    auth = validator_middleware(
        validator, required_scopes=["invoices:read"], public_paths=["/healthz"]
    )
    app = web.Application(middlewares=[auth])
    app.router.add_get("/invoices", list_invoices)
    app.router.add_get("/healthz", healthz)
    return app


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


# --- an agent with a token for that service ------------------------------------------
async def agent_tokens() -> tuple[str, str]:
    """(a token with invoices:read, a token with only invoices:list) for BILLING_API."""
    async with ControlPlaneClient(GRPC_TARGET, admin_key()) as admin:
        org = (
            await admin.admin.CreateOrganization(
                pb.CreateOrganizationRequest(organization=pb.Organization(display_name="Acme"))
            )
        ).organization.name
        await workload_agents(
            admin, org, {"reporter": (["invoices:read", "invoices:list"], [BILLING_API])}
        )
    jwt = await kubernetes_workload_token(K8S_ISSUER_URL, "agents", "reporter", "agentauth")
    async with ControlPlaneClient(GRPC_TARGET) as cp:
        tokens = []
        for scope in ("invoices:read", "invoices:list"):
            source = AgentTokenSource(
                cp, jwt, organization=org, audience=[BILLING_API], scope=scope
            )
            tokens.append(await source.token())
    return tokens[0], tokens[1]


async def main() -> None:
    runner = web.AppRunner(billing_app(await issuer()))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"  # the port the OS chose
    step(f"billing service listening on {url}")
    try:
        good, wrong_scope = await agent_tokens()
        header, payload, _ = good.split(".")
        forged = f"{header}.{payload}.{'A' * 86}"  # same claims, a signature we made up
        async with aiohttp.ClientSession() as http:
            cases = [
                ("/healthz, public", "/healthz", None, 200),
                ("no token", "/invoices", None, 401),
                ("token with invoices:read", "/invoices", good, 200),
                ("token with invoices:list only", "/invoices", wrong_scope, 403),
                ("forged signature", "/invoices", forged, 401),
            ]
            for label, path, token, expected in cases:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with http.get(url + path, headers=headers) as resp:
                    detail = resp.headers.get("WWW-Authenticate", "")
                    if resp.status == 200 and path == "/invoices":
                        detail = f"acting for {(await resp.json())['for']}"
                    step(f"{label}: {resp.status} {detail}".rstrip())
                    check(resp.status == expected, f"{label}: expected {expected}")
    finally:
        await runner.cleanup()
    print("validate in aiohttp: OK")


if __name__ == "__main__":
    asyncio.run(main())
