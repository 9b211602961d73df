"""``control-plane serve --workers N``: N server processes sharing the ports.

Python runs one core per process, and a replica is one process; ``--workers``
fills a host with N of them behind the same gRPC and HTTP ports (``SO_REUSEPORT``:
the kernel spreads incoming connections across the processes), which is what a
load balancer in front of N single-process replicas would do, without one.

* The parent checks everything first, once — database reachable and migrated (or
  the embedded SQLite migrated), the KEK opens the keys, a signing key exists,
  and on a first embedded start the admin key is printed — so a misconfiguration
  fails once, with the same message and exit code as a single process.
* It then starts N children running ``serve --worker`` with the same settings,
  ``SO_REUSEPORT`` on, and one issuer (the children must not each derive one),
  forwards SIGINT/SIGTERM to them and waits. A child that dies is started again,
  with back-off; the children die with the parent (``PR_SET_PDEATHSIG``), so a
  killed parent leaves no orphan serving on the ports.
* Default: 1 on the embedded SQLite (a single writer: more processes would only
  queue on its lock), and the CPUs this process may run on (at most 8) on
  PostgreSQL, where every replica is stateless.
* The workers share one fresh metrics directory (:mod:`control_plane.metrics`), so
  a scrape of any of them counts all of them; it is removed when the parent stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from control_plane.config import Settings, parse_listen
from control_plane.logs import get_logger
from control_plane.metrics import MULTIPROCESS_DIR_ENV, forget_worker

log = get_logger("agentauth.workers")
MAX_AUTO_WORKERS = 8
_PR_SET_PDEATHSIG = 1


def default_workers(settings: Settings) -> int:
    if settings.embedded:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_AUTO_WORKERS))


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def fixed_ports(settings: Settings) -> bool:
    """Whether both listen addresses name a port (0 asks the kernel for any free one)."""
    return all(parse_listen(x)[1] != 0 for x in (settings.grpc_listen, settings.http_listen))


def run_workers(settings: Settings, workers: int, worker_argv: Sequence[str]) -> int:
    """Start ``workers`` children of ``serve --worker``; return when they have stopped."""
    issuer = settings.effective_issuer
    shared_metrics = tempfile.mkdtemp(prefix="agentauth-metrics-")
    env = {
        **os.environ,
        "AGENTAUTH_REUSE_PORT": "1",
        "AGENTAUTH_ISSUER": issuer,
        MULTIPROCESS_DIR_ENV: shared_metrics,
    }
    command = [sys.executable, "-m", "control_plane", "serve", "--worker", *worker_argv]
    stopping = False
    children: dict[int, subprocess.Popen[bytes]] = {}
    failures = 0

    def start(index: int) -> None:
        child = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
            command,
            env=env,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        children[index] = child
        if stopping:  # the signal came while it was being started: it gets it too
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for index in range(workers):
            start(index)
        log.info("serving with workers", workers=workers, issuer=issuer)
        while children:
            time.sleep(0.2)
            for index, child in list(children.items()):
                code = child.poll()
                if code is None:
                    continue
                del children[index]
                forget_worker(shared_metrics, child.pid)
                if stopping:
                    continue
                failures += 1
                log.error("worker exited; starting it again", worker=index, exit_code=code)
                if failures > 5 * workers:
                    log.error("workers keep exiting; stopping", failures=failures)
                    forward(signal.SIGTERM, None)
                    continue
                time.sleep(min(5.0, 0.2 * failures))
                if not stopping:  # a stop during the back-off must not start one more
                    start(index)
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        shutil.rmtree(shared_metrics, ignore_errors=True)
