"""Composition root: builds storage, the barrier, keys, services and both servers.

One process runs the ``grpc.aio`` server and the aiohttp app on one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
import grpc
from agentauth.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    connection_pb2,
    connection_pb2_grpc,
    token_pb2,
    token_pb2_grpc,
    tool_pb2,
    tool_pb2_grpc,
)
from aiohttp import web
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from control_plane.api import reflection_v1
from control_plane.api.admin_servicer import AdminServicer
from control_plane.api.authn import Authentication
from control_plane.api.authz import ROUTES, RULES, max_receive_bytes
from control_plane.api.connect_http import ConnectPages
from control_plane.api.connection_servicer import ConnectionServicer
from control_plane.api.grpc_pipeline import PipelineInterceptor
from control_plane.api.http import build_http_app
from control_plane.api.oauth_http import add_oauth_routes
from control_plane.api.pipeline import Pipeline
from control_plane.api.readiness import Readiness
from control_plane.api.token_servicer import TokenServicer
from control_plane.api.tool_servicer import ToolServicer
from control_plane.audit.hook import AuditSink, LogAuditSink, ToolActionAudit
from control_plane.clock import Clock, SystemClock
from control_plane.config import Settings, parse_listen
from control_plane.connectors.dev_loopback import SWITCH as DEV_LOOPBACK_SWITCH
from control_plane.connectors.loader import Catalog, ConnectorDefinitionError, load_catalog
from control_plane.connectors.sandbox_routing import rewrite_for_sandbox
from control_plane.domain.trust import is_loopback
from control_plane.logs import get_logger
from control_plane.metrics import Metrics
from control_plane.net.guarded_http import FetchBudget, GuardedHttp
from control_plane.services.agents import AgentService
from control_plane.services.api_keys import ApiKeyService
from control_plane.services.connect_flow import ConnectFlow
from control_plane.services.connected_accounts import AccountWatch, ConnectedAccountService
from control_plane.services.connectors import ConnectorConfigService
from control_plane.services.context import ServiceContext
from control_plane.services.delegation import DelegationRuleService
from control_plane.services.developer_secrets import DeveloperSecretService
from control_plane.services.external_keys import IssuerKeyCache
from control_plane.services.grants.base import Grant
from control_plane.services.grants.client_credentials import ClientCredentialsPrivateKeyJwt
from control_plane.services.grants.registry import TokenEndpoint
from control_plane.services.grants.sub_delegation import SubDelegation
from control_plane.services.grants.trusted_backend import TrustedBackendDelegation
from control_plane.services.grants.user_assertion import UserAssertion
from control_plane.services.grants.workload_exchange import WorkloadTokenExchange
from control_plane.services.identity import IdentityDirectory
from control_plane.services.identity_providers import IdentityProviderService
from control_plane.services.oauth_apps import OAuthAppService
from control_plane.services.organizations import OrganizationService, OrganizationSettings
from control_plane.services.own_tokens import OwnTokens
from control_plane.services.rate_limiter import RateLimiter, organization_limits
from control_plane.services.revocation import BulkRevocation, RevocationWatch
from control_plane.services.service_accounts import ServiceAccountService
from control_plane.services.tool_accounts import ConnectLinks
from control_plane.services.tool_confirmations import ToolConfirmations
from control_plane.services.tool_execution import ToolExecutor
from control_plane.services.tool_listing import ToolListingService
from control_plane.services.tool_policies import ToolPolicies
from control_plane.services.trust_policies import TrustPolicyService
from control_plane.services.users import UserService
from control_plane.storage.db import Database, unreachable_reason
from control_plane.storage.deadline import DbTimeouts
from control_plane.storage.migrate import current_revision, head_revision, upgrade
from control_plane.tokens.keys import SigningKeyManager
from control_plane.tokens.minting import Minter
from control_plane.tokens.revocation_feed import RevocationFeed
from control_plane.tracing import Tracing
from control_plane.vault.accounts import AccountVault
from control_plane.vault.barrier import Barrier
from control_plane.vault.credentials import DeveloperSecrets, OAuthApps
from control_plane.vault.keepalive import KeepAlive
from control_plane.vault.kek import EnvKekProvider, FileKekProvider, KekProvider
from control_plane.vault.refresh import DRAIN_TIMEOUT as REFRESH_DRAIN_SECONDS
from control_plane.vault.refresh import RefreshCoordinator
from control_plane.vault.upstream import Upstream

log = get_logger("agentauth.server")
SERVICE_NAMES = (
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    token_pb2.DESCRIPTOR.services_by_name["TokenService"].full_name,
    connection_pb2.DESCRIPTOR.services_by_name["ConnectionService"].full_name,
    tool_pb2.DESCRIPTOR.services_by_name["ToolService"].full_name,
)


class StartupError(RuntimeError):
    """The server must not start; the message says why and what to do."""


@dataclass(frozen=True)
class Runtime:
    """What every entry point (serve, the CLI's maintenance commands) shares.

    Built once by :func:`open_runtime`, in dependency order; nothing is set on it
    afterwards.
    """

    settings: Settings
    db: Database
    barrier: Barrier
    keys: SigningKeyManager
    clock: Clock
    audit: AuditSink
    catalog: Catalog
    directory: IdentityDirectory
    feed: RevocationFeed
    services: ServiceContext
    metrics: Metrics
    limiter: RateLimiter
    tracing: Tracing

    async def close(self) -> None:
        await self.limiter.close()
        await self.db.dispose()
        # Flushing buffered spans may wait on the collector (the exporter's own
        # timeout bounds it): in a thread, so the loop's other shutdown work runs.
        await asyncio.to_thread(self.tracing.shutdown)


async def migrate(url: str) -> None:
    """``control-plane migrate`` (and the embedded database's own upgrade): a
    database that cannot be reached is one line saying why, never a traceback."""
    try:
        await upgrade(url)
    except Exception as exc:
        reason = unreachable_reason(exc)
        if reason is None:
            raise
        raise StartupError(f"database unreachable: {reason}") from None


async def prepare_database(settings: Settings) -> Database:
    """Embedded SQLite migrates itself; PostgreSQL must have been migrated by an operator."""
    url = settings.effective_database_url
    if settings.embedded:
        try:
            settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StartupError(
                f"cannot create the data directory {settings.data_dir}: {exc.strerror}"
            ) from None
        await migrate(url)
    timeouts = DbTimeouts(
        settings.db_connect_timeout, settings.db_pool_timeout, settings.db_statement_timeout
    )
    db = Database(url, timeouts=timeouts)
    try:
        revision = await current_revision(db)
    except Exception as exc:
        await db.dispose()
        reason = unreachable_reason(exc) or f"connection failed ({type(exc).__name__})"
        raise StartupError(f"database unreachable: {reason}") from None
    if revision != head_revision():
        await db.dispose()
        raise StartupError(
            f"database schema is at {revision or 'nothing'}, expected {head_revision()}: "
            "run `control-plane migrate` first"
        )
    return db


def kek_provider(settings: Settings, *, may_create: bool) -> KekProvider:
    if settings.kek_kind == "env":
        value = os.environ.get("AGENTAUTH_KEK", "")
        if not value:
            raise StartupError("AGENTAUTH_KEK_PROVIDER=env but AGENTAUTH_KEK is not set")
        return EnvKekProvider(value)
    if settings.kek_kind != "file":
        raise StartupError(f"unknown KEK provider {settings.kek_kind!r} (use 'file' or 'env')")
    path: Path = settings.kek_file
    if path.exists():
        return FileKekProvider(path)
    if not may_create:
        raise StartupError(
            f"KEK file {path} is missing but the database holds sealed data; "
            "restore the KEK file (without it nothing can be decrypted)"
        )
    provider = FileKekProvider.create(path)
    log.warning("created development KEK file", path=str(path), mode="0600")
    return provider


async def database_initialized(db: Database) -> bool:
    """True once the platform data key exists: from then on the KEK must already exist."""
    async with db.platform_tx() as tx:
        return await tx.deks.get(None) is not None


async def open_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    audit: AuditSink | None = None,
    tracing: Tracing | None = None,
    existing_only: str = "",
) -> Runtime:
    """Open (and on a first start, create) the database, KEK and signing keys.

    ``existing_only`` names a command that only looks at what exists (``keys
    list``): it then creates nothing — no data directory, database, KEK file or
    signing key — and says there is nothing to look at instead.
    """
    clock = clock or SystemClock()
    catalog = load_connectors(settings)  # a bad definition stops start-up before anything else
    nothing = f"nothing to {existing_only}: "
    if existing_only and settings.embedded and not settings.embedded_database.exists():
        raise StartupError(
            f"{nothing}no database at {settings.embedded_database} "
            "(pass the --data-dir or --database-url the server uses)"
        )
    db = await prepare_database(settings)
    try:
        fresh = not await database_initialized(db)
        if existing_only and fresh:
            raise StartupError(
                f"{nothing}this database holds no keys yet (no server started on it)"
            )
        kek = kek_provider(settings, may_create=fresh)
        barrier = Barrier(db, kek, clock=clock)
        try:
            await barrier.initialize(allow_create=fresh)
        except Exception as exc:
            raise StartupError(
                f"the KEK cannot open this database's keys ({type(exc).__name__}): "
                "wrong or missing KEK; refusing to start"
            ) from None
        keys = SigningKeyManager(
            db,
            barrier,
            clock=clock,
            algorithm="EdDSA" if settings.signing_algorithm == "EdDSA" else "ES256",
            jwks_cache_ttl=settings.jwks_cache_ttl,
            max_token_ttl=settings.max_token_ttl,
            publish_lag=dt.timedelta(seconds=settings.key_reload_seconds),
        )
        await keys.load()
        if not existing_only:
            await keys.ensure_initial_key()
    except BaseException:
        await db.dispose()
        raise
    directory = IdentityDirectory(db)
    defaults = settings.rate_limit_defaults
    limiter = RateLimiter(db, clock, defaults, organization_limits(db, defaults))

    def forget(org_id: str) -> None:
        directory.invalidate(org_id)
        limiter.limits_changed(org_id)

    # Identity and settings changes (agents, policies, limits) drop what this replica
    # caches of the org at once and, through the feed's NOTIFY, on every other replica.
    feed = RevocationFeed(db, on_identity_changed=forget)

    def identity_changed(org_id: str) -> None:
        forget(org_id)
        feed.identity_changed(org_id)

    services = ServiceContext(db, barrier, clock, identity_changed)
    return Runtime(
        settings,
        db,
        barrier,
        keys,
        clock,
        audit or LogAuditSink(),
        catalog,
        directory,
        feed,
        services,
        Metrics(),
        limiter,
        tracing or Tracing.from_endpoint(settings.otlp_endpoint),
    )


def load_connectors(settings: Settings) -> Catalog:
    if settings.dev_loopback_connectors:
        # Development is the embedded SQLite database: one process on one machine.
        # A deployment on PostgreSQL is shared, and a connector talking plain http to
        # whatever listens on its loopback would be a quiet hole there.
        if not settings.embedded:
            raise StartupError(
                f"{DEV_LOOPBACK_SWITCH}=1 is for development only (the embedded SQLite "
                "database); unset it or AGENTAUTH_DATABASE_URL"
            )
        log.warning("development: connector definitions may name http loopback URLs")
    try:
        catalog = load_catalog(
            Path(settings.connectors_dir) if settings.connectors_dir else None,
            dev_loopback=settings.dev_loopback_connectors,
        )
    except ConnectorDefinitionError as exc:
        raise StartupError(str(exc)) from None
    if settings.sandbox_url:
        host = urlsplit(settings.sandbox_url).hostname or ""
        if not is_loopback(host):
            raise StartupError("AGENTAUTH_SANDBOX_URL must point at a loopback address")
        log.warning("sandbox mode: every connector talks to", sandbox=settings.sandbox_url)
        base = settings.sandbox_url.rstrip("/")
        catalog = Catalog(
            {cid: rewrite_for_sandbox(c, base) for cid, c in catalog.connectors.items()}
        )
    return catalog


@dataclass
class TokenStack:
    """The token side of the server, built once the issuer URL is known."""

    issuer: str
    http: aiohttp.ClientSession
    #: the one client for URLs that orgs configure (SSRF guard, per-org budget)
    outbound: GuardedHttp
    directory: IdentityDirectory
    issuer_keys: IssuerKeyCache
    minter: Minter
    endpoint: TokenEndpoint
    own_tokens: OwnTokens
    api_keys: ApiKeyService
    rules: DelegationRuleService
    delegation: TrustedBackendDelegation


def build_outbound(settings: Settings) -> GuardedHttp:
    """The guarded client for org-configured URLs (control_plane.net.guarded_http)."""
    policy = settings.outbound_policy
    if settings.outbound_loopback and not (settings.embedded or settings.sandbox_url):
        log.warning("AGENTAUTH_OUTBOUND_LOOPBACK=1: org-configured URLs may reach loopback")
    if policy.allow_networks or policy.allow_hosts:
        log.info(
            "outbound allow-list",
            networks=[str(n) for n in policy.allow_networks],
            hosts=sorted(policy.allow_hosts),
        )
    return GuardedHttp(policy, FetchBudget(settings.outbound_fetches_per_minute))


def build_token_stack(
    runtime: Runtime, issuer: str, http: aiohttp.ClientSession, outbound: GuardedHttp
) -> TokenStack:
    directory = runtime.directory
    issuer_keys = IssuerKeyCache(outbound)
    minter = Minter(runtime.db, runtime.keys, runtime.clock, issuer)
    base = issuer.rstrip("/")
    own_tokens = OwnTokens(runtime.db, runtime.keys, runtime.clock, issuer, runtime.feed)
    workloads = WorkloadTokenExchange(directory, issuer_keys, minter, runtime.clock)
    rules = DelegationRuleService(runtime.services)
    grants: list[Grant] = [
        SubDelegation(own_tokens, workloads, rules, directory, minter),
        UserAssertion(
            runtime.db, own_tokens, workloads, directory, issuer_keys, minter, runtime.clock
        ),
        workloads,
        ClientCredentialsPrivateKeyJwt(
            runtime.db,
            directory,
            minter,
            runtime.clock,
            frozenset({issuer, base, f"{base}/oauth2/token"}),
        ),
    ]
    return TokenStack(
        issuer,
        http,
        outbound,
        directory,
        issuer_keys,
        minter,
        TokenEndpoint(grants),
        own_tokens,
        ApiKeyService(runtime.services),
        rules,
        TrustedBackendDelegation(runtime.services, directory, minter),
    )


@dataclass(frozen=True)
class VaultStack:
    """The credential boundary: everything that ever holds a decrypted credential."""

    oauth_apps: OAuthApps
    developer_secrets: DeveloperSecrets
    accounts: AccountVault
    refresher: RefreshCoordinator
    upstream: Upstream
    keepalive: KeepAlive


def build_vault(runtime: Runtime, http: aiohttp.ClientSession) -> VaultStack:
    db, barrier, clock, catalog = runtime.db, runtime.barrier, runtime.clock, runtime.catalog
    metrics, tracing = runtime.metrics, runtime.tracing
    oauth_apps = OAuthApps(db, barrier)
    developer_secrets = DeveloperSecrets(db, barrier)
    refresher = RefreshCoordinator(
        db,
        barrier,
        clock,
        catalog,
        oauth_apps,
        http,
        lease=dt.timedelta(seconds=runtime.settings.refresh_lease_seconds),
        listeners=(lambda e: metrics.refresh(e.connector_id, e.outcome),),
        tracing=tracing,
    )
    return VaultStack(
        oauth_apps,
        developer_secrets,
        AccountVault(db, barrier, clock, oauth_apps, http, tracing),
        refresher,
        Upstream(
            db,
            barrier,
            clock,
            catalog,
            refresher,
            http,
            developer_secrets,
            metrics,
            tracing,
        ),
        KeepAlive(db, clock, catalog, refresher),
    )


@dataclass(frozen=True)
class ConnectionStack:
    """ConnectionService's use cases, over the vault."""

    connectors: ConnectorConfigService
    oauth_apps: OAuthAppService
    developer_secrets: DeveloperSecretService
    accounts: ConnectedAccountService
    flow: ConnectFlow
    watch: AccountWatch
    tools: ToolExecutor
    tool_listing: ToolListingService
    confirmations: ToolConfirmations


def build_connections(runtime: Runtime, vault: VaultStack, issuer: str) -> ConnectionStack:
    ctx, catalog, clock, db = runtime.services, runtime.catalog, runtime.clock, runtime.db
    connectors = ConnectorConfigService(db, clock, catalog, vault.oauth_apps)
    accounts = ConnectedAccountService(ctx, connectors, vault.accounts, vault.refresher)
    flow = ConnectFlow(ctx, connectors, vault.oauth_apps, vault.accounts, issuer)
    links = ConnectLinks(flow, accounts)
    policies = ToolPolicies(ctx)
    confirmations = ToolConfirmations(db, clock, ttl=runtime.settings.tool_confirmation_ttl)
    return ConnectionStack(
        connectors,
        OAuthAppService(catalog, vault.oauth_apps, clock),
        DeveloperSecretService(catalog, vault.developer_secrets, clock),
        accounts,
        flow,
        AccountWatch(db, runtime.barrier, clock, runtime.feed),
        ToolExecutor(
            db,
            clock,
            catalog,
            runtime.barrier,
            vault.upstream,
            connectors,
            policies,
            links,
            ToolActionAudit(runtime.audit),
            confirmations,
            runtime.metrics,
            runtime.tracing,
        ),
        ToolListingService(db, catalog, connectors, policies, links),
        confirmations,
    )


@dataclass
class Servers:
    grpc_server: grpc.aio.Server
    http_runner: web.AppRunner
    grpc_port: int
    http_port: int
    health: health.aio.HealthServicer
    readiness: Readiness
    gate: PipelineInterceptor
    tokens: TokenStack
    vault: VaultStack
    connections: ConnectionStack
    feed: RevocationFeed

    @property
    def keepalive(self) -> KeepAlive:
        return self.vault.keepalive

    async def stop(self, grace: float = 2.0, *, drain: float = 0.0) -> None:
        """Drain, then stop: health says NOT_SERVING at once; calls are served for
        ``drain`` seconds more (load balancers move away); then new calls are refused
        UNAVAILABLE, running ones get ``grace`` seconds, and provider refreshes in
        flight are waited for until committed (their own timeout bounds them)."""
        await self.readiness.set_draining()
        if drain > 0:
            await asyncio.sleep(drain)
        self.gate.close()
        if not await self.gate.wait_idle(grace):
            log.warning("calls still running at the end of the grace period")
        await self.connections.tools.drain()  # tool calls record their outcomes
        await self.vault.refresher.drain()
        await self.readiness.stop()
        # The gRPC server first: it cancels open watch streams. Stopping the feed
        # first used to wake them into one more database read while the
        # runtime was being closed, which could leave a task that never ended.
        await self.grpc_server.stop(grace)
        await self.feed.stop()
        await self.http_runner.cleanup()
        await self.tokens.http.close()
        await self.tokens.outbound.close()


def _listen_socket(listen: str, reuse_port: bool) -> socket.socket:
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen for HTTP on {listen}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _grpc_port(server: grpc.aio.Server, listen: str) -> int:
    """Bind gRPC; a port that cannot be had is a :class:`StartupError` like HTTP's.

    grpc says only "Failed to bind" (a RuntimeError, or port 0 in older releases),
    so the reason is asked of the kernel with a plain socket on the same address.
    """
    host, port = parse_listen(listen)
    try:
        bound = server.add_insecure_port(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if bound:
        return bound
    why = "the address cannot be bound"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            why = exc.strerror or why
    raise StartupError(f"cannot listen for gRPC on {listen}: {why}")


def pipeline_for(
    runtime: Runtime, rules: Any, tokens: TokenStack, conns: ConnectionStack
) -> Pipeline:
    """authenticate → authorize → rate-limit → audit, over one authorization table."""
    authenticate = Authentication(tokens.api_keys, tokens.own_tokens, conns.flow)
    return Pipeline(
        rules, authenticate, runtime.limiter, runtime.audit, runtime.metrics, runtime.tracing
    )


def build_grpc_server(
    runtime: Runtime,
    tokens: TokenStack,
    conns: ConnectionStack,
    health_servicer: Any,
    gate: PipelineInterceptor,
) -> grpc.aio.Server:
    s = runtime.settings
    server = grpc.aio.server(
        interceptors=[gate],
        # Bounds the calls (and so the request messages) held at once; gRPC answers
        # RESOURCE_EXHAUSTED beyond it.
        maximum_concurrent_rpcs=s.max_concurrent_rpcs,
        options=[
            ("grpc.so_reuseport", 1 if s.reuse_port else 0),
            # The largest request any method accepts; each method's own, smaller
            # limit is checked by the interceptor's deserializer before parsing.
            ("grpc.max_receive_message_length", max_receive_bytes(RULES)),
            ("grpc.max_send_message_length", s.max_message_bytes),
            # No BDP probing: the receive window stays at its 64 KiB default instead of
            # growing to megabytes, so a peer cannot push a whole oversized message
            # into our buffers before gRPC refuses it (issue 11: 40 x 4 MiB bursts held
            # hundreds of MB). Requests are kilobytes; nothing here needs wide windows.
            ("grpc.http2.bdp_probe", 0),
        ],
    )
    ctx = runtime.services
    admin = AdminServicer(
        orgs=OrganizationService(ctx),
        org_settings=OrganizationSettings(ctx),
        users=UserService(ctx),
        agents=AgentService(ctx),
        service_accounts=ServiceAccountService(ctx),
        api_keys=ApiKeyService(ctx),
        trust=TrustPolicyService(ctx, tokens.issuer, tokens.outbound.policy),
        rules=tokens.rules,
        idps=IdentityProviderService(ctx, tokens.issuer, tokens.outbound.policy),
        tool_policies=ToolPolicies(ctx),
    )
    admin_pb2_grpc.add_AdminServiceServicer_to_server(admin, server)  # type: ignore[no-untyped-call]
    connection_pb2_grpc.add_ConnectionServiceServicer_to_server(  # type: ignore[no-untyped-call]
        ConnectionServicer(
            conns.connectors,
            conns.oauth_apps,
            conns.developer_secrets,
            conns.accounts,
            conns.flow,
            conns.watch,
        ),
        server,
    )
    token_pb2_grpc.add_TokenServiceServicer_to_server(  # type: ignore[no-untyped-call]
        TokenServicer(
            runtime.keys,
            tokens.endpoint,
            tokens.own_tokens,
            tokens.delegation,
            BulkRevocation(runtime.db, runtime.clock, runtime.feed),
            RevocationWatch(
                runtime.db,
                runtime.barrier,
                runtime.clock,
                runtime.feed,
                on_live=lambda e: runtime.metrics.feed_lag(
                    (runtime.clock.now() - e.revoke_time).total_seconds()
                ),
            ),
        ),
        server,
    )
    tool_pb2_grpc.add_ToolServiceServicer_to_server(  # type: ignore[no-untyped-call]
        ToolServicer(conns.tool_listing, conns.tools, conns.confirmations), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    # One reflection servicer answers both versions (control_plane.api.reflection_v1).
    reflecting = reflection.aio.ReflectionServicer(
        (
            *SERVICE_NAMES,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
            reflection_v1.SERVICE_NAME,
        )
    )
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflecting, server)  # type: ignore[no-untyped-call]
    reflection_v1.add_to_server(reflecting, server)
    return server


def build_readiness(runtime: Runtime, health_servicer: health.aio.HealthServicer) -> Readiness:
    """gRPC health and /readyz: the database answers (SELECT 1, bounded) and keys are loaded."""
    s = runtime.settings
    probe_timeout = min(s.readiness_interval, s.db_statement_timeout)

    async def database() -> bool:
        return await runtime.db.ping(probe_timeout)

    async def signing_keys() -> bool:
        return runtime.keys.loaded

    return Readiness(
        health_servicer,
        ("", *SERVICE_NAMES),
        {"database": database, "signing_keys": signing_keys},
        interval=s.readiness_interval,
    )


def build_web_app(
    runtime: Runtime, tokens: TokenStack, conns: ConnectionStack, readiness: Readiness
) -> web.Application:
    s = runtime.settings
    app = build_http_app(
        runtime.keys,
        runtime.metrics,
        readiness,
        int(s.jwks_cache_ttl.total_seconds()),
        pipeline=pipeline_for(runtime, ROUTES, tokens, conns),
    )
    add_oauth_routes(
        app,
        issuer=tokens.issuer,
        endpoint=tokens.endpoint,
        own_tokens=tokens.own_tokens,
        signing_algorithm=s.signing_algorithm,
    )
    ConnectPages(conns.flow).routes(app)
    return app


async def start_servers(runtime: Runtime) -> Servers:
    """Bind, build every component in dependency order, and start serving."""
    s = runtime.settings
    # Bind HTTP first: when no issuer is configured it is this address, port included.
    http_sock = _listen_socket(s.http_listen, s.reuse_port)
    http_port = int(http_sock.getsockname()[1])
    host = parse_listen(s.http_listen)[0]
    issuer = s.issuer or f"http://{host}:{http_port}"
    http = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=10), headers={"User-Agent": "agentauth"}
    )
    outbound = build_outbound(s)
    try:
        tokens = build_token_stack(runtime, issuer, http, outbound)
        vault = build_vault(runtime, http)
        conns = build_connections(runtime, vault, issuer)
        health_servicer = health.aio.HealthServicer()
        gate = PipelineInterceptor(pipeline_for(runtime, RULES, tokens, conns))
        server = build_grpc_server(runtime, tokens, conns, health_servicer, gate)
        grpc_port = _grpc_port(server, s.grpc_listen)
    except BaseException:
        # Nothing is serving yet: close what was opened, so a refusal to start is
        # its one line and no "Unclosed client session" follows it.
        http_sock.close()
        await http.close()
        await outbound.close()
        raise
    readiness = build_readiness(runtime, health_servicer)
    await runtime.feed.start()
    # Before the server answers: health reports what the database says from the start.
    await readiness.start()
    await server.start()
    runner = web.AppRunner(build_web_app(runtime, tokens, conns, readiness), access_log=None)
    await runner.setup()
    await web.SockSite(runner, http_sock).start()
    return Servers(
        server,
        runner,
        grpc_port,
        http_port,
        health_servicer,
        readiness,
        gate,
        tokens,
        vault,
        conns,
        runtime.feed,
    )


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


#: Seconds between two passes over every org's tool-action records.
TOOL_ACTION_PRUNE_SECONDS = 3600.0


async def key_maintenance(runtime: Runtime, tools: ToolExecutor | None = None) -> None:
    """Reload keys rotated elsewhere, rotate on schedule, prune expired ones (and,
    hourly, tool-action records past their idempotency window)."""
    interval = runtime.settings.key_reload_seconds
    last_action_prune = time.monotonic()
    while True:
        await asyncio.sleep(interval)
        try:
            if runtime.settings.signing_rotation.total_seconds() > 0:
                await runtime.keys.maybe_rotate(runtime.settings.signing_rotation)
            await runtime.keys.prune()
            await runtime.keys.load()
            await runtime.limiter.prune()  # anonymous buckets idle long enough to be full
            if (
                tools is not None
                and time.monotonic() - last_action_prune > TOOL_ACTION_PRUNE_SECONDS
            ):
                last_action_prune = time.monotonic()
                await tools.prune()
        except Exception as exc:  # keep serving with the keys we have
            log.error("key maintenance failed", error=type(exc).__name__)


async def _warn_privileged_login(runtime: Runtime) -> None:
    """PostgreSQL: say loudly when ``serve`` logs in as a superuser or the tables' owner.

    Row-level security binds the ``agentauth_app`` role the runtime switches to; a
    ``RESET ROLE`` (anything that can run SQL on a connection) is back to the login
    role, so that role must be able to do nothing but become ``agentauth_app``.
    """
    if not runtime.db.is_postgres:
        return
    login, superuser, owner = await runtime.db.login_privileges()
    if superuser or owner:
        log.warning(
            "the database login role is privileged: use a runtime role that can only "
            "SET ROLE agentauth_app (README: least privilege at the database)",
            login_role=login,
            superuser=superuser,
            owns_tables=owner,
        )


async def _first_admin_key(runtime: Runtime, out: TextIO) -> None:
    """A first embedded start creates a platform admin key and prints it once; on an
    external database (a shared deployment) an operator creates it, so say how."""
    api_keys = ApiKeyService(runtime.services)
    if await api_keys.any_platform_key():
        return
    if not runtime.settings.embedded:
        log.warning(
            "no platform admin key exists: create one with `control-plane admin create-key` "
            "(same AGENTAUTH_DATABASE_URL and KEK settings); it is printed once on stdout"
        )
        return
    _, key = await api_keys.create_platform_key("bootstrap (first dev start)")
    log.warning("no admin key existed: created a platform admin key, printed once on stdout")
    print("Platform admin key (shown once; store it now):", file=out)
    print(key, file=out, flush=True)


async def prepare(settings: Settings, *, out: TextIO = sys.stdout) -> None:
    """Everything ``serve`` checks and creates before it binds, done once (``--workers``)."""
    runtime = await open_runtime(settings)
    try:
        await _first_admin_key(runtime, out)
    finally:
        await runtime.close()


async def serve(settings: Settings, *, out: TextIO = sys.stdout, worker: bool = False) -> None:
    log.info(
        "starting agentauth control plane",
        database="embedded SQLite" if settings.embedded else "external",
        database_path=str(settings.effective_database_url) if settings.embedded else None,
        kek_provider=settings.kek_kind,
        kek_file=str(settings.kek_file) if settings.kek_kind == "file" else None,
        data_dir=str(settings.data_dir),
        dev_mode=settings.embedded,
    )
    runtime = await open_runtime(settings)
    try:
        if not worker:
            await _first_admin_key(runtime, out)
            await _warn_privileged_login(runtime)
        servers = await start_servers(runtime)
        grpc_host, http_host = (
            parse_listen(settings.grpc_listen)[0],
            parse_listen(settings.http_listen)[0],
        )
        log.info(
            "serving",
            grpc=_address(grpc_host, servers.grpc_port),
            http=_address(http_host, servers.http_port),
            grpc_port=servers.grpc_port,
            http_port=servers.http_port,
            issuer=servers.tokens.issuer,
            connectors=len(runtime.catalog),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        background = [
            asyncio.create_task(key_maintenance(runtime, servers.connections.tools)),
            asyncio.create_task(servers.keepalive.run()),
        ]
        await stop.wait()
        log.info("shutting down")
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        drain, grace = settings.effective_drain_seconds, settings.shutdown_grace_seconds
        try:
            # Every stage is bounded; this bounds their sum too, so a replica told to
            # stop always does (what is still running then is cut, and logged).
            async with asyncio.timeout(drain + grace + REFRESH_DRAIN_SECONDS + 15):
                await servers.stop(grace, drain=drain)
        except TimeoutError:
            log.error("shutdown overran its bound; stopping now")
    finally:
        await runtime.close()
