"""Where an exchange's server time goes: py-spy samples the server while h2load (gRPC)
or wrk (HTTP) drives ``ExchangeToken`` / ``POST /oauth2/token`` at c=32.

Prints the functions with the largest share of samples (inclusive and self), from
py-spy's raw folded stacks (``record -f raw``, no browser needed). Profile before
optimizing: the figures name where to cut.

    python -m bench.profile_exchange [--transport grpc|http] [--seconds 12] [--top 40]
"""

from __future__ import annotations

import asyncio
import collections
import re
from pathlib import Path

from bench._harness import cluster_on_postgres, parser
from bench._load import PY_SPY, h2load_grpc, profiled, raw_stacks, wrk
from bench._workload import workload_exchange
from bench.grpc_vs_http import EXCHANGE, reflected_messages, rpc_outcomes

_FRAME = re.compile(r"(.*) \((.*):\d+\)")


def fold(path: Path, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, n in raw_stacks(path):
        total += n
        names = []
        for frame in frames:
            m = _FRAME.match(frame)
            where = m.group(2).split("site-packages/")[-1].split("control_plane/")[-1] if m else ""
            names.append(f"{m.group(1)} [{where}]" if m else frame)
        for name in set(names):
            inclusive[name] += n
        own[names[-1]] += n
    out = [f"samples: {total}", "inclusive:"]
    out += [f"  {100 * c / total:5.1f}%  {n}" for n, c in inclusive.most_common(top)]
    out.append("self:")
    out += [f"  {100 * c / total:5.1f}%  {n}" for n, c in own.most_common(top // 2)]
    return "\n".join(out)


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--transport", choices=("grpc", "http"), default="grpc")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    with cluster_on_postgres(args.database_url, 1) as (replicas, key):
        server = replicas[0]
        assert server.proc is not None
        fixture = asyncio.run(workload_exchange(server.target, key))
        if args.transport == "grpc":
            request_cls, _ = reflected_messages(server.target, EXCHANGE)
            run = h2load_grpc(
                server.target,
                EXCHANGE,
                request_cls(**fixture.fields()).SerializeToString(),
                rpc_outcomes(server.http, EXCHANGE),
            )
        else:
            run = wrk(server.http + "/oauth2/token", fixture.form(), '"access_token"')
        run(32, 2)  # warm up: keys, caches, prepared statements
        out, load = profiled(server.proc.pid, run, max(4, int(args.seconds)), PY_SPY)
    print(f"{args.transport} exchange at c=32: {load}")
    print(fold(out, args.top))


if __name__ == "__main__":
    main()
