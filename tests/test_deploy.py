"""deploy/: the compose file parses, the Kubernetes overlay renders and validates
against the Kubernetes schemas, and both keep the shapes the server relies on
(two database roles, probes matching the server's readiness semantics, secrets
never inlined)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
REQUIRE = os.environ.get("AGENTAUTH_TEST_REQUIRE_DEPLOY_TOOLS") == "1"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if REQUIRE:
            pytest.fail(f"{name} is required (CI installs it)")
        pytest.skip(f"{name} is not installed")
    return path


def _compose_config(tmp_path: Path, *files: str) -> dict[str, Any]:
    compose = _tool("docker-compose")
    work = tmp_path / "deploy"
    shutil.copytree(DEPLOY, work)
    for name in ("kek", "pg_owner_password", "pg_runtime_password"):
        (work / "secrets" / name).write_text("")
    argv = [compose]
    for name in files:
        argv += ["-f", str(work / name)]
    done = subprocess.run(
        [*argv, "config"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = yaml.safe_load(done.stdout)
    return doc


def test_the_compose_file_is_valid_and_keeps_the_roles_apart(tmp_path: Path) -> None:
    services = _compose_config(tmp_path, "docker-compose.yml")["services"]
    assert {"postgres", "migrate", "agentauth-1", "agentauth-2", "lb"} <= set(services)
    migrate_url = services["migrate"]["environment"]["AGENTAUTH_DATABASE_URL"]
    assert "agentauth_owner@" in migrate_url
    for replica in ("agentauth-1", "agentauth-2"):
        env = services[replica]["environment"]
        assert "agentauth_runtime@" in env["AGENTAUTH_DATABASE_URL"]
        assert env["AGENTAUTH_KEK_PROVIDER"] == "env" and "AGENTAUTH_KEK" not in env
        assert env["AGENTAUTH_ISSUER"]
    text = (DEPLOY / "docker-compose.yml").read_text()
    assert "PASSWORD:" not in text.replace("POSTGRES_PASSWORD_FILE", "")


def _relayed_ports(conf: str) -> dict[int, tuple[str, int]]:
    """``listen 127.0.0.1:P; proxy_pass HOST:Q;`` lines of the relay's nginx.conf."""
    found = re.findall(r"listen 127\.0\.0\.1:(\d+);\s*proxy_pass ([\w.-]+):(\d+);", conf)
    return {int(p): (host, int(q)) for p, host, q in found}


def test_the_sandbox_overlay_keeps_every_emulator_on_loopback(tmp_path: Path) -> None:
    services = _compose_config(tmp_path, "docker-compose.yml", "docker-compose.sandbox.yml")[
        "services"
    ]
    emulators = {
        n: s for n, s in services.items() if s.get("entrypoint") == ["control-plane", "sandbox"]
    }
    assert set(emulators) == {"sandbox-gmail", "sandbox-kubernetes"}
    advertised: dict[str, str] = {}
    for name, svc in emulators.items():
        argv = svc["command"]
        url = argv[argv.index("--expose-as") + 1]
        port = int(argv[argv.index("--port") + 1])
        # Published on the host's loopback only, at the port the emulator advertises.
        (published,) = svc["ports"]
        assert published == f"127.0.0.1:{url.rsplit(':', 1)[1]}:{port}/tcp", published
        assert url.startswith("http://127.0.0.1:")
        advertised[name] = url
    conf = (DEPLOY / "compose" / "sandbox-relay.conf").read_text()
    relayed = _relayed_ports(conf)
    # Inside each replica, the emulator's advertised URL leads to that emulator.
    for name, url in advertised.items():
        port = int(url.rsplit(":", 1)[1])
        emulator_port = int(
            emulators[name]["command"][emulators[name]["command"].index("--port") + 1]
        )
        assert relayed[port] == (name, emulator_port)
    for replica in ("agentauth-1", "agentauth-2"):
        env = services[replica]["environment"]
        assert env["AGENTAUTH_SANDBOX_URL"] == advertised["sandbox-gmail"]
        relays = [s for s in services.values() if s.get("network_mode") == f"service:{replica}"]
        assert len(relays) == 1
        assert any(
            v.startswith(str(tmp_path))
            and v.endswith(":/etc/nginx/nginx.conf:ro")
            and "sandbox-relay.conf" in v
            for v in relays[0]["volumes"]
        )
    # The base file alone stays production-shaped: no sandbox in it.
    base = _compose_config(tmp_path / "base", "docker-compose.yml")["services"]
    assert not any(
        "sandbox" in n or "AGENTAUTH_SANDBOX_URL" in s.get("environment", {})
        for n, s in base.items()
    )


def _rendered() -> list[dict[str, Any]]:
    kubectl = _tool("kubectl")
    done = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s" / "overlays" / "production")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_the_kubernetes_overlay_renders_and_every_object_validates() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    objects = _rendered()
    extra = list(
        yaml.safe_load_all((DEPLOY / "k8s" / "examples" / "agent-deployment.yaml").read_text())
    )
    for obj in objects + [d for d in extra if d]:
        kubernetes_validate.validate(obj, "1.30.0", strict=True)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Job",
            "Namespace",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )
    assert "Secret" not in kinds  # from the operator's secret store, never the repo


def test_the_deployment_probes_match_the_servers_health_semantics() -> None:
    objects = {o["kind"]: o for o in _rendered()}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    # readiness follows the database and the drain; liveness never does.
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    assert env["AGENTAUTH_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "runtime-url"
    assert "valueFrom" in env["AGENTAUTH_KEK"]
    job = objects["Job"]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["migrate"]
    assert job["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "owner-url"
    assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert objects["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3
    assert pod["terminationGracePeriodSeconds"] >= 30
