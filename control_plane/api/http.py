"""The small HTTP surface: published keys, liveness, readiness, metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from control_plane.api.metrics import Metrics
from control_plane.tokens.keys import SigningKeyManager

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def build_http_app(
    keys: SigningKeyManager,
    metrics: Metrics,
    db_ready: Callable[[], Awaitable[bool]],
    jwks_max_age: int,
) -> web.Application:
    @web.middleware
    async def headers(request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]):  # type: ignore[no-untyped-def]
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            error = exc.reason.lower().replace(" ", "_")
            if request.path.startswith("/oauth2/") and exc.status < 500:
                error = "invalid_request"  # RFC 6749 §5.2 codes only on the OAuth endpoints
            response = web.json_response({"error": error}, status=exc.status)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    async def jwks(_: web.Request) -> web.Response:
        return web.Response(
            text=keys.jwks_json(),
            content_type="application/json",
            headers={"Cache-Control": f"public, max-age={jwks_max_age}"},
        )

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = {"database": await db_ready(), "signing_keys": keys.loaded}
        ok = all(checks.values())
        return web.json_response(
            {"status": "ready" if ok else "not_ready", "checks": checks}, status=200 if ok else 503
        )

    async def prometheus(_: web.Request) -> web.Response:
        return web.Response(text=metrics.render(), content_type="text/plain")

    app = web.Application(middlewares=[headers], client_max_size=64 * 1024)
    app.router.add_get("/.well-known/jwks.json", jwks)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    return app
