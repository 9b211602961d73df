"""``control-plane``: serve, migrate, bootstrap admin keys, rotate keys.

argparse shows :data:`DESCRIPTION`, not this docstring (its markup would show).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from control_plane import logs
from control_plane.app import Runtime, StartupError, migrate, open_runtime, prepare, serve
from control_plane.config import (
    DEFAULT_GRPC_LISTEN,
    DEFAULT_HTTP_LISTEN,
    Settings,
    default_data_dir,
)
from control_plane.domain.errors import AgentAuthError
from control_plane.services.api_keys import ApiKeyService
from control_plane.workers import default_workers, fixed_ports, run_workers


def _add_storage_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="data directory: the embedded SQLite file and the development KEK file "
        f"(env AGENTAUTH_DATA_DIR; default {default_data_dir()})",
    )
    p.add_argument(
        "--database-url",
        metavar="URL",
        help="postgresql+psycopg://USER@HOST[:PORT]/DB or sqlite+aiosqlite:///PATH "
        "(env AGENTAUTH_DATABASE_URL; default: the embedded SQLite in --data-dir)",
    )


DESCRIPTION = (
    "agentauth control plane: serve the gRPC and HTTP APIs, migrate the database, "
    "create admin keys, manage the KEK and signing keys, run sandbox emulators. "
    "Flags win over AGENTAUTH_* environment variables, which win over the defaults."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="control-plane", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    p_serve = sub.add_parser(
        "serve", help="run the gRPC and HTTP servers", description="Run the gRPC and HTTP servers."
    )
    _add_storage_flags(p_serve)
    p_serve.add_argument(
        "--grpc-listen",
        metavar="HOST:PORT",
        help=f"HOST:PORT for gRPC (env AGENTAUTH_GRPC_LISTEN; default {DEFAULT_GRPC_LISTEN})",
    )
    p_serve.add_argument(
        "--http-listen",
        metavar="HOST:PORT",
        help="HOST:PORT for HTTP, also the issuer URL unless AGENTAUTH_ISSUER is set "
        f"(env AGENTAUTH_HTTP_LISTEN; default {DEFAULT_HTTP_LISTEN})",
    )
    p_serve.add_argument(
        "--workers",
        metavar="N",
        help="server processes sharing the ports (SO_REUSEPORT); env AGENTAUTH_WORKERS; "
        "default auto: 1 on the embedded SQLite, the available CPUs (at most 8) on PostgreSQL",
    )
    p_serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)

    sub.add_parser(
        "sandbox", help="run a loopback provider or issuer emulator (see: sandbox --help)"
    )
    p_migrate = sub.add_parser("migrate", help="apply database migrations")
    _add_storage_flags(p_migrate)

    p_admin = sub.add_parser("admin", help="administration")
    admin_sub = p_admin.add_subparsers(dest="admin_command", required=True)
    p_key = admin_sub.add_parser("create-key", help="print a new platform admin key once")
    _add_storage_flags(p_key)
    p_key.add_argument(
        "--display-name",
        default="created by control-plane admin create-key",
        help="a label for the key, shown when keys are listed (default: %(default)r)",
    )

    p_keys = sub.add_parser("keys", help="key management")
    keys_sub = p_keys.add_subparsers(dest="keys_command", required=True)
    for name, text in (
        ("rotate-kek", "re-wrap every data key under a new KEK version (resumable)"),
        (
            "rotate-signing",
            "add a signing key: servers publish it at their next key reload, "
            "it signs one reload interval plus one JWKS cache TTL later",
        ),
        ("list", "list signing keys and their state"),
        ("taint", "emergency: withdraw a signing key from JWKS at once"),
    ):
        p = keys_sub.add_parser(name, help=text, description=text)
        _add_storage_flags(p)
        if name == "taint":
            p.add_argument("kid", help="the key id to withdraw (the KID column of keys list)")
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    """Flags win over ``AGENTAUTH_*`` variables, which win over defaults."""
    flags = ("data_dir", "database_url", "grpc_listen", "http_listen")
    given = {f: getattr(args, f) for f in flags if getattr(args, f, None)}
    return Settings(**given)


async def _create_key(settings: Settings, display_name: str) -> None:
    runtime = await open_runtime(settings)
    try:
        _, key = await ApiKeyService(runtime.services).create_platform_key(display_name)
    finally:
        await runtime.close()
    print("Platform admin key (shown once; store it now):")
    print(key, flush=True)


async def _keys(settings: Settings, args: argparse.Namespace) -> None:
    # Looking at keys, or withdrawing one, must not create a database to do it in.
    looks_only = {"list": "list", "taint": "taint"}.get(args.keys_command, "")
    runtime = await open_runtime(settings, existing_only=looks_only)
    try:
        if args.keys_command == "rotate-kek":

            def progress(done: int, total: int) -> None:
                print(f"re-wrapped {done}/{total} data keys", file=sys.stderr, flush=True)

            report = await runtime.barrier.rotate_kek(progress=progress)
            print(
                f"KEK rotation done: active {report.active_version}, "
                f"{report.rewrapped} re-wrapped, {report.skipped} already current, "
                f"{report.total} total"
            )
        elif args.keys_command == "rotate-signing":
            kid = await runtime.keys.rotate()
            new = next(k for k in runtime.keys.keys_summary() if k.kid == kid)
            # The servers read keys from the database at their next reload, not now.
            print(
                f"new signing key {kid}: stored; running servers publish it in JWKS at "
                "their next key reload (every AGENTAUTH_KEY_RELOAD_SECONDS, default 30 s); "
                f"it signs from {new.activate_time:%Y-%m-%dT%H:%M:%SZ} "
                "(one key reload interval plus one JWKS cache TTL from now, so that no "
                "verifier still holds a JWKS without it)"
            )
        elif args.keys_command == "taint":
            await runtime.keys.taint(args.kid)
            print(f"signing key {args.kid} tainted: removed from JWKS")
        else:
            _print_keys(runtime)
    finally:
        await runtime.close()


def _print_keys(runtime: Runtime) -> None:
    """``keys list``: one header line, then one line per key, in columns."""
    rows = [("KID", "ALG", "STATE", "IN JWKS", "PUBLISHED FROM", "SIGNS FROM")]
    for key in runtime.keys.keys_summary():
        rows.append(
            (
                key.kid,
                key.alg,
                str(key.state),
                "yes" if key.published else "no",
                f"{key.publish_time:%Y-%m-%dT%H:%M:%SZ}",
                f"{key.activate_time:%Y-%m-%dT%H:%M:%SZ}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def _workers(settings: Settings, given: str | None) -> int:
    value = given or os.environ.get("AGENTAUTH_WORKERS", "") or "auto"
    if value == "auto":
        # Any-free-port listens (tests, trials) cannot be shared: one process then.
        return default_workers(settings) if fixed_ports(settings) else 1
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise StartupError(f"--workers must be auto or 1-64, got {value!r}")
    if int(value) > 1 and not fixed_ports(settings):
        raise StartupError(
            "--workers needs fixed ports: port 0 asks for any free port, and each worker "
            "would get a different one"
        )
    return int(value)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    try:
        settings.check_issuer()
    except ValueError as exc:
        raise StartupError(str(exc)) from None
    if args.worker:  # one of the processes --workers started; the parent checked first
        asyncio.run(serve(settings, worker=True))
        return 0
    workers = _workers(settings, args.workers)
    if workers == 1:
        asyncio.run(serve(settings))
        return 0
    asyncio.run(prepare(settings))
    argv = [
        "--data-dir",
        str(settings.data_dir),
        "--grpc-listen",
        settings.grpc_listen,
        "--http-listen",
        settings.http_listen,
    ]
    if settings.database_url:
        argv += ["--database-url", settings.database_url]
    return run_workers(settings, workers, argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sandbox"]:
        # Loopback emulators of providers and issuers (control_plane.sandbox): try a
        # connector with no provider account, e.g. `control-plane sandbox oauth gmail`.
        from control_plane.sandbox.__main__ import main as sandbox_main

        return sandbox_main(argv[1:], prog="control-plane sandbox")
    args = _parser().parse_args(argv)
    logs.configure()
    try:
        settings = _settings(args)
    except ValueError as exc:
        print(f"control-plane: {exc}", file=sys.stderr)
        return 2
    logs.configure(fmt=settings.log_format)
    try:
        if args.command == "serve":
            return _serve(settings, args)
        elif args.command == "migrate":
            asyncio.run(migrate(settings.effective_database_url))
            print("database migrated to head")
        elif args.command == "admin":
            asyncio.run(_create_key(settings, args.display_name))
        elif args.command == "keys":
            asyncio.run(_keys(settings, args))
    except StartupError as exc:
        print(f"control-plane: {exc}", file=sys.stderr)
        return 2
    except AgentAuthError as exc:
        print(f"control-plane: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
