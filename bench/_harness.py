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
from collections.abc import Awaitable, Callable, Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def arguments(description: str | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument(
        "--database-url",
        default=os.environ.get(
            "AGENTAUTH_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="an admin connection; a throwaway database is created next to it",
    )
    return ap.parse_args()


@contextlib.contextmanager
def served_on_postgres(database_url: str) -> Iterator[tuple[str, str]]:
    """Yields (gRPC target, platform admin key) of a server on a fresh database."""
    import psycopg

    admin_url = database_url.replace("postgresql+psycopg://", "postgresql://")
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
        port = free_port()
        proc = subprocess.Popen(
            [*cli, "serve", "--grpc-listen", f"127.0.0.1:{port}", "--http-listen", "127.0.0.1:0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(3)
        print(f"server: control-plane serve on PostgreSQL ({name})")
        yield f"127.0.0.1:{port}", key
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=20)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
