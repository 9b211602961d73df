"""ExecuteTool against the same sandbox endpoint called directly, and at 1,000 vs 1,000,000
connected accounts.

Two ``control-plane serve`` processes in sandbox mode, each on its own throwaway
PostgreSQL database, point gmail at one loopback :class:`SandboxProvider` (run in a
thread of this process, whose main thread only waits for the load generators while
they run). In each, user ``alice`` connected her gmail account through the hosted
connect flow, and the orchestrator agent O acts for her with a token that
``DelegateToken`` issued (minted afresh for every load run: tokens live 5 minutes).
Connected accounts are then added with bulk SQL up to 1,000 in database A and
1,000,000 in database B: a tenth in the benchmark org (other users, two connectors
each, so the (org, owner kind, owner, connector) index holds many of the org's
users), the rest in other orgs of about 1,000 accounts each.

Measured in one run, in alternating rounds (bench/_load.py: h2load for gRPC, wrk
for HTTP, each a C program in its own process):

1. c=1: ``ToolService/ExecuteTool`` (gmail.list_messages through server A) against
   ``GET .../gmail/v1/users/me/messages`` on the sandbox with the account's live
   access token in hand: p50/p99 of both and the difference (targets: added p50
   <= 1 ms, p99 <= 3 ms);
2. c=32: ExecuteTool calls/s / direct calls/s (target >= 0.35);
3. the provider adding 20 ms to every call (``faults.delay``), c=1: p50 ExecuteTool /
   p50 direct (target <= 1.05);
4. ExecuteTool on server B (1,000,000 accounts) / on server A (1,000): p50 at c=1
   (target <= 1.2); c=32 QPS for information.

Every direct reply must be a 200 carrying the messages; every ExecuteTool call must be
recorded SUCCEEDED in ``tool_actions`` (and none FAILED, none non-OK in ``/metrics``).
Reports, never gates; a run with failed calls says so and exits 1. ``--profile``
then samples server A with py-spy under ExecuteTool load at c=32 and prints where
its time goes.

    python -m bench.execute_tool [--seconds 5] [--rounds 3] [--profile 12]
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
from agentauth.v1 import admin_pb2 as apb
from agentauth.v1 import admin_pb2_grpc, connection_pb2_grpc, token_pb2_grpc, tool_pb2_grpc
from agentauth.v1 import connection_pb2 as cpb
from agentauth.v1 import token_pb2 as tpb
from agentauth.v1 import tool_pb2 as pb
from agentauth.v1 import trust_policy_pb2 as trust
from google.protobuf import struct_pb2

from bench._harness import Replica, cluster_on_postgres, parser
from bench._load import (
    PY_SPY,
    CpuSample,
    Result,
    Run,
    Target,
    alternate,
    database_backends,
    h2load_grpc,
    print_table,
    process_tree,
    profiled,
    raw_stacks,
    verdict,
    wrk,
)
from bench.grpc_vs_http import rpc_outcomes
from bench.profile_exchange import fold
from control_plane.connectors.loader import load_catalog
from control_plane.sandbox import KubernetesIssuer
from control_plane.sandbox.oauth_provider import SandboxProvider
from tests.api.connect_helpers import browser, consent, finish, start  # the same browser steps

EXECUTE = "/agentauth.v1.ToolService/ExecuteTool"
TOOL = "gmail.list_messages"
ARGUMENTS = {"maxResults": 10}
LIST_URL = "https://gmail.googleapis.com/gmail/v1/users/me/messages"
#: What the provider answers (Gmail's shape: ten ids and an estimate).
MESSAGES = {
    "messages": [{"id": f"18c{i:013x}", "threadId": f"18c{i:013x}"} for i in range(10)],
    "resultSizeEstimate": 10,
}
TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-client-secret-0123"
ADDED_P50, ADDED_P99, QPS_RATIO, SLOW_RATIO, SCALE_RATIO = 1.0, 3.0, 0.35, 1.05, 1.2
SLOW_UPSTREAM = 0.02


# -- the provider, in a thread of its own -----------------------------------------------


@contextmanager
def provider_thread() -> Iterator[SandboxProvider]:
    """The sandbox gmail, served by an event loop in a thread of this process."""
    provider = SandboxProvider(
        load_catalog().connectors["gmail"], client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    provider.responses[TOOL] = MESSAGES
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sandbox-provider", daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(provider.start(), loop).result(30)
        yield provider
    finally:
        asyncio.run_coroutine_threadsafe(provider.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def live_access_token(provider: SandboxProvider) -> str:
    """The provider's last issued access token that is still live."""
    for token in reversed(provider.issued):
        if token.kind == "access" and provider.token_state(token.value) == "live":
            return token.value
    raise RuntimeError("the provider issued no live access token")


def proxied(provider: SandboxProvider) -> int:
    """Tool calls that reached the provider from agentauth's HTTP client, which sends a
    User-Agent (wrk sends none)."""
    return sum(1 for r in provider.requests if any(k.lower() == "user-agent" for k in r.headers))


def own_cpu() -> CpuSample:
    """This process (the provider's thread; the main thread waits meanwhile)."""
    return {os.getpid(): time.process_time()}


# -- one org on one server: alice's gmail, the orchestrator acting for her ---------------


@dataclass
class World:
    server: Replica
    org: str
    user: str
    agent: str
    k8s: KubernetesIssuer

    def mint(self) -> str:
        """A fresh delegated token (alice → O, ``tools:gmail.list_messages``)."""
        with grpc.insecure_channel(self.server.target) as channel:
            tokens = token_pb2_grpc.TokenServiceStub(channel)
            backend = tokens.ExchangeToken(
                tpb.ExchangeTokenRequest(
                    grant_type=TOKEN_EXCHANGE,
                    subject_token=self.k8s.issue(
                        namespace="agents", service_account="backend", audiences=["agentauth"]
                    ),
                    subject_token_type=JWT_TYPE,
                    organization=self.org,
                ),
                timeout=30,
            ).access_token
            return str(
                tokens.DelegateToken(
                    tpb.DelegateTokenRequest(
                        user=self.user,
                        agent=self.agent,
                        scope=f"tools:{TOOL}",
                        audience=[self.server.http],
                    ),
                    metadata=(("authorization", f"Bearer {backend}"),),
                    timeout=30,
                ).access_token
            )

    def headers(self) -> list[str]:
        return [f"authorization: Bearer {self.mint()}"]

    def org_id(self) -> str:
        return self.org.split("/")[1]

    def user_id(self) -> str:
        return self.user.rsplit("/", 1)[1]


def request() -> pb.ExecuteToolRequest:
    args = struct_pb2.Struct()
    args.update(ARGUMENTS)
    return pb.ExecuteToolRequest(tool=TOOL, arguments=args)


def build_world(server: Replica, key: str, k8s: KubernetesIssuer) -> World:
    """Creates the org through the admin API and connects alice's gmail like a browser."""
    auth = (("authorization", f"Bearer {key}"),)
    with grpc.insecure_channel(server.target) as channel:
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        conns = connection_pb2_grpc.ConnectionServiceStub(channel)
        org = admin.CreateOrganization(
            apb.CreateOrganizationRequest(organization=apb.Organization(display_name="bench")),
            metadata=auth,
        ).organization.name
        user = admin.CreateUser(
            apb.CreateUserRequest(parent=org, user=apb.User(external_id="alice")), metadata=auth
        ).user.name
        sa = (
            admin.ListServiceAccounts(apb.ListServiceAccountsRequest(parent=org), metadata=auth)
            .service_accounts[0]
            .name
        )
        agents = {}
        for name, scopes in (("backend", []), ("O", [f"tools:{TOOL}"])):
            agents[name] = admin.RegisterAgent(
                apb.RegisterAgentRequest(parent=org, agent=apb.Agent(display_name=name)),
                metadata=auth,
            ).agent.name
            admin.CreateTrustPolicy(
                apb.CreateTrustPolicyRequest(
                    parent=agents[name],
                    trust_policy=trust.TrustPolicy(
                        kind=trust.TRUST_POLICY_KIND_WORKLOAD_TOKEN,
                        issuer=k8s.issuer,
                        jwks_json=json.dumps(k8s.jwks()),
                        audience="agentauth",
                        subject=f"system:serviceaccount:agents:{name.lower()}",
                        service_accounts=[sa],
                        scopes=scopes,
                        audiences=[server.http],
                    ),
                ),
                metadata=auth,
            )
        conns.UpdateConnectorConfig(
            cpb.UpdateConnectorConfigRequest(name=f"{org}/connectors/gmail", enabled=True),
            metadata=auth,
        )
        conns.SetOAuthApp(
            cpb.SetOAuthAppRequest(
                oauth_app=cpb.OAuthApp(
                    name=f"{org}/oauthApps/gmail", client_id=CLIENT_ID, client_secret=CLIENT_SECRET
                )
            ),
            metadata=auth,
        )
        account = conns.CreateConnectedAccount(
            cpb.CreateConnectedAccountRequest(
                parent=org, connected_account=cpb.ConnectedAccount(connector="gmail", owner=user)
            ),
            metadata=auth,
        ).connected_account
        link = conns.GetAuthorizationLink(
            cpb.GetAuthorizationLinkRequest(name=account.name), metadata=auth
        ).url

    async def connect() -> None:
        async with browser() as b:
            status, _ = await finish(b, await consent(b, await start(b, link)))
            assert status == 200, status

    asyncio.run(connect())
    return World(server, org, user, agents["O"], k8s)


def call_once(world: World) -> list[str]:
    """The event kinds of one ExecuteTool stream (a check that the world works)."""
    with grpc.insecure_channel(world.server.target) as channel:
        stub = tool_pb2_grpc.ToolServiceStub(channel)
        stream = stub.ExecuteTool(
            request(), metadata=(("authorization", f"Bearer {world.mint()}"),), timeout=30
        )
        kinds = [str(m.WhichOneof("event")) for m in stream]
    return kinds


# -- connected accounts in bulk ----------------------------------------------------------

_ORGS = """
INSERT INTO organizations (id, display_name, state, create_time, update_time)
SELECT md5('bulk-org-' || g), 'bulk ' || g, 'ACTIVE', now(), now()
FROM generate_series(1, %(orgs)s) g
"""
# A tenth in the benchmark org: users of two accounts each (gmail, slack or github);
# the rest in the other orgs, ~1,000 each. The sealed secret is ~ the size of a real one.
_ACCOUNTS = """
INSERT INTO connected_accounts (
    org_id, id, connector_id, owner_kind, owner_id, label, is_default, state, state_reason,
    connection_params, granted_scopes, provider_metadata, secret, secret_version,
    api_key_hint, access_expire_time, create_time, update_time, state_change_time)
SELECT
    CASE WHEN g <= %(same)s THEN %(org)s ELSE md5('bulk-org-' || (1 + g %% %(orgs)s)) END,
    md5('bulk-account-' || g),
    (ARRAY['gmail', 'slack', 'github'])[1 + g %% 3],
    'users', md5('bulk-user-' || (g / 2)), 'bulk', true, 'ACTIVE', '',
    '{}', '["https://www.googleapis.com/auth/gmail.readonly"]', '{}',
    decode(repeat(md5(g::text), 12), 'hex'), 1, '',
    now() + interval '1 hour', now(), now(), now()
FROM generate_series(1, %(extra)s) g
"""


def add_accounts(world: World, total: int) -> str:
    """Brings ``connected_accounts`` to ``total`` rows (as the table owner) and analyzes it."""
    url = world.server.database_url.replace("postgresql+psycopg://", "postgresql://")
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        (have,) = conn.execute("SELECT count(*) FROM connected_accounts").fetchone() or (0,)
        extra = total - have
        same = extra // 10
        orgs = max(1, (extra - same) // 1000)
        conn.execute(_ORGS, {"orgs": orgs})
        conn.execute(_ACCOUNTS, {"same": same, "org": world.org_id(), "orgs": orgs, "extra": extra})
        conn.execute("VACUUM ANALYZE connected_accounts")
        (rows,) = conn.execute("SELECT count(*) FROM connected_accounts").fetchone() or (0,)
        (in_org,) = conn.execute(
            "SELECT count(*) FROM connected_accounts WHERE org_id = %s", (world.org_id(),)
        ).fetchone() or (0,)
        (size,) = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('connected_accounts'))"
        ).fetchone() or ("",)
        elapsed = time.perf_counter() - t0
        # The plan of the server's lookup, as the server's role sees it (RLS applies).
        with conn.transaction():
            conn.execute('SET LOCAL ROLE "agentauth_app"')
            conn.execute("SELECT set_config('app.org_id', %s, true)", (world.org_id(),))
            plan = conn.execute(
                "EXPLAIN (COSTS OFF) SELECT * FROM connected_accounts WHERE org_id = %s"
                " AND owner_kind = 'users' AND owner_id = %s AND connector_id = 'gmail'",
                (world.org_id(), world.user_id()),
            ).fetchall()
    return (
        f"{rows:,} accounts ({in_org:,} in the benchmark org, the rest in {orgs:,} other "
        f"orgs), {size} with indexes, {elapsed:.1f}s; the account lookup's plan: "
        + " / ".join(" ".join(str(r[0]).split()) for r in plan)
    )


def tool_outcomes(world: World) -> Callable[[], tuple[int, int]]:
    """(ExecuteTool calls recorded SUCCEEDED, FAILED ones plus non-OK statuses)."""
    url = world.server.database_url.replace("postgresql+psycopg://", "postgresql://")
    conn = psycopg.connect(url, autocommit=True)
    statuses = rpc_outcomes(world.server.http, EXECUTE)

    def outcomes() -> tuple[int, int]:
        rows: dict[str, int] = dict(
            conn.execute("SELECT state, count(*) FROM tool_actions GROUP BY state").fetchall()
        )
        _, not_ok = statuses()
        return int(rows.get("SUCCEEDED", 0)), int(rows.get("FAILED", 0)) + not_ok

    return outcomes


def execute_tool(world: World) -> Run:
    return h2load_grpc(
        world.server.target,
        EXECUTE,
        request().SerializeToString(),
        tool_outcomes(world),
        world.headers,
    )


def server_cpu(world: World) -> Callable[[], CpuSample]:
    assert world.server.proc is not None
    return process_tree(world.server.proc.pid)


# -- the run ------------------------------------------------------------------------------


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--rounds", type=int, default=3, help="rounds per target and concurrency")
    ap.add_argument("--small", type=int, default=1_000, help="connected accounts in database A")
    ap.add_argument("--large", type=int, default=1_000_000, help="... in database B")
    ap.add_argument(
        "--profile", type=float, default=0, help="then py-spy server A for this many seconds"
    )
    ap.add_argument(
        "--py-spy",
        default=PY_SPY,
        help="the py-spy executable (default: on PATH, else next to this Python)",
    )
    ap.add_argument(
        "--pg-log",
        type=Path,
        default=Path("/var/log/postgresql/postgresql-15-main.log"),
        help="PostgreSQL's server log, read to trace one call's statements ('' to skip)",
    )
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    k8s = KubernetesIssuer(issuer="https://kubernetes.default.svc")
    with ExitStack() as stack:
        provider = stack.enter_context(provider_thread())
        env = {"AGENTAUTH_SANDBOX_URL": provider.base_url}
        (a,), key_a = stack.enter_context(cluster_on_postgres(args.database_url, 1, extra_env=env))
        (b,), key_b = stack.enter_context(cluster_on_postgres(args.database_url, 1, extra_env=env))
        small, large = build_world(a, key_a, k8s), build_world(b, key_b, k8s)
        for name, world in (("A", small), ("B", large)):
            print(f"server {name}: one ExecuteTool call streams {call_once(world)}")
        print(f"database A: {add_accounts(small, args.small)}")
        print(f"database B: {add_accounts(large, args.large)}")
        token = live_access_token(provider)
        direct_url = provider.sandbox_url(LIST_URL) + "?maxResults=10"
        direct = Target(
            "direct GET (sandbox)",
            wrk(direct_url, expect='"messages"', headers=[f"Authorization: Bearer {token}"]),
            own_cpu,
        )
        via_a = Target(
            f"ExecuteTool, {args.small:,} accounts",
            execute_tool(small),
            server_cpu(small),
            database_backends(small.server.database_url),
        )
        via_b = Target(
            f"ExecuteTool, {args.large:,} accounts",
            execute_tool(large),
            server_cpu(large),
            database_backends(large.server.database_url),
        )
        print(
            f"server: control-plane serve (Python {sys.version.split()[0]}, one process each) "
            "on PostgreSQL; provider: SandboxProvider (aiohttp) in a thread of this process"
        )
        print(
            f"load: h2load (gRPC, h2c) and wrk (HTTP/1.1), closed loop; {args.rounds} "
            f"alternating rounds of {args.seconds:.0f}s per target"
        )
        print("\n1-2. ExecuteTool (server A) vs the endpoint called directly")
        recorded = tool_outcomes(small)
        before = proxied(provider), recorded()[0]
        fast, busy_fast = alternate([via_a, direct], (1, 32), args.rounds, args.seconds)
        print(
            "provider requests from agentauth per ExecuteTool recorded SUCCEEDED: "
            f"{(proxied(provider) - before[0]) / max(1, recorded()[0] - before[1]):.3f}"
        )
        print(f"\n3. the provider adds {SLOW_UPSTREAM * 1e3:.0f} ms to every call")
        provider.faults.delay = SLOW_UPSTREAM
        slow, busy_slow = alternate([via_a, direct], (1,), args.rounds, args.seconds)
        provider.faults.delay = 0.0
        print(f"\n4. ExecuteTool with {args.large:,} vs {args.small:,} connected accounts")
        scale, busy_scale = alternate([via_a, via_b], (1, 32), args.rounds, args.seconds)
        trace = (
            trace_statements(small, args.pg_log)
            if str(args.pg_log) and args.pg_log.is_file()
            else ""
        )
        profile = (
            run_profile(a, execute_tool(small), args.profile, args.py_spy) if args.profile else ""
        )
    print()
    print_table(fast)
    print_table(slow)
    print_table(scale)
    print()
    report(fast, slow, scale, (busy_fast, busy_slow, busy_scale), via_a.name, via_b.name)
    if trace:
        print(f"\nwhat one ExecuteTool call sends to PostgreSQL (server A):\n{trace}")
    if profile:
        print(f"\nwhere server A's time goes under ExecuteTool at c=32:\n{profile}")
    print(f"machine: load average {os.getloadavg()[0]:.2f} at the end")
    if any(r.failures for r in (*fast.values(), *slow.values(), *scale.values())):
        print("THIS RUN HAD FAILED CALLS: its figures are not valid")
        raise SystemExit(1)


def report(
    fast: dict[tuple[str, int], Result],
    slow: dict[tuple[str, int], Result],
    scale: dict[tuple[str, int], Result],
    busy: tuple[float, float, float],
    tool: str,
    big: str,
) -> None:
    direct = "direct GET (sandbox)"
    t1, d1 = fast[(tool, 1)], fast[(direct, 1)]
    added50, added99 = t1.p50_ms - d1.p50_ms, t1.p99_ms - d1.p99_ms
    print(
        f"1. c=1: ExecuteTool p50 {t1.p50_ms:.2f} ms, p99 {t1.p99_ms:.2f} ms; direct p50 "
        f"{d1.p50_ms:.2f} ms, p99 {d1.p99_ms:.2f} ms; added p50 {added50:.2f} ms (target <= "
        f"{ADDED_P50:g}: {verdict(added50, ADDED_P50, False, busy[0])}), added p99 "
        f"{added99:.2f} ms (target <= {ADDED_P99:g}: {verdict(added99, ADDED_P99, False, busy[0])})"
    )
    t32, d32 = fast[(tool, 32)], fast[(direct, 32)]
    ratio = t32.qps / d32.qps
    print(
        f"2. c=32: ExecuteTool {t32.qps:.0f} calls/s / direct {d32.qps:.0f} calls/s = "
        f"{ratio:.4f} (target >= {QPS_RATIO}: {verdict(ratio, QPS_RATIO, True, busy[0])}); "
        f"server A CPU {t32.server_ms_per_call:.3f} ms + PostgreSQL "
        f"{t32.database_ms_per_call:.3f} ms per call, provider {d32.server_ms_per_call:.3f} ms "
        "per direct call"
    )
    ts, ds = slow[(tool, 1)], slow[(direct, 1)]
    ratio = ts.p50_ms / ds.p50_ms
    print(
        f"3. upstream +{SLOW_UPSTREAM * 1e3:.0f} ms, c=1: p50 ExecuteTool {ts.p50_ms:.2f} ms / "
        f"direct {ds.p50_ms:.2f} ms = {ratio:.3f} (target <= {SLOW_RATIO}: "
        f"{verdict(ratio, SLOW_RATIO, False, busy[1])}); p99 {ts.p99_ms:.2f} / {ds.p99_ms:.2f} ms"
    )
    s1, b1 = scale[(tool, 1)], scale[(big, 1)]
    ratio = b1.p50_ms / s1.p50_ms
    s32, b32 = scale[(tool, 32)], scale[(big, 32)]
    print(
        f"4. c=1 p50 {big} {b1.p50_ms:.2f} ms / {tool} {s1.p50_ms:.2f} ms = {ratio:.2f} "
        f"(target <= {SCALE_RATIO}: {verdict(ratio, SCALE_RATIO, False, busy[2])}); c=32 QPS "
        f"{b32.qps:.0f} / {s32.qps:.0f} = {b32.qps / s32.qps:.2f}; PostgreSQL CPU per call "
        f"{b32.database_ms_per_call:.3f} / {s32.database_ms_per_call:.3f} ms"
    )


_LAYERS = (
    ("psycopg", "psycopg (driver; libpq sends)"),
    ("sqlalchemy", "SQLAlchemy (ORM, sessions, greenlets)"),
    ("greenlet", "SQLAlchemy (ORM, sessions, greenlets)"),
    ("grpc", "grpc"),
    ("aiohttp", "aiohttp (upstream client)"),
    ("yarl", "aiohttp (upstream client)"),
    ("multidict", "aiohttp (upstream client)"),
    ("agentauth/", "agentauth SDK (token verification)"),
    ("cryptography", "cryptography"),
    ("google/protobuf", "protobuf"),
    ("control_plane/", "control_plane (our own code)"),
)


def layers(path: Path) -> str:
    """Samples by the innermost frame that is not the standard library: which layer
    the CPU was in. (py-spy cannot follow SQLAlchemy's greenlet switches, so a
    statement's stack often starts inside SQLAlchemy: inclusive shares of our own
    functions understate the database work they cause. And py-spy samples a thread
    that is runnable but descheduled as busy: on a loaded 2-core machine a libpq
    send that wakes a PostgreSQL backend shows more than its CPU.)"""
    where = re.compile(r"\((.*?):\d+\)")
    shares: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, n in raw_stacks(path):
        total += n
        layer = "native code outside any Python frame"
        for frame in reversed(frames):
            found = where.search(frame)
            file = found.group(1) if found else ""
            if file.endswith("control_plane/cli.py"):  # the loop itself, under `serve`
                layer = "event loop: asyncio and grpc.aio's Cython/C-core callbacks"
                break
            hit = next((name for key, name in _LAYERS if key in file), None)
            if hit:
                layer = hit
                break
        shares[layer] += n
    return "\n".join(f"  {100 * n / total:5.1f}%  {name}" for name, n in shares.most_common())


def settle(world: World, calls: int = 12) -> None:
    """Calls until the server's pool has replaced the connections we closed (a call
    on a dead pooled link fails once)."""
    for _ in range(calls):
        try:
            call_once(world)
        except grpc.RpcError:
            time.sleep(0.1)


def trace_statements(world: World, pg_log: Path, calls: int = 10) -> str:
    """What ``calls`` ExecuteTool calls send to PostgreSQL, from the server's log with
    ``log_statement = all`` set on the benchmark's database (its pooled connections
    are closed so that new ones pick the setting up; it is reset after)."""
    url = world.server.database_url.replace("postgresql+psycopg://", "postgresql://")
    name = url.rsplit("/", 1)[1]
    marker = f"bench-trace-{os.getpid()}-{time.monotonic_ns()}"

    def mark(where: str) -> None:  # a new session: it logs with the database's setting
        with psycopg.connect(url, autocommit=True) as logged:
            logged.execute("SELECT %s", (f"{marker}-{where}",))

    with psycopg.connect(url, autocommit=True) as conn:

        def reconnect_all() -> None:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )

        conn.execute(f"ALTER DATABASE \"{name}\" SET log_statement = 'all'")
        reconnect_all()
        try:
            settle(world)
            token = world.mint()
            mark("start")
            with grpc.insecure_channel(world.server.target) as channel:
                stub = tool_pb2_grpc.ToolServiceStub(channel)
                auth = (("authorization", f"Bearer {token}"),)
                for _ in range(calls):
                    for _message in stub.ExecuteTool(request(), metadata=auth, timeout=30):
                        pass
            time.sleep(0.5)
            mark("end")
        finally:
            conn.execute(f'ALTER DATABASE "{name}" RESET log_statement')
            reconnect_all()
            settle(world)
    text = pg_log.read_text(errors="replace")
    body = text[text.find(marker + "-start") : text.find(marker + "-end")]
    # One entry per line that starts with a timestamp; a statement's later lines
    # follow it (tab-indented).
    entries = re.split(r"\n(?=\d{4}-\d\d-\d\d )", body)
    head = re.compile(r"@" + re.escape(name) + r" LOG:  (?:statement|execute [^:]*): (.*)", re.S)
    statements = [
        " ".join(m.group(1).split())
        for entry in entries
        if (m := head.search(entry)) and " ".join(m.group(1).split()) != "SELECT $1"  # markers
    ]
    kinds: dict[str, int] = {}
    for sql in statements:
        words = sql.split()
        kind = words[0].upper() if words else "?"
        if kind in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
            table = re.search(r"(?:FROM|INTO|UPDATE)\s+(\w+)", sql, re.I)
            kind = f"{kind} {table.group(1) if table else ''}".strip()
            if "set_config" in sql:
                kind = "SELECT set_config (the org scope)"
        kinds[kind] = kinds.get(kind, 0) + 1
    ordered = sorted(kinds.items(), key=lambda x: -x[1])
    lines = [f"  {n / calls:4.1f}  {kind}" for kind, n in ordered]
    return (
        f"{len(statements) / calls:.1f} statements per call (mean of {calls}), by kind:\n"
        + "\n".join(lines)
    )


def run_profile(server: Replica, run: Run, seconds: float, spy: str) -> str:
    """py-spy samples ``server`` (raw folded stacks) while ``run`` drives it at c=32."""
    assert server.proc is not None
    whole = max(4, int(seconds))
    flags = ("--nonblocking", "--threads")
    out, load = profiled(server.proc.pid, run, whole, spy, flags, "execute-tool-profile-")
    calls = load.requests
    samples = sum(n for _, n in raw_stacks(out))
    return (
        f"{calls} calls in {whole}s under py-spy (250 Hz, --nonblocking), "
        f"{1e3 * samples / 250 / max(1, calls):.1f} ms of non-idle samples per call, "
        f"{load.failures} failed; raw stacks kept in {out}\n"
        f"by layer (innermost non-stdlib frame):\n{layers(out)}\n" + fold(out, 40)
    )


if __name__ == "__main__":
    main()
