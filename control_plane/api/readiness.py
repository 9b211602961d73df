"""Readiness: one answer for gRPC health and ``/readyz``, from one background check.

A load balancer may probe either protocol; both must tell the same story. A
replica whose database is unreachable (refused, dropped or stalled) can only
answer ``UNAVAILABLE``, so it reports ``NOT_SERVING`` on gRPC health — for the
server as a whole (``""``) and for every service — and 503 on ``/readyz``, and
goes back to ``SERVING``/200 once the database answers again.

The checks run in one background task, every ``interval`` seconds, each bounded
by its own timeout; a probe reads the last result and never touches the
database itself. Liveness (``/healthz``) is not readiness: it does not look at
the database at all, so an orchestrator does not restart replicas that are
merely waiting for it.

:meth:`Readiness.set_draining` is for shutdown: from then on everything reads
``NOT_SERVING``, whatever the checks say.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence

from grpc_health.v1 import health, health_pb2

from control_plane.logs import get_logger

Check = Callable[[], Awaitable[bool]]
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_log = get_logger("agentauth.readiness")


class Readiness:
    def __init__(
        self,
        health_servicer: health.aio.HealthServicer,
        services: Sequence[str],
        checks: Mapping[str, Check],
        *,
        interval: float,
    ) -> None:
        """``services``: the gRPC health names to publish (``""`` included);
        ``checks``: named probes, each bounding its own wait."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        self._health = health_servicer
        self._services = tuple(services)
        self._checks = dict(checks)
        self._interval = interval
        self._results = dict.fromkeys(self._checks, False)
        self._published: bool | None = None
        self._draining = False
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return not self._draining and all(self._results.values())

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def checks(self) -> dict[str, bool]:
        """The last result of each check."""
        return dict(self._results)

    async def start(self) -> None:
        """Check once now (and publish the result), then every ``interval`` seconds."""
        if self._task is not None:
            raise RuntimeError("readiness already started")
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def set_draining(self) -> None:
        """Report NOT_SERVING from now on, for good (a replica that is shutting down)."""
        self._draining = True
        await self._health.enter_graceful_shutdown()  # later set() calls are ignored
        self._published = False

    async def refresh(self) -> bool:
        """Run every check once and publish the outcome; True when ready."""
        for name, check in self._checks.items():
            try:
                self._results[name] = bool(await check())
            except Exception as exc:  # a check that fails is a check that says no
                _log.warning("readiness check failed", check=name, error=type(exc).__name__)
                self._results[name] = False
        await self._publish()
        return self.ready

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.refresh()

    async def _publish(self) -> None:
        ready = self.ready
        if ready == self._published or self._draining:
            return
        if self._published is not None:
            _log.warning(
                "readiness changed",
                ready=ready,
                failing=[name for name, ok in self._results.items() if not ok],
            )
        status = _SERVING if ready else _NOT_SERVING
        for name in self._services:
            await self._health.set(name, status)
        self._published = ready
