"""What every benchmark shares: a real ``control-plane serve`` on a throwaway
PostgreSQL database, and a closed-loop QPS measurement."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def arguments(description: str | None) -> argparse.Namespace:
    return parser(description).parse_args()


def parser(description: str | None) -> argparse.ArgumentParser:
    """The options every benchmark takes; a script adds its own before parsing."""
    ap = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument(
        "--database-url",
        default=os.environ.get(
            "AGENTAUTH_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="an admin connection; a throwaway database is created next to it",
    )
    return ap


@dataclass(frozen=True)
class Replica:
    target: str  # gRPC host:port
    http: str  # base URL of the HTTP surface
    proc: subprocess.Popen[bytes] | None = None
    database_url: str = ""  # the shared database (an owner connection)


def wait_serving(target: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Block until the gRPC health check answers SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"control-plane serve on {target} exited early")
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"control-plane serve on {target} never became SERVING")


@contextlib.contextmanager
def cluster_on_postgres(
    database_url: str,
    replicas: int = 1,
    *,
    quiet: bool = True,
    extra_env: dict[str, str] | None = None,
    serve_args: Sequence[Sequence[str]] = (),
) -> Iterator[tuple[list[Replica], str]]:
    """Yields (replicas, platform admin key): ``replicas`` ``control-plane serve``
    processes sharing one fresh PostgreSQL database, one KEK and one issuer.

    ``serve_args[i]``, when given, are extra ``serve`` arguments of replica ``i``.
    """
    import psycopg

    admin_url = database_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"agentauth_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    ports = [(free_port(), free_port()) for _ in range(replicas)]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")},
        "AGENTAUTH_DATA_DIR": tempfile.mkdtemp(),
        "AGENTAUTH_DATABASE_URL": url,
        # One issuer for the cluster, as behind a load balancer.
        "AGENTAUTH_ISSUER": f"http://127.0.0.1:{ports[0][1]}",
        # The workload-token and IdP emulators listen on http://127.0.0.1.
        "AGENTAUTH_OUTBOUND_LOOPBACK": "1",
        # A load generator on one address is one caller: the deployment's limits
        # would refuse it long before it measures anything. Limits far above the
        # offered load keep the limiter's cost in every call (one shared lease per
        # 1000 calls) without refusing any.
        **{
            f"AGENTAUTH_RATE_LIMIT_{kind}_{what}": value
            for kind in ("ORG", "PRINCIPAL", "ANONYMOUS")
            for what, value in (("RPS", "1000000"), ("BURST", "10000000"))
        },
        **(extra_env or {}),
    }
    cli = [sys.executable, "-m", "control_plane"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
        made = subprocess.run(
            [*cli, "admin", "create-key"], env=env, check=True, capture_output=True, text=True
        )
        key = made.stdout.strip().splitlines()[-1]
        out = subprocess.DEVNULL if quiet else None
        started = []
        for i, (gport, hport) in enumerate(ports):
            proc = subprocess.Popen(
                [
                    *cli,
                    "serve",
                    "--grpc-listen",
                    f"127.0.0.1:{gport}",
                    "--http-listen",
                    f"127.0.0.1:{hport}",
                    *_one_process_unless_asked(serve_args[i] if i < len(serve_args) else ()),
                ],
                env=env,
                stdout=out,
                stderr=out,
            )
            procs.append(proc)
            wait_serving(f"127.0.0.1:{gport}", proc)  # one at a time: start-up writes keys
            started.append(Replica(f"127.0.0.1:{gport}", f"http://127.0.0.1:{hport}", proc, url))
        yield started, key
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _one_process_unless_asked(args: Sequence[str]) -> list[str]:
    """A replica is one process (what replica tests kill, what CPU is measured on)
    unless the caller passes its own ``--workers``."""
    args = list(args)
    return args if "--workers" in args else [*args, "--workers", "1"]


def serve_accepts(flag: str) -> bool:
    """Whether ``control-plane serve`` lists ``flag`` in its ``--help``."""
    usage = subprocess.run(
        [sys.executable, "-m", "control_plane", "serve", "--help"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return any(word.rstrip(",") == flag for word in usage.split())


@contextlib.contextmanager
def served_on_postgres(database_url: str) -> Iterator[tuple[str, str]]:
    """Yields (gRPC target, platform admin key) of a server on a fresh database."""
    with cluster_on_postgres(database_url, 1) as (replicas, key):
        print("server: control-plane serve on PostgreSQL (throwaway database)")
        yield replicas[0].target, key


async def measure(call: Callable[[], Awaitable[object]], concurrency: int, seconds: float) -> float:
    """Closed-loop QPS of ``call`` with ``concurrency`` workers, after a warm-up."""
    stop = time.perf_counter() + seconds
    count = 0

    async def worker() -> None:
        nonlocal count
        while time.perf_counter() < stop:
            await call()
            count += 1

    for _ in range(50):
        await call()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - start)
