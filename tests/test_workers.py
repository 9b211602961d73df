"""``control-plane serve --workers N``: N processes behind one pair of ports.

On PostgreSQL, as an operator runs it: the parent checks once and starts the
workers; connections spread over them; a killed worker is replaced; a killed
parent takes its workers with it; SIGTERM stops everything.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _wait(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def _healthz_count(http: str) -> int:
    """The count of /healthz calls a fresh connection's /metrics reports."""
    with urllib.request.urlopen(http + "/metrics", timeout=10) as r:  # noqa: S310
        for line in r.read().decode().splitlines():
            if line.startswith('agentauth_rpc_total{code="OK",method="GET /healthz"}'):
                return int(float(line.rsplit(" ", 1)[1]))  # exposition values are floats
    return 0


def _owners_of_connections(port: int, pids: list[int]) -> set[int]:
    """Which of ``pids`` hold an established connection accepted on local ``port``
    (/proc/net/tcp gives the socket inodes, /proc/PID/fd who holds them)."""
    inodes: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "01":  # TCP_ESTABLISHED
            inodes.add(fields[9])
    owners = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                owners.add(pid)
    return owners


def _ready(http: str) -> bool:
    try:
        with urllib.request.urlopen(http + "/healthz", timeout=2) as r:  # noqa: S310
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def database(pg_server: Any) -> str:
    if pg_server is None:
        pytest.skip("PostgreSQL unreachable")
    url = str(pg_server.new_database())
    subprocess.run(
        [sys.executable, "-m", "control_plane", "migrate", "--database-url", url],
        check=True,
        capture_output=True,
    )
    return url


def test_workers_share_the_ports_are_replaced_and_stop_together(
    database: str, tmp_path: Path
) -> None:
    grpc_port, http_port = _port(), _port()
    http = f"http://127.0.0.1:{http_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}
    parent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "control_plane",
            "serve",
            "--workers",
            "2",
            "--data-dir",
            str(tmp_path),
            "--database-url",
            database,
            "--grpc-listen",
            f"127.0.0.1:{grpc_port}",
            "--http-listen",
            f"127.0.0.1:{http_port}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: len(_children(parent.pid)) == 2 and _ready(http))
        first = _children(parent.pid)

        # Connections spread over both workers (once both listen): hold 20 open at a
        # time and see who accepted them.
        def both_accept() -> bool:
            held = [socket.create_connection(("127.0.0.1", http_port)) for _ in range(20)]
            try:
                time.sleep(0.2)
                return _owners_of_connections(http_port, first) == set(first)
            finally:
                for conn in held:
                    conn.close()

        _wait(both_accept, timeout=30)
        # Whichever worker a scrape reaches, it counts the calls both of them served.
        before = _healthz_count(http)
        for _ in range(40):
            assert _ready(http)
        assert {_healthz_count(http) for _ in range(10)} == {before + 40}
        # A dead worker is replaced, and what it counted is still counted.
        os.kill(first[0], signal.SIGKILL)
        _wait(lambda: len(_children(parent.pid)) == 2 and first[0] not in _children(parent.pid))
        _wait(lambda: _ready(http))
        assert _healthz_count(http) >= before + 40
        shared = [
            d
            for d in Path(tempfile.gettempdir()).glob("agentauth-metrics-*")
            if any(f.name.endswith(f"_{first[0]}.db") for f in d.iterdir())
        ]
        assert len(shared) == 1  # the dead worker's values are still there
        # SIGTERM stops the parent and every worker.
        workers = _children(parent.pid)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 0
        _wait(lambda: not any(_alive(p) for p in workers), timeout=30)
        assert not any(d.exists() for d in shared)  # the metrics directory goes with it
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_a_killed_parent_leaves_no_orphan_serving(database: str, tmp_path: Path) -> None:
    grpc_port, http_port = _port(), _port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}
    parent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "control_plane",
            "serve",
            "--workers",
            "2",
            "--data-dir",
            str(tmp_path),
            "--database-url",
            database,
            "--grpc-listen",
            f"127.0.0.1:{grpc_port}",
            "--http-listen",
            f"127.0.0.1:{http_port}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: len(_children(parent.pid)) == 2)
        workers = _children(parent.pid)
        parent.kill()
        parent.wait()
        _wait(lambda: not any(_alive(p) for p in workers), timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_workers_need_fixed_ports(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTAUTH_")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "control_plane",
            "serve",
            "--workers",
            "2",
            "--data-dir",
            str(tmp_path),
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--workers needs fixed ports" in result.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by anyone) is not serving either.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


class _FakeChild:
    """A worker that runs until it is signalled (or is told to die once at first poll)."""

    started: list[_FakeChild] = []

    def __init__(self, *_: Any, **__: Any) -> None:
        self.pid = 2**22 + len(_FakeChild.started)  # above pid_max: no real process
        self.signalled = False
        self.dies_first = not _FakeChild.started  # the first one crashes
        _FakeChild.started.append(self)

    def poll(self) -> int | None:
        if self.dies_first:
            return 1
        return 0 if self.signalled else None

    def send_signal(self, _signum: int) -> None:
        self.signalled = True


def test_a_stop_during_the_restart_back_off_starts_no_new_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race behind a parent that never exited: SIGTERM while the parent waits to
    restart a crashed worker used to be followed by starting it anyway, and that worker,
    started after the signal was forwarded, never got it. Deterministic: the back-off
    sleep itself delivers the SIGTERM."""
    from control_plane import workers as w
    from control_plane.config import Settings

    _FakeChild.started = []
    real_sleep = time.sleep
    monkeypatch.setattr(w.subprocess, "Popen", _FakeChild)

    calls = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 2:  # 1st: the poll interval; 2nd: the back-off after the crash
            os.kill(os.getpid(), signal.SIGTERM)  # the stop arrives during the back-off
        real_sleep(min(seconds, 0.01))

    monkeypatch.setattr(w.time, "sleep", sleep)
    settings = Settings(database_url="postgresql://x@127.0.0.1:1/x", grpc_listen="127.0.0.1:1",
                        http_listen="127.0.0.1:2")  # fmt: skip
    began = time.monotonic()
    assert w.run_workers(settings, 1, []) == 0
    assert time.monotonic() - began < 5
    late = _FakeChild.started[1:]
    assert all(child.signalled for child in late), "a worker was started after the stop"
