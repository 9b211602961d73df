"""Admin Get RPC throughput relative to a no-op RPC (gRPC health Check), on PostgreSQL.

Starts ``control-plane serve`` as a subprocess against a fresh PostgreSQL database,
creates an org + user, then measures, in one run and one client process, QPS of
``AdminService/GetUser`` (authn lookup + org-scoped read + RLS + audit hook) and of
``Health/Check`` at c=1 and c=32, and prints the ratios. It reports; it does not gate.

    .venv/bin/python -m bench.admin_get_vs_health [--seconds 5] [--database-url URL]
"""

from __future__ import annotations

import asyncio

import grpc
from agentauth import client_interceptors
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import admin_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench._harness import arguments, measure, served_on_postgres


async def _bench(target: str, key: str, seconds: float) -> None:
    async with (
        grpc.aio.insecure_channel(
            target, interceptors=client_interceptors(key, timeout=30)
        ) as channel,
        grpc.aio.insecure_channel(target) as bare,
    ):
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        # The no-op baseline: public, no credential, no storage; same interceptor chain.
        health = health_pb2_grpc.HealthStub(bare)
        org = (
            await admin.CreateOrganization(
                pb.CreateOrganizationRequest(organization=pb.Organization(display_name="bench"))
            )
        ).organization.name
        user = (
            await admin.CreateUser(pb.CreateUserRequest(parent=org, user=pb.User(external_id="b")))
        ).user.name
        get_req = pb.GetUserRequest(name=user)
        check_req = health_pb2.HealthCheckRequest()
        print(f"{'c':>3} {'GetUser QPS':>12} {'Health QPS':>11} {'ratio':>6}")
        for c in (1, 32):
            health_qps = await measure(lambda: health.Check(check_req), c, seconds)
            get_qps = await measure(lambda: admin.GetUser(get_req), c, seconds)
            print(f"{c:>3} {get_qps:>12.0f} {health_qps:>11.0f} {get_qps / health_qps:>6.2f}")


def main() -> None:
    args = arguments(__doc__)
    with served_on_postgres(args.database_url) as (target, key):
        print(f"{args.seconds:.0f}s per cell")
        asyncio.run(_bench(target, key, args.seconds))


if __name__ == "__main__":
    main()
