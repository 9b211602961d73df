"""Settings from flags, then ``AGENTAUTH_*`` environment variables, then defaults."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from control_plane import logs
from control_plane.domain.outbound import OutboundPolicy
from control_plane.domain.rate_limit import Limit, RateLimitDefaults


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("agentauth", appauthor=False))


def _env(name: str, default: str) -> str:
    return os.environ.get(f"AGENTAUTH_{name}", default)


def _int(name: str, default: str) -> int:
    """An integer setting; a bad value names its variable (and never echoes the value)."""
    try:
        return int(_env(name, default))
    except ValueError:
        raise ValueError(f"AGENTAUTH_{name} must be an integer") from None


def _float(name: str, default: str) -> float:
    """A number setting; a bad value names its variable (and never echoes the value)."""
    try:
        return float(_env(name, default))
    except ValueError:
        raise ValueError(f"AGENTAUTH_{name} must be a number") from None


_RATE = RateLimitDefaults()


def _rate(name: str, default: float) -> float:
    return _float(f"RATE_LIMIT_{name}_RPS", str(default))


def _burst(name: str, default: int) -> int:
    return _int(f"RATE_LIMIT_{name}_BURST", str(default))


DEFAULT_GRPC_LISTEN = "127.0.0.1:50051"
DEFAULT_HTTP_LISTEN = "127.0.0.1:8080"

#: Database URL schemes we run (psycopg 3, aiosqlite); the plain names mean the same.
DATABASE_SCHEMES = ("postgresql+psycopg", "postgresql", "postgres", "sqlite+aiosqlite", "sqlite")
SUPPORTED_DATABASES = (
    "use postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/DB (postgresql:// and "
    "postgres:// mean the same) or sqlite+aiosqlite:///PATH"
)


def check_database_url(url: str) -> None:
    """Refuse a URL we cannot run before any driver sees it. The message names the
    scheme at most: the rest of a URL may carry a password."""
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ValueError(
            f"--database-url / AGENTAUTH_DATABASE_URL is not a URL: {SUPPORTED_DATABASES}"
        )
    if scheme not in DATABASE_SCHEMES:
        shown = scheme if scheme.replace("+", "").isalnum() and len(scheme) <= 32 else "?"
        raise ValueError(
            f"--database-url / AGENTAUTH_DATABASE_URL: {shown}:// is not supported; "
            f"{SUPPORTED_DATABASES}"
        )


#: Bind hosts that mean "every address" (an empty host too: what would it name?).
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "", "*"})  # noqa: S104 - recognised, not bound


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address must be HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(_env("DATA_DIR", str(default_data_dir()))))
    grpc_listen: str = field(default_factory=lambda: _env("GRPC_LISTEN", DEFAULT_GRPC_LISTEN))
    http_listen: str = field(default_factory=lambda: _env("HTTP_LISTEN", DEFAULT_HTTP_LISTEN))
    database_url: str = field(default_factory=lambda: _env("DATABASE_URL", ""))
    kek_provider: str = field(default_factory=lambda: _env("KEK_PROVIDER", ""))
    issuer: str = field(default_factory=lambda: _env("ISSUER", ""))
    signing_algorithm: str = field(default_factory=lambda: _env("SIGNING_ALGORITHM", "ES256"))

    jwks_cache_ttl: dt.timedelta = field(
        default_factory=lambda: dt.timedelta(seconds=_int("JWKS_CACHE_TTL_SECONDS", "300"))
    )
    max_token_ttl: dt.timedelta = field(
        default_factory=lambda: dt.timedelta(seconds=_int("MAX_TOKEN_TTL_SECONDS", "900"))
    )
    # 0 disables scheduled rotation; otherwise rotate when the signer is this old.
    signing_rotation: dt.timedelta = field(
        default_factory=lambda: dt.timedelta(
            seconds=_int("SIGNING_KEY_ROTATION_SECONDS", str(90 * 24 * 3600))
        )
    )
    key_reload_seconds: float = field(default_factory=lambda: _float("KEY_RELOAD_SECONDS", "30"))
    # json or console; empty: console on a terminal, JSON otherwise (control_plane.logs).
    log_format: str = field(default_factory=lambda: _env("LOG_FORMAT", ""))
    # SO_REUSEPORT lets several processes share one port; off unless asked for,
    # since a second server would otherwise silently steal half the connections.
    reuse_port: bool = field(default_factory=lambda: _env("REUSE_PORT", "0") == "1")
    # The largest response message (a page of trust policies with their JWKS). What a
    # request may weigh is per method (Rule.max_request_bytes in api/authz.py).
    max_message_bytes: int = 4 * 1024 * 1024
    # RPCs served at once, streams (revocation and account watches) included; gRPC
    # answers RESOURCE_EXHAUSTED beyond it. Bounds the memory a burst of calls can
    # hold: at most this many request messages of at most 256 KiB each.
    max_concurrent_rpcs: int = field(default_factory=lambda: _int("MAX_CONCURRENT_RPCS", "1000"))
    # Shutdown (SIGTERM): health says NOT_SERVING at once and the replica keeps
    # serving for drain_seconds so load balancers move away (empty: 5 s on
    # PostgreSQL, none for the embedded dev database); then new calls get UNAVAILABLE
    # and the calls in flight have shutdown_grace_seconds to finish. Refreshes in
    # flight are always waited for (up to the provider's timeout).
    drain_seconds: float = field(default_factory=lambda: _float("DRAIN_SECONDS", "-1"))
    shutdown_grace_seconds: float = field(
        default_factory=lambda: _float("SHUTDOWN_GRACE_SECONDS", "10")
    )
    # Connector definitions (*.yaml); empty: the catalog shipped with agentauth.
    connectors_dir: str = field(default_factory=lambda: _env("CONNECTORS_DIR", ""))
    # Development only (the embedded SQLite database): connector definitions may name
    # plain-http loopback URLs, to try a custom connector against an authorization
    # server on this machine (control_plane.connectors.dev_loopback).
    dev_loopback_connectors: bool = field(
        default_factory=lambda: _env("DEV_LOOPBACK_CONNECTORS", "0") == "1"
    )
    # Sandbox mode: every connector's provider URLs point at this loopback emulator
    # (`control-plane sandbox oauth <connector>` prints it). Loopback only.
    sandbox_url: str = field(default_factory=lambda: _env("SANDBOX_URL", ""))
    # OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); "" = no tracing.
    otlp_endpoint: str = field(default_factory=lambda: _env("OTLP_ENDPOINT", ""))
    # URLs an org configures (OIDC discovery, JWKS) are fetched https only, never to
    # loopback, private, link-local, ... addresses (control_plane.domain.outbound).
    # OUTBOUND_ALLOW: comma-separated CIDRs and host names exempt from the address
    # check (an identity provider on a private network); https still applies.
    outbound_allow: str = field(default_factory=lambda: _env("OUTBOUND_ALLOW", ""))
    # Loopback, over plain http too, for local emulators: always in dev mode (embedded
    # SQLite) and sandbox mode; OUTBOUND_LOOPBACK=1 asks for it elsewhere (test
    # harnesses on PostgreSQL). Never set it in production.
    outbound_loopback: bool = field(default_factory=lambda: _env("OUTBOUND_LOOPBACK", "0") == "1")
    # Fetches of org-configured URLs per org and minute (per process).
    outbound_fetches_per_minute: int = field(
        default_factory=lambda: _int("OUTBOUND_FETCHES_PER_MINUTE", "60")
    )
    # How long a tool call waits for a human's confirmation when the org's policy asks
    # for one (never past the call's own deadline, at most 120 s).
    tool_confirmation_ttl: dt.timedelta = field(
        default_factory=lambda: dt.timedelta(seconds=_float("TOOL_CONFIRMATION_TTL_SECONDS", "300"))
    )
    # How long a replica may hold an account's refresh lease before others take over.
    refresh_lease_seconds: float = field(
        default_factory=lambda: _float("REFRESH_LEASE_SECONDS", "30")
    )
    # Bounded waits on PostgreSQL (seconds): opening a connection, waiting for a free
    # pooled one, and one unit of work (a transaction, a group-committed token
    # write) end to end. When one runs out the call fails with UNAVAILABLE; a
    # connection caught mid-statement is discarded, never reused.
    db_connect_timeout: float = field(
        default_factory=lambda: _float("DB_CONNECT_TIMEOUT_SECONDS", "5")
    )
    db_pool_timeout: float = field(default_factory=lambda: _float("DB_POOL_TIMEOUT_SECONDS", "5"))
    db_statement_timeout: float = field(
        default_factory=lambda: _float("DB_STATEMENT_TIMEOUT_SECONDS", "5")
    )
    # How often readiness (gRPC health and /readyz) checks the database.
    readiness_interval: float = field(
        default_factory=lambda: _float("READINESS_INTERVAL_SECONDS", "2")
    )
    # The deployment's rate limits (requests per second, bucket size); rps 0 disables
    # one. Orgs may override the org and principal ones (organizations columns).
    rate_limit_org_rps: float = field(
        default_factory=lambda: _rate("ORG", _RATE.org.rate_per_second)
    )
    rate_limit_org_burst: int = field(default_factory=lambda: _burst("ORG", _RATE.org.burst))
    rate_limit_principal_rps: float = field(
        default_factory=lambda: _rate("PRINCIPAL", _RATE.principal.rate_per_second)
    )
    rate_limit_principal_burst: int = field(
        default_factory=lambda: _burst("PRINCIPAL", _RATE.principal.burst)
    )
    rate_limit_anonymous_rps: float = field(
        default_factory=lambda: _rate("ANONYMOUS", _RATE.anonymous.rate_per_second)
    )
    rate_limit_anonymous_burst: int = field(
        default_factory=lambda: _burst("ANONYMOUS", _RATE.anonymous.burst)
    )

    def __post_init__(self) -> None:
        try:
            self.rate_limit_defaults  # noqa: B018 - validates the six values
        except ValueError as exc:
            raise ValueError(f"AGENTAUTH_RATE_LIMIT_*: {exc}") from None
        if self.signing_algorithm not in ("ES256", "EdDSA"):
            raise ValueError("AGENTAUTH_SIGNING_ALGORITHM must be ES256 or EdDSA")
        if self.log_format not in ("", *logs.FORMATS):
            raise ValueError("AGENTAUTH_LOG_FORMAT must be json or console")
        parse_listen(self.grpc_listen)
        parse_listen(self.http_listen)
        if self.database_url:
            check_database_url(self.database_url)
        for name in (
            "db_connect_timeout",
            "db_pool_timeout",
            "db_statement_timeout",
            "readiness_interval",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"AGENTAUTH_{name.upper()}_SECONDS must be positive")
        if self.tool_confirmation_ttl <= dt.timedelta(0):
            raise ValueError("AGENTAUTH_TOOL_CONFIRMATION_TTL_SECONDS must be positive")
        if self.shutdown_grace_seconds < 0:
            raise ValueError("AGENTAUTH_SHUTDOWN_GRACE_SECONDS must not be negative")
        if self.max_concurrent_rpcs < 1:
            raise ValueError("AGENTAUTH_MAX_CONCURRENT_RPCS must be at least 1")
        try:
            self.outbound_policy  # noqa: B018 - validates the allow-list
        except ValueError as exc:
            raise ValueError(f"AGENTAUTH_OUTBOUND_ALLOW: {exc}") from None
        if self.outbound_fetches_per_minute < 1:
            raise ValueError("AGENTAUTH_OUTBOUND_FETCHES_PER_MINUTE must be at least 1")

    @property
    def rate_limit_defaults(self) -> RateLimitDefaults:
        return RateLimitDefaults(
            org=Limit(self.rate_limit_org_rps, self.rate_limit_org_burst),
            principal=Limit(self.rate_limit_principal_rps, self.rate_limit_principal_burst),
            anonymous=Limit(self.rate_limit_anonymous_rps, self.rate_limit_anonymous_burst),
        )

    @property
    def effective_drain_seconds(self) -> float:
        """The drain period: as configured, else 5 s with an external database (a
        replica behind a load balancer) and none for the embedded dev database."""
        if self.drain_seconds >= 0:
            return self.drain_seconds
        return 0.0 if self.embedded else 5.0

    @property
    def outbound_local(self) -> bool:
        """Org-configured URLs may reach loopback (dev mode, sandbox mode, or asked for)."""
        return self.outbound_loopback or self.embedded or bool(self.sandbox_url)

    @property
    def outbound_policy(self) -> OutboundPolicy:
        return OutboundPolicy.parse(self.outbound_allow, local=self.outbound_local)

    @property
    def embedded(self) -> bool:
        """Dev mode: no database URL given, so an embedded SQLite file is used."""
        return not self.database_url

    @property
    def embedded_database(self) -> Path:
        return self.data_dir / "agentauth.db"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.embedded_database}"

    @property
    def kek_file(self) -> Path:
        return self.data_dir / "kek.json"

    @property
    def kek_kind(self) -> str:
        if self.kek_provider:
            return self.kek_provider
        return "env" if os.environ.get("AGENTAUTH_KEK") else "file"

    @property
    def effective_issuer(self) -> str:
        return self.issuer or f"http://{self.http_listen}"

    def check_issuer(self) -> None:
        """Refuse to serve on a wildcard bind without ``AGENTAUTH_ISSUER``.

        The issuer defaults to ``http://{--http-listen}``, which is a URL clients can
        use only when the bind is a real address: ``0.0.0.0:8080`` (the container
        image's bind) would put ``iss: http://0.0.0.0:8080`` into every token.
        """
        host = self.http_listen.rpartition(":")[0].strip("[]")
        if not self.issuer and host in WILDCARD_HOSTS:
            raise ValueError(
                f"--http-listen {self.http_listen} listens on every address, so it is not "
                "an issuer URL that tokens can carry: set AGENTAUTH_ISSUER to the URL "
                "clients reach this server at (e.g. AGENTAUTH_ISSUER=https://auth.example.com)"
            )
