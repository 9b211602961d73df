"""Admin Get RPC throughput relative to a no-op RPC (gRPC health Check), on PostgreSQL.

Starts ``control-plane serve`` as a subprocess against a fresh PostgreSQL database,
creates an org + user, then measures, in one run and one client process, QPS of
``AdminService/GetUser`` (authn lookup + org-scoped read + RLS + audit hook) and of
``Health/Check`` at c=1 and c=32, and prints the ratios. It reports; it does not gate.

    .venv/bin/python -m bench.admin_get_vs_health [--seconds 5] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc
import psycopg
from agentauth import client_interceptors
from agentauth.v1 import admin_pb2 as pb
from agentauth.v1 import admin_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _measure(
    call: Callable[[], Awaitable[object]], concurrency: int, seconds: float
) -> float:
    stop = time.perf_counter() + seconds
    count = 0

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < stop:
            await call()
            count += 1

    for _ in range(50):  # warm-up
        await call()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - start)


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
            health_qps = await _measure(lambda: health.Check(check_req), c, seconds)
            get_qps = await _measure(lambda: admin.GetUser(get_req), c, seconds)
            print(f"{c:>3} {get_qps:>12.0f} {health_qps:>11.0f} {get_qps / health_qps:>6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument(
        "--database-url",
        default=os.environ.get(
            "AGENTAUTH_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="an admin connection; a throwaway database is created next to it",
    )
    args = ap.parse_args()
    admin_url = args.database_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"agentauth_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    env = {**os.environ, "AGENTAUTH_DATA_DIR": tempfile.mkdtemp(), "AGENTAUTH_DATABASE_URL": url}
    cli = [sys.executable, "-m", "control_plane"]
    proc = None
    try:
        subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
        made = subprocess.run(
            [*cli, "admin", "create-key"], env=env, check=True, capture_output=True, text=True
        )
        key = made.stdout.strip().splitlines()[-1]
        port = _port()
        proc = subprocess.Popen(
            [*cli, "serve", "--grpc-listen", f"127.0.0.1:{port}", "--http-listen", "127.0.0.1:0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(3)
        print(f"server: control-plane serve on PostgreSQL ({name}); {args.seconds:.0f}s per cell")
        asyncio.run(_bench(f"127.0.0.1:{port}", key, args.seconds))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
