"""Quickstart: create an organization and a user, then look at the public endpoints.

Run `./scripts/serve` in another terminal, then:

    AGENTAUTH_ADMIN_KEY=aa_plat_... python examples/quickstart.py

Environment:
    AGENTAUTH_GRPC_TARGET  gRPC address        (default 127.0.0.1:50051)
    AGENTAUTH_HTTP_URL     HTTP base URL       (default http://127.0.0.1:8080)
    AGENTAUTH_ADMIN_KEY    platform admin key  (required)
"""

from __future__ import annotations

import asyncio

import aiohttp
from _shared import GRPC_TARGET, HTTP_URL, admin_key, check, step, unique
from agentauth import AlreadyExistsError, ControlPlaneClient
from agentauth.v1 import admin_pb2 as pb


async def main() -> None:
    async with ControlPlaneClient(GRPC_TARGET, admin_key()) as cp:
        # request_id makes the create idempotent: a retry returns the same org.
        request_id = unique("acme")
        org = (
            await cp.admin.CreateOrganization(
                pb.CreateOrganizationRequest(
                    organization=pb.Organization(display_name="Acme"), request_id=request_id
                )
            )
        ).organization
        step(f"created organization {org.name}")
        again = (
            await cp.admin.CreateOrganization(
                pb.CreateOrganizationRequest(
                    organization=pb.Organization(display_name="Acme"), request_id=request_id
                )
            )
        ).organization
        check(again.name == org.name, "a repeated request_id must return the same org")
        step("the same request_id again returned the same organization")

        user = (
            await cp.admin.CreateUser(
                pb.CreateUserRequest(
                    parent=org.name, user=pb.User(external_id="alice", email="alice@acme.test")
                )
            )
        ).user
        step(f"created user {user.name}")
        try:  # errors arrive as typed exceptions carrying the server's reason
            await cp.admin.CreateUser(
                pb.CreateUserRequest(parent=org.name, user=pb.User(external_id="alice"))
            )
            check(False, "a second user alice must be refused")
        except AlreadyExistsError as err:
            step(f"a second 'alice' is refused: {err.reason}")

    async with aiohttp.ClientSession() as http:
        async with http.get(HTTP_URL + "/.well-known/jwks.json") as resp:
            keys = (await resp.json())["keys"]
        check(len(keys) >= 1, "the JWKS must publish a signing key")
        step(f"JWKS publishes {len(keys)} signing key(s): {', '.join(k['kid'] for k in keys)}")
        async with http.get(HTTP_URL + "/readyz") as resp:
            check(resp.status == 200, f"/readyz answered {resp.status}")
        step("/readyz: ready")
    print("quickstart: OK")


if __name__ == "__main__":
    asyncio.run(main())
