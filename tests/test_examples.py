"""Every script in examples/ runs against a real ``control-plane serve`` process.

One server (embedded SQLite, sandbox mode pointed at the Gmail emulator) and the
two sandboxes the examples need run as subprocesses for the whole module, started
the way the examples' docstrings tell a newcomer to start them. Each example runs
as its own subprocess: it must exit 0 and print its key lines, and never print the
admin key or the OAuth client secret.
"""

from __future__ import annotations

import os
import queue
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

# Lines each example must print (besides exiting 0).
EXPECTED: dict[str, list[str]] = {
    "quickstart": [
        "the same request_id again returned the same organization",
        "a second 'alice' is refused: RESOURCE_ALREADY_EXISTS",
        "/readyz: ready",
        "quickstart: OK",
    ],
    "workload_identity": [
        "aud=https://billing.internal scope=invoices:read",
        "a second tokens.token() reuses the cached token",
        "asking for invoices:write is refused: INVALID_SCOPE",
        "workload identity: OK",
    ],
    "delegation_chain": [
        "hop 3: researcher -> summarizer",
        "hop 3 active before the revocation: True",
        "hop 1 active: False",
        "hop 2 active: False",
        "hop 3 active: False",
        "delegation chain: OK",
    ],
    "connect_gmail": [
        "(CONNECTED_ACCOUNT_STATE_PENDING)",
        "is now CONNECTED_ACCOUNT_STATE_ACTIVE",
        "granted scopes: https://www.googleapis.com/auth/gmail.readonly",
        "connect gmail: OK",
    ],
    "validate_in_aiohttp": [
        "/healthz, public: 200",
        "no token: 401 Bearer",
        "token with invoices:read: 200 acting for orgs/",
        'token with invoices:list only: 403 Bearer error="insufficient_scope"',
        'forged signature: 401 Bearer error="invalid_token"',
        "validate in aiohttp: OK",
    ],
    "execute_tool": [
        "tools this token may run: gmail.list_messages",
        "not connected yet: the call returned a connect URL",
        "the owner connected Gmail",
        "stream events: accepted -> result",
        "upstream status 200",
        "execute tool: OK",
    ],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}


class Process:
    """A subprocess whose stdout lines a thread collects (the pipe never fills up)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log  # stderr (the server's structured log), shown when something fails
        with log.open("w") as err:
            self.popen = subprocess.Popen(
                args, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True
            )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(None)  # end of output

    def line_starting(self, prefix: str, timeout: float = 30) -> str:
        """The first stdout line starting with ``prefix`` (other lines are skipped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"exited before {prefix!r}:\n{self.log_tail()}")
            if line.startswith(prefix):
                return line.strip()
        raise AssertionError(f"no line starting with {prefix!r} in {timeout} s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log.read_text()[-2000:]

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self.reader.join(timeout=5)
        assert self.popen.stdout is not None
        self.popen.stdout.close()


def _wait_ready(url: str, proc: Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.popen.poll() is None, f"server exited early:\n{proc.log_tail()}"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"server never became ready:\n{proc.log_tail()}")


@dataclass
class Stack:
    env: dict[str, str]
    admin_key: str
    client_secret: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    k8s_port, gmail_port, grpc_port, http_port = (_free_port() for _ in range(4))
    client_secret = secrets.token_urlsafe(24)
    sandbox = [sys.executable, "-m", "control_plane.sandbox"]
    procs: list[Process] = []
    logs = tmp_path_factory.mktemp("examples-logs")

    def spawn(args: list[str], env: dict[str, str]) -> Process:
        procs.append(Process(args, env, logs / f"{len(procs)}-{args[3]}.stderr"))
        return procs[-1]

    try:
        k8s = spawn([*sandbox, "kubernetes", "--port", str(k8s_port)], _clean_env())
        k8s_issuer = k8s.line_starting("issuer: ").removeprefix("issuer: ")
        gmail = spawn(
            [*sandbox, "oauth", "gmail", "--port", str(gmail_port),
             "--client-id", "example-client", "--client-secret", client_secret],
            _clean_env(),
        )
        gmail_base = gmail.line_starting("base_url: ").removeprefix("base_url: ")
        server_env = _clean_env() | {
            "AGENTAUTH_DATA_DIR": str(tmp_path_factory.mktemp("examples-data")),
            "AGENTAUTH_SANDBOX_URL": gmail_base,
        }
        serve = spawn(
            [sys.executable, "-m", "control_plane", "serve",
             "--grpc-listen", f"127.0.0.1:{grpc_port}", "--http-listen", f"127.0.0.1:{http_port}"],
            server_env,
        )
        http_url = f"http://127.0.0.1:{http_port}"
        _wait_ready(http_url + "/readyz", serve)
        admin_key = serve.line_starting("aa_plat_")  # printed once, on the first start
        env = _clean_env() | {
            "AGENTAUTH_GRPC_TARGET": f"127.0.0.1:{grpc_port}",
            "AGENTAUTH_HTTP_URL": http_url,
            "AGENTAUTH_ADMIN_KEY": admin_key,
            "K8S_ISSUER_URL": k8s_issuer,
            "GMAIL_CLIENT_ID": "example-client",
            "GMAIL_CLIENT_SECRET": client_secret,
        }
        yield Stack(env, admin_key, client_secret)
    finally:
        for proc in procs:
            proc.stop()


def test_every_example_is_run_here() -> None:
    scripts = {p.stem for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(EXPECTED)


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_example_runs_against_a_real_server(stack: Stack, example: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{example}.py")],
        env=stack.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    for secret in (stack.admin_key, stack.client_secret):
        assert secret not in output, f"{example} printed a secret"
    assert done.returncode == 0, f"{example} exited {done.returncode}:\n{output[-3000:]}"
    missing = [line for line in EXPECTED[example] if line not in done.stdout]
    assert not missing, f"{example} did not print {missing}:\n{done.stdout[-3000:]}"
