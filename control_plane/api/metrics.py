"""In-process RPC metrics, exposed at HTTP ``/metrics`` in Prometheus text format.

Labels are the method and status code only — never an org, a principal or a value.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass
class _Timing:
    count: int = 0
    seconds: float = 0.0


class Metrics:
    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self.timings: dict[str, _Timing] = defaultdict(_Timing)

    def observe(self, method: str, code: str, seconds: float) -> None:
        self.calls[(method, code)] += 1
        t = self.timings[method]
        t.count += 1
        t.seconds += seconds

    def render(self) -> str:
        lines = [
            "# HELP agentauth_rpc_total RPCs handled, by method and status code.",
            "# TYPE agentauth_rpc_total counter",
        ]
        for (method, code), n in sorted(self.calls.items()):
            lines.append(f'agentauth_rpc_total{{method="{method}",code="{code}"}} {n}')
        lines += [
            "# HELP agentauth_rpc_seconds Time spent handling RPCs.",
            "# TYPE agentauth_rpc_seconds summary",
        ]
        for method, t in sorted(self.timings.items()):
            lines.append(f'agentauth_rpc_seconds_count{{method="{method}"}} {t.count}')
            lines.append(f'agentauth_rpc_seconds_sum{{method="{method}"}} {t.seconds:.6f}')
        return "\n".join(lines) + "\n"
