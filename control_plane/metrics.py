"""Prometheus metrics, one private registry per runtime, scraped at HTTP ``/metrics``.

Every layer reports through this one object, handed to it at construction by the
composition root (:mod:`control_plane.app`). The registry is the runtime's own, not
``prometheus_client``'s global default, so that two servers in one process (the
tests run many) never share or collide on a series.

Under ``serve --workers N`` each worker is a process of its own, and a scrape reaches
whichever one the kernel hands the connection to. The parent therefore gives its
workers one fresh directory (:data:`MULTIPROCESS_DIR_ENV`, prometheus_client's
multiprocess mode): every worker's values live in files there, and any worker's
``/metrics`` answers the sum over all of them, including workers that died and were
replaced (a counter never goes back).

Labels are bounded, operator-controlled vocabularies only: the RPC method or
route, a status code, a connector id and a tool name from the catalog, an outcome
or error class. Never an org id, a principal, a token or any value a caller sent.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

#: Set by the ``--workers`` parent for its workers (read by prometheus_client when it
#: is imported, so only a process started with it set stores its values in files).
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

__all__ = ["CONTENT_TYPE", "MULTIPROCESS_DIR_ENV", "Metrics", "forget_worker"]

#: Seconds: from a cached-key mint (well under a millisecond) to a tool call that
#: waits on a slow provider or a human confirmation.
RPC_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
#: Seconds between a revocation's commit and its delivery to a live watcher.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def forget_worker(directory: str, pid: int) -> None:
    """A worker has exited: its counters and histograms stay in the sum (they only
    ever add up); its live gauges, were there any, would be dropped."""
    mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        #: What ``/metrics`` renders: this runtime's registry, or under ``--workers``
        #: one that reads every worker's files.
        self._exposed = self.registry
        shared = os.environ.get(MULTIPROCESS_DIR_ENV)
        if shared:
            self._exposed = CollectorRegistry(auto_describe=True)
            MultiProcessCollector(self._exposed, path=shared)  # type: ignore[no-untyped-call]
        r = self.registry
        self._rpcs = Counter(
            "agentauth_rpc", "RPCs and HTTP routes handled, by method and status code.",
            ["method", "code"], registry=r,
        )  # fmt: skip
        self._rpc_seconds = Histogram(
            "agentauth_rpc_duration_seconds",
            "Time spent handling an RPC or HTTP route, by method and status code.",
            ["method", "code"], buckets=RPC_BUCKETS, registry=r,
        )  # fmt: skip
        self._rate_limited = Counter(
            "agentauth_rate_limited",
            "Calls refused by the per-org / per-principal / per-address rate limits.",
            ["method"], registry=r,
        )  # fmt: skip
        self._refreshes = Counter(
            "agentauth_refresh",
            "Connected-account token refreshes, by outcome (refreshed, reused, revoked, "
            "error, transient, cancelled, gone).",
            ["connector", "outcome"], registry=r,
        )  # fmt: skip
        self._lease_waits = Counter(
            "agentauth_refresh_lease_waits",
            "Refreshes answered by another holder of the account's refresh lease.",
            ["connector"], registry=r,
        )  # fmt: skip
        self._provider_errors = Counter(
            "agentauth_provider_errors",
            "Provider answers classified as failures, or no answer (error_class "
            "unreachable), by connector and error class.",
            ["connector", "error_class"], registry=r,
        )  # fmt: skip
        self._tool_outcomes = Counter(
            "agentauth_tool_executions",
            "ExecuteTool terminal outcomes, by connector, tool and outcome code.",
            ["connector", "tool", "code"], registry=r,
        )  # fmt: skip
        self._rpc_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}
        self._feed_lag = Histogram(
            "agentauth_revocation_feed_lag_seconds",
            "Age of a revocation when a live WatchRevocations stream delivers it.",
            buckets=LAG_BUCKETS, registry=r,
        )  # fmt: skip

    def observe(self, method: str, code: str, seconds: float) -> None:
        """One handled call (the request pipeline's entry point)."""
        # ``labels()`` costs microseconds a call (argument checks, a lock); the
        # children for a (method, code) pair are looked up once. The pairs are
        # bounded: methods come from the authorization table, codes from gRPC's set.
        children = self._rpc_children.get((method, code))
        if children is None:
            children = (self._rpcs.labels(method, code), self._rpc_seconds.labels(method, code))
            self._rpc_children[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def rate_limited(self, method: str) -> None:
        self._rate_limited.labels(method).inc()

    def refresh(self, connector: str, outcome: str) -> None:
        """One refresh outcome event; ``waited`` is a lease wait, not an attempt."""
        if outcome == "attempt":
            return  # its outcome follows, and is what is counted
        if outcome == "waited":
            self._lease_waits.labels(connector).inc()
        else:
            self._refreshes.labels(connector, outcome).inc()

    def provider_error(self, connector: str, error_class: str) -> None:
        self._provider_errors.labels(connector, error_class).inc()

    def tool_outcome(self, connector: str, tool: str, code: str) -> None:
        self._tool_outcomes.labels(connector, tool, code).inc()

    def feed_lag(self, seconds: float) -> None:
        self._feed_lag.observe(max(0.0, seconds))

    def render(self) -> bytes:
        return generate_latest(self._exposed)
