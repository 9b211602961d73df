"""The HTTP surface: published keys, liveness, readiness, metrics — and the middleware that
runs the request pipeline (:mod:`.pipeline`) for every route.

Every registered route has an entry in :data:`~control_plane.api.authz.ROUTES`
(deny by default, tested). The middleware finds it, takes the route's credential
(a bearer token, a connect link in the path, an authorization response's
``state``), runs authenticate → authorize → rate-limit → audit → handler, and
renders refusals the route's way: RFC 6749 JSON on ``/oauth2/*``, an HTML page on
the connect pages, plain JSON elsewhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

from aiohttp import web

from control_plane.api.pipeline import Call, Pipeline
from control_plane.api.readiness import Readiness
from control_plane.domain.errors import AgentAuthError, RequestTooLarge
from control_plane.metrics import CONTENT_TYPE, Metrics
from control_plane.tokens.keys import SigningKeyManager

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: How a route's refusals look (see :func:`refusal`): set on the app by the route owners.
RENDERERS = web.AppKey("agentauth_renderers", dict)

_STATUS = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 412,
    "RESOURCE_EXHAUSTED": 429,
    "UNAVAILABLE": 503,
    "INTERNAL": 500,
}


#: Public documents browsers may fetch from any origin (JWKS, RFC 8414 metadata).
CORS_PATHS = frozenset({"/.well-known/jwks.json", "/.well-known/oauth-authorization-server"})


def entity_tag(body: str) -> str:
    """A strong entity tag (RFC 9110 §8.8.3) for a representation: a digest of its bytes."""
    return '"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"'


def none_match(header: str, tag: str) -> bool:
    """RFC 9110 §13.1.2 If-None-Match: true when ``*`` or any listed tag matches ``tag``
    by the weak comparison (a ``W/`` prefix is ignored)."""
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == tag:
            return True
    return False


def http_status(exc: AgentAuthError) -> int:
    if isinstance(exc, RequestTooLarge):
        return exc.http_status  # 413, where other RESOURCE_EXHAUSTED refusals are 429
    return _STATUS.get(exc.code, 500)


def retry_headers(exc: AgentAuthError) -> dict[str, str]:
    """RFC 9110 §10.2.3 ``Retry-After`` for refusals that carry a retry hint."""
    after = exc.metadata.get("retryAfterSeconds")
    return {"Retry-After": after} if after else {}


def json_refusal(exc: AgentAuthError) -> web.Response:
    body = {"error": exc.reason.lower(), "error_description": exc.message}
    return web.json_response(body, status=http_status(exc), headers=retry_headers(exc))


def _route_key(request: web.Request) -> str | None:
    info = request.match_info
    if info.http_exception is not None:
        return None  # no such route or method: aiohttp answers 404/405 itself
    method = "GET" if request.method == "HEAD" else request.method
    return f"{method} {info.route.resource.canonical}" if info.route.resource else None


def _credential(request: web.Request, auth: str) -> str | None:
    if auth == "connect_link":
        return request.match_info.get("link", "")
    if auth == "oauth_state":
        return request.query.get("state") or None
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None  # HTTP: Basic or nothing at all is "no bearer credential"
    return value.strip()


def pipeline_middleware(pipeline: Pipeline) -> Callable[..., object]:
    @web.middleware
    async def run(request: web.Request, handler: Handler) -> web.StreamResponse:
        key = _route_key(request)
        if key is None:
            return await handler(request)
        rule = pipeline.rule(key)
        auth = rule.auth if rule is not None else "bearer"
        call = Call(key, "http", _credential(request, auth), request.remote)

        async def handle() -> web.StreamResponse:
            try:
                return await handler(request)
            except web.HTTPRequestEntityTooLarge:
                # The body is read inside the handler, after the audit attempt: as
                # one of our refusals it gets its outcome like any other (not INTERNAL).
                raise RequestTooLarge(request.client_max_size) from None

        try:
            return await pipeline.run(call, handle)
        except AgentAuthError as exc:
            renderers: dict[str, Callable[[AgentAuthError], web.StreamResponse]] = (
                request.app.get(RENDERERS) or {}
            )
            render = renderers.get(key, json_refusal)
            return _challenge_in_clients_scheme(request, render(exc))

    return run


def _challenge_in_clients_scheme(
    request: web.Request, response: web.StreamResponse
) -> web.StreamResponse:
    """RFC 6749 §5.2: "If the client attempted to authenticate via the "Authorization"
    request header field, the authorization server MUST respond with an HTTP 401
    (Unauthorized) status code and include the "WWW-Authenticate" response header
    field matching the authentication scheme used by the client."

    Only Basic is answered in kind (RFC 7617 §2, ``realm`` required); any other
    scheme keeps the route's own challenge, and nothing the client sent is echoed.
    """
    if response.status != 401 or "WWW-Authenticate" not in response.headers:
        return response
    scheme = request.headers.get("Authorization", "").partition(" ")[0]
    if scheme.lower() == "basic":
        response.headers["WWW-Authenticate"] = 'Basic realm="agentauth", charset="UTF-8"'
    return response


def build_http_app(
    keys: SigningKeyManager,
    metrics: Metrics,
    readiness: Readiness,
    jwks_max_age: int,
    *,
    pipeline: Pipeline,
) -> web.Application:
    @web.middleware
    async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            error = exc.reason.lower().replace(" ", "_")
            if request.path.startswith("/oauth2/") and exc.status < 500:
                error = "invalid_request"  # RFC 6749 §5.2 codes only on the OAuth endpoints
            response = web.json_response({"error": error}, status=exc.status)
            if "Allow" in exc.headers:
                # RFC 9110 §15.5.6: a 405 "MUST generate an Allow header field ...
                # containing a list of the target resource's currently supported methods."
                response.headers["Allow"] = exc.headers["Allow"]
        if request.path in CORS_PATHS and request.method in ("GET", "HEAD"):
            # Public documents a browser client must read cross-origin (Fetch standard
            # "simple" requests): any origin, no credentials, nowhere else.
            response.headers["Access-Control-Allow-Origin"] = "*"
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    async def jwks(request: web.Request) -> web.Response:
        body = keys.jwks_json()
        tag = entity_tag(body)
        cache = {"Cache-Control": f"public, max-age={jwks_max_age}", "ETag": tag}
        if none_match(request.headers.get("If-None-Match", ""), tag):
            return web.Response(status=304, headers=cache)
        return web.Response(text=body, content_type="application/json", headers=cache)

    async def healthz(_: web.Request) -> web.Response:
        # Liveness: the process answers. It never looks at the database.
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        # The same state gRPC health publishes (control_plane.api.readiness).
        ok = readiness.ready
        status = "ready" if ok else "draining" if readiness.draining else "not_ready"
        return web.json_response(
            {"status": status, "checks": readiness.checks}, status=200 if ok else 503
        )

    async def prometheus(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application(
        middlewares=[headers, pipeline_middleware(pipeline)],  # type: ignore[list-item]
        client_max_size=64 * 1024,
    )
    app[RENDERERS] = {}
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    return app
