"""Run a sandbox workload-token issuer or identity provider from a shell.

These are test emulators, not identity providers: anyone who can reach the
port can mint a token for any identity, so they bind loopback addresses only
and keep their keys in memory (a restart means new keys)::

    python -m control_plane.sandbox kubernetes --port 8701
    python -m control_plane.sandbox spiffe --trust-domain example.org --port 8702
    python -m control_plane.sandbox okta --port 8703
    python -m control_plane.sandbox entra --port 8704
    python -m control_plane.sandbox oauth gmail --port 8705
    python -m control_plane.sandbox key stripe --port 8706

Each prints its URLs (one ``name: value`` per line on stdout) and, besides the
endpoints the real system publishes, serves ``POST /issue`` to mint a token::

    curl -s http://127.0.0.1:8701/issue \\
      -d '{"namespace": "default", "service_account": "agent", "audiences": ["agentauth"]}'
    curl -s http://127.0.0.1:8702/issue \\
      -d '{"path": "/ns/prod/sa/agent", "audiences": ["agentauth"]}'
    curl -s http://127.0.0.1:8703/issue -d '{"user": "alice@example.com"}'
    curl -s http://127.0.0.1:8704/issue -d '{"user": "alice@contoso.com", "token": "access_token"}'

The answer is ``{"token": "<JWT>"}``; bad input gets a 400 with ``error_description``.
SIGTERM or Ctrl-C stops the server cleanly (exit status 0).

``oauth <connector>`` emulates that catalog connector's OAuth 2.0 provider and API
(:mod:`control_plane.sandbox.oauth_provider`) and prints its base URL, endpoints and
the sandbox client id and secret instead; a real provider URL ``https://host/path``
is served at ``<base_url>/host/path``.

``key <connector>`` emulates the API of a connector authenticated by a key
(``stripe``, ``weather``, ``web_search``: :mod:`control_plane.sandbox.api_key_provider`)
and prints its base URL, where the key goes and a key it accepts (``--key`` to
choose one; repeat it for several).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from control_plane.connectors.loader import load_catalog
from control_plane.sandbox import kubernetes_issuer as k8s
from control_plane.sandbox._jose import ALGORITHMS
from control_plane.sandbox._loopback import (
    EVERY_INTERFACE,
    LoopbackServer,
    json_response,
    require_loopback,
    require_loopback_url,
)
from control_plane.sandbox.api_key_provider import KEY_AUTH_TYPES, SandboxApiKeyProvider
from control_plane.sandbox.oauth_provider import SandboxProvider
from control_plane.sandbox.oidc_idp import EntraIdentityProvider, OktaIdentityProvider
from control_plane.sandbox.spiffe_issuer import BUNDLE_PATH, KEYS_PATH, SpiffeIssuer

ISSUE_PATH = "/issue"
#: Field name -> (type name, required) for the POST /issue body of each emulator.
_FieldSpec = Mapping[str, tuple[str, bool]]
_K8S_FIELDS: _FieldSpec = {
    "namespace": ("string", True),
    "service_account": ("string", True),
    "audiences": ("list of strings", True),
    "ttl": ("integer", False),
    "pod": ("string", False),
}
_SPIFFE_FIELDS: _FieldSpec = {
    "path": ("string", True),
    "audiences": ("list of strings", True),
    "ttl": ("integer", False),
}
_IDP_FIELDS: _FieldSpec = {
    "user": ("string", True),
    "token": ("string", False),  # "id_token" (default) or "access_token"
    "ttl": ("integer", False),
    "scopes": ("list of strings", False),
}
_CHECKS: Mapping[str, Callable[[object], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "list of strings": lambda v: isinstance(v, list) and all(isinstance(a, str) for a in v),
}


#: A body that ``POST /issue`` accepts, per emulator: shown by ``--help`` and at start.
EXAMPLE_BODIES: Mapping[str, str] = {
    "kubernetes": (
        '{"namespace": "default", "service_account": "agent", "audiences": ["agentauth"]}'
    ),
    "spiffe": '{"path": "/ns/prod/sa/agent", "audiences": ["agentauth"]}',
    "okta": '{"user": "alice@example.com"}',
    "entra": '{"user": "alice@contoso.com", "token": "access_token"}',
}


def curl_example(kind: str, base_url: str) -> str:
    """A copy-paste command that mints a token from a running emulator."""
    return f"curl -s {base_url}{ISSUE_PATH} -d '{EXAMPLE_BODIES[kind]}'"


def _issue_epilog(kind: str, port: int, fields: _FieldSpec) -> str:
    described = ", ".join(
        f"{name} ({kind_}{'' if required else ', optional'})"
        for name, (kind_, required) in fields.items()
    )
    return (
        f"Mint a token (POST {ISSUE_PATH}, a JSON body; the answer is "
        '{"token": "<JWT>"}):\n\n'
        f"  {curl_example(kind, f'http://127.0.0.1:{port}')}\n\n"
        f"fields: {described}"
    )


def _check_body(body: object, spec: _FieldSpec) -> dict[str, Any]:
    """The validated ``/issue`` arguments; ValueError names the first problem."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; allowed: {sorted(spec)}")
    for name, (kind, required) in spec.items():
        if name not in body:
            if required:
                raise ValueError(f"missing required field {name!r} ({kind})")
        elif not _CHECKS[kind](body[name]):
            raise ValueError(f"field {name!r} must be a {kind}")
    return body


def issue_route(spec: _FieldSpec, mint: Callable[[dict[str, Any]], str]) -> web.RouteDef:
    """``POST /issue``: JSON arguments in, ``{"token": ...}`` out."""

    async def handle(request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.text())
            token = mint(_check_body(body, spec))
        except ValueError as exc:  # includes json.JSONDecodeError
            error = {"error": "invalid_request", "error_description": str(exc)}
            return json_response(error, status=400)
        return json_response({"token": token})

    return web.post(ISSUE_PATH, handle)


def _kubernetes(args: argparse.Namespace) -> tuple[LoopbackServer, Callable[[], list[str]]]:
    iss = k8s.KubernetesIssuer(issuer=args.issuer, algorithm=args.algorithm)
    iss.add_routes([issue_route(_K8S_FIELDS, lambda a: iss.issue(**a))])

    def lines() -> list[str]:
        return [
            f"issuer: {iss.issuer}",
            f"discovery: {iss.url}{k8s.DISCOVERY_PATH}",
            f"jwks: {iss.url}{k8s.JWKS_PATH}",
            f"issue: {iss.url}{ISSUE_PATH}",
            f"example: {curl_example('kubernetes', iss.url)}",
        ]

    return iss, lines


def _idp_mint(idp: OktaIdentityProvider | EntraIdentityProvider, a: dict[str, Any]) -> str:
    kind = a.get("token", "id_token")
    ttl = a.get("ttl", 3600)
    if kind == "id_token":
        if "scopes" in a:
            raise ValueError("scopes apply to access tokens only")
        return idp.id_token(a["user"], ttl=ttl)
    if kind == "access_token":
        if "scopes" in a:
            return idp.access_token(a["user"], ttl=ttl, scopes=a["scopes"])
        return idp.access_token(a["user"], ttl=ttl)
    raise ValueError('token must be "id_token" or "access_token"')


def _idp(args: argparse.Namespace) -> tuple[LoopbackServer, Callable[[], list[str]]]:
    idp: OktaIdentityProvider | EntraIdentityProvider
    if args.kind == "okta":
        idp = OktaIdentityProvider(client_id=args.client_id)
    else:
        idp = EntraIdentityProvider(tenant_id=args.tenant_id, client_id=args.client_id)
    idp.add_routes([issue_route(_IDP_FIELDS, lambda a: _idp_mint(idp, a))])

    def lines() -> list[str]:
        out = [
            f"issuer: {idp.issuer}",
            f"discovery: {idp.discovery_url}",
            f"jwks: {idp.jwks_uri}",
            f"client_id: {idp.client_id}",
        ]
        if isinstance(idp, EntraIdentityProvider):
            out.append(f"tenant_id: {idp.tenant_id}")
        return [
            *out,
            f"issue: {idp.url}{ISSUE_PATH}",
            f"example: {curl_example(args.kind, idp.url)}",
        ]

    return idp, lines


def _spiffe(args: argparse.Namespace) -> tuple[LoopbackServer, Callable[[], list[str]]]:
    iss = SpiffeIssuer(args.trust_domain, algorithm=args.algorithm, issuer=args.jwt_issuer)
    iss.add_routes([issue_route(_SPIFFE_FIELDS, lambda a: iss.issue(**a))])

    def lines() -> list[str]:
        return [
            f"trust_domain: {iss.trust_domain}",
            f"bundle: {iss.url}{BUNDLE_PATH}",
            f"keys: {iss.url}{KEYS_PATH}",
            f"issue: {iss.url}{ISSUE_PATH}",
            f"example: {curl_example('spiffe', iss.url)}",
        ]

    return iss, lines


def _oauth(args: argparse.Namespace) -> tuple[LoopbackServer, Callable[[], list[str]]]:
    catalog = load_catalog()
    connector = catalog.get(args.connector)
    oauth = sorted(c.id for c in catalog if c.auth.type == "oauth2")
    if connector is None or connector.auth.type != "oauth2":
        raise ValueError(f"unknown OAuth 2.0 connector {args.connector!r}; one of: {oauth}")
    provider = SandboxProvider(
        connector, client_id=args.client_id, client_secret=args.client_secret
    )

    def lines() -> list[str]:
        sandbox = provider.connector_for_sandbox()
        out = [
            f"connector: {connector.id}",
            f"base_url: {provider.base_url}",
            f"authorize: {sandbox.auth.authorize_url}",
            f"token: {sandbox.auth.token_url}",
        ]
        if sandbox.auth.revoke_url:
            out.append(f"revoke: {sandbox.auth.revoke_url}")
        return [
            *out,
            f"client_id: {provider.client_id}",
            f"client_secret: {provider.client_secret}",
        ]

    return provider.server, lines


def _key(args: argparse.Namespace) -> tuple[LoopbackServer, Callable[[], list[str]]]:
    catalog = load_catalog()
    connector = catalog.get(args.connector)
    keyed = sorted(c.id for c in catalog if c.auth.type in KEY_AUTH_TYPES)
    if connector is None or connector.auth.type not in KEY_AUTH_TYPES:
        raise ValueError(f"unknown API-key connector {args.connector!r}; one of: {keyed}")
    provider = SandboxApiKeyProvider(connector, valid_keys=args.key or ())
    keys = list(args.key or [provider.new_key()])

    def lines() -> list[str]:
        spec = provider.placement
        where = f"{spec.location} {spec.name}" + (
            f" ({spec.prefix.strip()})" if spec.prefix else ""
        )
        return [
            f"connector: {connector.id}",
            f"base_url: {provider.base_url}",
            f"api_base: {provider.connector_for_sandbox().api_base_url}",
            f"key_in: {where}",
            *(f"key: {k}" for k in keys),
        ]

    return provider.server, lines


async def _serve(
    server: LoopbackServer,
    lines: Callable[[], list[str]],
    host: str,
    port: int,
    expose_as: str | None = None,
) -> int:
    try:
        await server.start(host=host, port=port, expose_as=expose_as)
    except OSError as exc:
        where = EVERY_INTERFACE if expose_as else host
        print(f"error: cannot listen on {where}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if expose_as:
        print(
            f"warning: listening on every interface (port {port}) as {expose_as}: anyone "
            "who reaches this port can mint tokens; publish it on the host's loopback only",
            file=sys.stderr,
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        print("\n".join(lines()), flush=True)
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.stop()
    return 0


def _loopback_url(value: str) -> str:
    try:
        return require_loopback_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _loopback_host(value: str) -> str:
    try:
        return require_loopback(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Loopback workload-token issuers, OIDC identity providers, OAuth 2.0 "
        "providers and key-authenticated APIs for tests "
        "(emulators: they sign whatever they are asked to).",
        epilog=f"Each issuer mints a token on POST {ISSUE_PATH}; `{prog} KIND --help` "
        "shows a curl example.",
    )
    sub = parser.add_subparsers(dest="kind", required=True)

    def command(name: str, text: str, port: int, fields: _FieldSpec | None = None) -> Any:
        p = sub.add_parser(
            name,
            help=text,
            description=text,
            epilog=_issue_epilog(name, port, fields) if fields else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument(
            "--port", type=int, default=port, help="port (0: any free one; default %(default)s)"
        )
        return p

    kube = command("kubernetes", "Kubernetes service-account issuer", 8701, _K8S_FIELDS)
    kube.add_argument("--issuer", help="iss value (default: the server's own URL)")
    kube.add_argument(
        "--algorithm",
        choices=k8s.ALGORITHMS,
        default="RS256",
        help="signing algorithm (default %(default)s)",
    )
    spiffe = command("spiffe", "SPIFFE JWT-SVID issuer and bundle endpoint", 8702, _SPIFFE_FIELDS)
    spiffe.add_argument(
        "--trust-domain",
        default="example.org",
        help="the SPIFFE trust domain (default %(default)s)",
    )
    spiffe.add_argument(
        "--algorithm",
        choices=sorted(ALGORITHMS),
        default="ES256",
        help="signing algorithm (default %(default)s)",
    )
    spiffe.add_argument("--jwt-issuer", help="optional iss claim (SPIRE's jwt_issuer)")
    okta = command("okta", "Okta custom authorization server (ID/access tokens)", 8703, _IDP_FIELDS)
    entra = command("entra", "Microsoft Entra ID v2.0 tenant (ID/access tokens)", 8704, _IDP_FIELDS)
    entra.add_argument("--tenant-id", help="tid (default: a random UUID)")
    for idp in (okta, entra):
        idp.add_argument("--client-id", help="the OIDC client id (ID tokens' aud)")
    oauth = command("oauth", "OAuth 2.0 provider + API of a catalog connector", 8705)
    oauth.add_argument("connector", help="connector id, e.g. gmail")
    oauth.add_argument("--client-id", help="the sandbox client id (default: random)")
    oauth.add_argument("--client-secret", help="the sandbox client secret (default: random)")
    key = command("key", "API of a catalog connector authenticated by a key", 8706)
    key.add_argument("connector", help="connector id, e.g. stripe")
    key.add_argument(
        "--key", action="append", help="a key the emulator accepts (default: a new one)"
    )
    for each in (kube, spiffe, okta, entra, oauth, key):
        each.add_argument(
            "--host",
            type=_loopback_host,
            default="127.0.0.1",
            help="loopback address only (default %(default)s)",
        )
        each.add_argument(
            "--expose-as",
            type=_loopback_url,
            metavar="URL",
            help="in a container whose port the host publishes on its own loopback "
            "only: listen on every interface of the container and advertise URL "
            "(http://127.0.0.1:PORT, the host's side) instead of --host "
            "(deploy/docker-compose.sandbox.yml)",
        )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m control_plane.sandbox") -> int:
    parser = _parser(prog)
    args = parser.parse_args(argv)
    try:
        build = {
            "kubernetes": _kubernetes,
            "spiffe": _spiffe,
            "okta": _idp,
            "entra": _idp,
            "oauth": _oauth,
            "key": _key,
        }
        server, lines = build[args.kind](args)
    except ValueError as exc:  # e.g. an invalid trust domain
        parser.error(str(exc))
    what = "provider" if args.kind in ("oauth", "key") else "issuer"
    print(
        f"sandbox {args.kind} {what}: a test emulator, not an identity provider",
        file=sys.stderr,
        flush=True,
    )
    return asyncio.run(_serve(server, lines, args.host, args.port, args.expose_as))


if __name__ == "__main__":
    sys.exit(main())
