"""Refresh stampede: N concurrent callers × 3 replicas hit one expired Slack account.

Three ``control-plane serve`` processes share one throwaway PostgreSQL database in
sandbox mode against a loopback Slack (single-use rotating refresh tokens). For
N ∈ {2, 50, 500} the access token is expired, then N callers spread over the
replicas call ``RefreshConnectedAccount`` at once. Printed per N: how many
refreshes reached the provider (goal: exactly 1) and the callers' latency over
one uncontended refresh (p50 / p99 / max), measured in the same run.

Run: ``python -m bench.refresh_stampede``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import time

import psycopg
from agentauth import ControlPlaneClient
from agentauth.v1 import admin_pb2 as apb
from agentauth.v1 import connection_pb2 as pb

from bench._harness import arguments, cluster_on_postgres
from control_plane.connectors.loader import load_catalog
from control_plane.sandbox.oauth_provider import SandboxProvider
from tests.api.connect_helpers import browser, consent, finish, start  # the same browser steps

SIZES = (2, 50, 500)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def run(database_url: str) -> None:
    real = load_catalog().connectors["slack"]
    async with SandboxProvider(real, client_id="bench", client_secret="bench-secret-0123") as p:
        env = {"AGENTAUTH_SANDBOX_URL": p.base_url}
        with cluster_on_postgres(database_url, replicas=3, extra_env=env) as (replicas, key):
            db = replicas[0].database_url.replace("postgresql+psycopg://", "postgresql://")
            clients = [ControlPlaneClient(r.target, key, timeout=120) for r in replicas]
            try:
                plat = clients[0]
                org = (
                    await plat.admin.CreateOrganization(
                        apb.CreateOrganizationRequest(
                            organization=apb.Organization(display_name="Stampede")
                        )
                    )
                ).organization.name
                user = (
                    await plat.admin.CreateUser(
                        apb.CreateUserRequest(parent=org, user=apb.User(external_id="u"))
                    )
                ).user.name
                await plat.connections.UpdateConnectorConfig(
                    pb.UpdateConnectorConfigRequest(name=f"{org}/connectors/slack", enabled=True)
                )
                await plat.connections.SetOAuthApp(
                    pb.SetOAuthAppRequest(
                        oauth_app=pb.OAuthApp(
                            name=f"{org}/oauthApps/slack",
                            client_id="bench",
                            client_secret="bench-secret-0123",
                        )
                    )
                )
                acct = (
                    await plat.connections.CreateConnectedAccount(
                        pb.CreateConnectedAccountRequest(
                            parent=org,
                            connected_account=pb.ConnectedAccount(connector="slack", owner=user),
                        )
                    )
                ).connected_account
                link = (
                    await plat.connections.GetAuthorizationLink(
                        pb.GetAuthorizationLinkRequest(name=acct.name)
                    )
                ).url
                async with browser() as b:
                    await finish(b, await consent(b, await start(b, link)))

                def expire() -> None:
                    with psycopg.connect(db, autocommit=True) as conn:
                        conn.execute(
                            "UPDATE connected_accounts SET access_expire_time = %s",
                            (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1),),
                        )

                def refreshes() -> int:
                    return len([t for t in p.issued if t.kind == "access"])

                async def call(i: int) -> float:
                    t0 = time.perf_counter()
                    await clients[i % 3].connections.RefreshConnectedAccount(
                        pb.RefreshConnectedAccountRequest(name=acct.name)
                    )
                    return (time.perf_counter() - t0) * 1e3

                singles = []
                for _ in range(5):  # one uncontended refresh, as the baseline
                    expire()
                    singles.append(await call(0))
                baseline = statistics.median(singles)
                print(f"one uncontended refresh: {baseline:.1f} ms (median of 5)")
                for n in SIZES:
                    expire()
                    before = refreshes()
                    lat = await asyncio.gather(*(call(i) for i in range(n)))
                    count = refreshes() - before
                    added = [x - baseline for x in lat]
                    verdict = "met" if count == 1 else "MISSED"
                    print(
                        f"N={n:>3} x 3 replicas: provider refreshes {count} (goal 1: {verdict}); "
                        f"added latency p50 {statistics.median(added):.1f} ms, "
                        f"p99 {percentile(added, 0.99):.1f} ms, max {max(added):.1f} ms"
                    )
            finally:
                for c in clients:
                    await c.close()


def main() -> None:
    args = arguments(__doc__)
    asyncio.run(run(args.database_url))


if __name__ == "__main__":
    main()
