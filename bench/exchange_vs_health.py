"""ExchangeToken (workload token → SA token) throughput relative to health Check, on PostgreSQL.

Starts ``control-plane serve`` against a fresh PostgreSQL database, registers an
agent whose trust policy admits a Kubernetes-style workload token (static JWKS
from the sandbox issuer, RS256), then measures in one run and one client
process ``TokenService/ExchangeToken`` QPS (verify RS256 workload token, match
the policy, sign ES256, record the issued token) and ``Health/Check`` QPS at
c=1 and c=32, and prints the ratios. Target at c=32: ≥ 0.5. Reports, never gates.

    .venv/bin/python bench/exchange_vs_health.py [--seconds 5]
"""

from __future__ import annotations

import asyncio

import grpc
from agentauth.v1 import token_pb2, token_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench._harness import arguments, measure, served_on_postgres
from bench._workload import workload_exchange

TARGET = 0.5


async def _bench(target: str, key: str, seconds: float) -> None:
    fixture = await workload_exchange(target, key)
    async with grpc.aio.insecure_channel(target) as bare:
        tokens = token_pb2_grpc.TokenServiceStub(bare)
        health = health_pb2_grpc.HealthStub(bare)
        exchange = token_pb2.ExchangeTokenRequest(**fixture.fields())
        check = health_pb2.HealthCheckRequest()
        print(f"{'c':>3} {'Exchange QPS':>13} {'Health QPS':>11} {'ratio':>6}")
        for c in (1, 32):
            health_qps = await measure(lambda: health.Check(check), c, seconds)
            exchange_qps = await measure(lambda: tokens.ExchangeToken(exchange), c, seconds)
            ratio = exchange_qps / health_qps
            note = (
                f"  (target >= {TARGET}: {'met' if ratio >= TARGET else 'MISSED'})"
                if c == 32
                else ""
            )
            print(f"{c:>3} {exchange_qps:>13.0f} {health_qps:>11.0f} {ratio:>6.2f}{note}")


def main() -> None:
    args = arguments(__doc__)
    with served_on_postgres(args.database_url) as (target, key):
        print(f"{args.seconds:.0f}s per cell")
        asyncio.run(_bench(target, key, args.seconds))


if __name__ == "__main__":
    main()
