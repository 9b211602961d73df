"""The real thing: ``control-plane serve`` as a subprocess from a clean data dir."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from agentauth import ControlPlaneClient
from agentauth.v1 import admin_pb2 as pb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}
    env["AGENTAUTH_DATA_DIR"] = str(data_dir)
    return env


async def _wait_serving(target: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            assert proc.poll() is None, "server exited early"
            try:
                resp = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("server never became SERVING")


async def test_serve_from_clean_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    gport, hport = _free_port(), _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "control_plane",
            "serve",
            "--grpc-listen",
            f"127.0.0.1:{gport}",
            "--http-listen",
            f"127.0.0.1:{hport}",
        ],
        env=_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        target = f"127.0.0.1:{gport}"
        await _wait_serving(target, proc)
        # The first dev start prints a platform admin key, alone on its line.
        key = proc.stdout.readline().strip() if proc.stdout else ""
        if not key.startswith("aa_"):
            key = proc.stdout.readline().strip() if proc.stdout else ""
        assert re.fullmatch(r"aa_plat_[0-9a-f]{32}_[A-Za-z0-9_-]{43}", key)
        kek = data_dir / "kek.json"
        assert stat.S_IMODE(kek.stat().st_mode) == 0o600

        async with grpc.aio.insecure_channel(target) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            req = reflection_pb2.ServerReflectionRequest(list_services="")
            services = set()
            async for resp in stub.ServerReflectionInfo(iter([req])):
                services |= {s.name for s in resp.list_services_response.service}
        assert {
            "agentauth.v1.AdminService",
            "agentauth.v1.TokenService",
            "grpc.health.v1.Health",
        } <= services

        async with ControlPlaneClient(target, key) as client:
            org = await client.admin.CreateOrganization(
                pb.CreateOrganizationRequest(organization=pb.Organization(display_name="E2E"))
            )
            assert org.organization.name.startswith("orgs/")

        with urllib.request.urlopen(f"http://127.0.0.1:{hport}/.well-known/jwks.json") as r:
            jwks = json.load(r)
            assert r.headers["Cache-Control"].startswith("public, max-age=")
        assert jwks["keys"] and jwks["keys"][0]["kty"] == "EC" and "d" not in jwks["keys"][0]
        with urllib.request.urlopen(f"http://127.0.0.1:{hport}/readyz") as r:
            assert json.load(r)["status"] == "ready"
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err[-2000:]
    first_lines = "\n".join(err.splitlines()[:5])
    assert "embedded SQLite" in first_lines
    assert '"kek_provider": "file"' in first_lines and str(data_dir / "kek.json") in first_lines
    assert key not in err  # the key goes to stdout only, never to the logs
    # The serving line names the bind addresses, not only the ports (issue 13).
    serving = next(line for line in err.splitlines() if '"event": "serving"' in line)
    assert f'"grpc": "127.0.0.1:{gport}"' in serving and f'"http": "127.0.0.1:{hport}"' in serving


def test_refuses_to_start_with_wrong_kek(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = _env(data_dir)
    created = subprocess.run(
        [sys.executable, "-m", "control_plane", "admin", "create-key", "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("aa_plat_") and key not in created.stderr
    kek = data_dir / "kek.json"
    doc = json.loads(kek.read_text())
    import base64

    doc["keys"] = {k: base64.b64encode(b"\x01" * 32).decode() for k in doc["keys"]}
    kek.write_text(json.dumps(doc))
    kek.chmod(0o600)
    wrong = subprocess.run(
        [sys.executable, "-m", "control_plane", "serve", "--data-dir", str(data_dir),
         "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode == 2 and "refusing to start" in wrong.stderr
    kek.unlink()
    missing = subprocess.run(
        [sys.executable, "-m", "control_plane", "admin", "create-key", "--data-dir", str(data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "missing" in missing.stderr
    assert not kek.exists()  # never silently replaced by a fresh KEK


def test_serve_refuses_unmigrated_postgres(pg_server) -> None:
    if pg_server is None:
        pytest.skip("PostgreSQL unreachable")
    url = pg_server.new_database()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "control_plane",
            "serve",
            "--database-url",
            url,
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ],
        env=_env(Path("/nonexistent-agentauth")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "control-plane migrate" in result.stderr
