"""The OAuth 2.0 HTTP surface: token (RFC 6749/8693/7523), introspection (RFC 7662),
revocation (RFC 7009) and authorization-server metadata (RFC 8414).

Requests are ``application/x-www-form-urlencoded``; errors are RFC 6749 §5.2
JSON bodies (``error``, ``error_description``) with ``Cache-Control: no-store``.
The handlers call the same use cases as the gRPC TokenService.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from control_plane.api.http import RENDERERS, retry_headers
from control_plane.api.pipeline import current_principal
from control_plane.domain.errors import (
    AgentAuthError,
    InvalidRequest,
    OAuthError,
    RequestTooLarge,
)
from control_plane.services.grants.base import (
    ACCESS_TOKEN_TYPE,
    CLIENT_CREDENTIALS,
    ID_TOKEN_TYPE,
    JWT_BEARER_ASSERTION,
    JWT_TOKEN_TYPE,
    TOKEN_EXCHANGE,
    TokenRequest,
)
from control_plane.services.grants.registry import TokenEndpoint
from control_plane.services.own_tokens import OwnTokens

#: Our RFC 8414 §2 extension member: the HTTP authentication schemes the revocation
#: endpoint accepts (the standard member has no registered value for Bearer).
REVOCATION_AUTH_SCHEMES = "agentauth_revocation_endpoint_auth_schemes_supported"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM = "application/x-www-form-urlencoded"
SINGLE = (
    "grant_type",
    "subject_token",
    "subject_token_type",
    "requested_token_type",
    "client_assertion_type",
    "client_assertion",
    "client_id",
    "organization",
    "service_account",
    "scope",
    "actor_token",
    "actor_token_type",
    "token",
    "token_type_hint",
)


def _json(
    body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(body, status=status, headers={**NO_STORE, **(headers or {})})


def oauth_error(exc: AgentAuthError) -> web.Response:
    if isinstance(exc, OAuthError):
        headers = (
            {"WWW-Authenticate": 'Bearer error="invalid_client"'} if exc.http_status == 401 else {}
        )
        return _json(
            {"error": exc.oauth_error, "error_description": exc.message}, exc.http_status, headers
        )
    if exc.code == "UNAUTHENTICATED":
        return _json(
            {"error": "invalid_client", "error_description": exc.message},
            401,
            {"WWW-Authenticate": "Bearer"},
        )
    if exc.code == "PERMISSION_DENIED":
        return _json({"error": "access_denied", "error_description": exc.message}, 403)
    if isinstance(exc, RequestTooLarge):
        # RFC 9110 §15.5.14 413; RFC 6749 §5.2 has no code of its own for it.
        return _json({"error": "invalid_request", "error_description": exc.message}, 413)
    if exc.code == "RESOURCE_EXHAUSTED":
        # RFC 6585 §4 429 with Retry-After; the RFC 6749 code for "overloaded, try later".
        return _json(
            {"error": "temporarily_unavailable", "error_description": exc.message},
            429,
            retry_headers(exc),
        )
    if exc.code in ("UNAVAILABLE", "INTERNAL"):
        # RFC 9110 §10.2.3: a 503 may say when to come back (a database outage does).
        return _json(
            {"error": "temporarily_unavailable", "error_description": exc.message},
            503,
            retry_headers(exc),
        )
    return _json({"error": "invalid_request", "error_description": exc.message}, 400)


async def _form(request: web.Request) -> MultiDictProxy[str]:
    if request.content_type != FORM:
        raise InvalidRequest(f"the body must be {FORM}")
    try:
        form = await request.post()
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the form body is not valid UTF-8 form encoding") from None
    for name in SINGLE:
        if len(form.getall(name, [])) > 1:  # RFC 6749 §3.2: no repeated parameters
            raise InvalidRequest(f"{name} is repeated")
    return form  # type: ignore[return-value]


def _text(form: MultiDictProxy[Any], name: str) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be text")
    return value


def add_oauth_routes(
    app: web.Application,
    *,
    issuer: str,
    endpoint: TokenEndpoint,
    own_tokens: OwnTokens,
    signing_algorithm: str,
) -> None:
    """The OAuth endpoints. Authentication, rate limits and audit are the pipeline's
    (``ROUTES`` in :mod:`.authz`); handlers raise, and refusals render as RFC 6749 JSON."""

    async def token(request: web.Request) -> web.Response:
        form = await _form(request)
        minted = await endpoint.exchange(
            TokenRequest(
                grant_type=_text(form, "grant_type"),
                subject_token=_text(form, "subject_token"),
                subject_token_type=_text(form, "subject_token_type"),
                requested_token_type=_text(form, "requested_token_type"),
                client_assertion_type=_text(form, "client_assertion_type"),
                client_assertion=_text(form, "client_assertion"),
                client_id=_text(form, "client_id"),
                organization=_text(form, "organization"),
                service_account=_text(form, "service_account"),
                audience=tuple(str(a) for a in form.getall("audience", [])),
                scope=_text(form, "scope"),
                actor_token=_text(form, "actor_token"),
                actor_token_type=_text(form, "actor_token_type"),
            )
        )
        body = {
            "access_token": minted.token,
            "token_type": "Bearer",
            "expires_in": minted.expires_in,
            "scope": " ".join(minted.scopes),
        }
        if _text(form, "grant_type") == TOKEN_EXCHANGE:
            body["issued_token_type"] = ACCESS_TOKEN_TYPE  # RFC 8693 §2.2.1
        return _json(body)

    async def introspect(request: web.Request) -> web.Response:
        form = await _form(request)
        result = await own_tokens.introspect(current_principal(), _token(form))
        if not result.active:
            return _json({"active": False})
        c = result.claims
        return _json(
            {
                "active": True,
                "token_type": "Bearer",
                **{
                    k: c[k]
                    for k in (
                        "scope",
                        "client_id",
                        "sub",
                        "org_id",
                        "exp",
                        "iat",
                        "nbf",
                        "aud",
                        "iss",
                        "jti",
                    )
                    if k in c
                },
            }
        )

    async def revoke(request: web.Request) -> web.Response:
        form = await _form(request)
        await own_tokens.revoke(current_principal(), _token(form))
        return web.Response(status=200, headers=NO_STORE)

    async def metadata(_: web.Request) -> web.Response:
        base = issuer.rstrip("/")
        return web.json_response(
            {
                "issuer": issuer,
                "token_endpoint": f"{base}/oauth2/token",
                "jwks_uri": f"{base}/.well-known/jwks.json",
                "introspection_endpoint": f"{base}/oauth2/introspect",
                "revocation_endpoint": f"{base}/oauth2/revoke",
                "grant_types_supported": [TOKEN_EXCHANGE, CLIENT_CREDENTIALS],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": [
                    "RS256",
                    "ES256",
                    "PS256",
                    "EdDSA",
                ],
                # RFC 8414 §2: introspection may name "OAuth Access Token Types"
                # registry values; both endpoints take an API key or one of our tokens
                # as an RFC 6750 Bearer credential.
                "introspection_endpoint_auth_methods_supported": ["Bearer"],
                # The revocation member may only name token endpoint auth methods, and
                # omitting it means client_secret_basic, which is not accepted either;
                # so it is left out and the scheme said in our own extension member.
                REVOCATION_AUTH_SCHEMES: ["Bearer"],
                # REQUIRED, though there is no authorization endpoint: "none" (OAuth 2.0
                # Multiple Response Type Encoding Practices §4) is the registered value
                # that issues nothing; an empty list fails stock validators.
                "response_types_supported": ["none"],
                "subject_token_types_supported": [
                    JWT_TOKEN_TYPE,
                    ACCESS_TOKEN_TYPE,
                    ID_TOKEN_TYPE,
                ],
                "client_assertion_types_supported": [JWT_BEARER_ASSERTION],
                "access_token_signing_alg_values_supported": [signing_algorithm],
            }
        )

    for route in ("POST /oauth2/token", "POST /oauth2/introspect", "POST /oauth2/revoke"):
        app[RENDERERS][route] = oauth_error
    app.router.add_post("/oauth2/token", token)
    app.router.add_post("/oauth2/introspect", introspect)
    app.router.add_post("/oauth2/revoke", revoke)
    app.router.add_get("/.well-known/oauth-authorization-server", metadata)


def _token(form: MultiDictProxy[Any]) -> str:
    """The ``token`` parameter of introspection and revocation; any length.

    A token too long to be one of ours is simply not ours: RFC 7662 §2.2 "If the
    introspection call is properly authorized but the token is not active, does
    not exist on this server, or the protected resource is not allowed to
    introspect this particular token, then the authorization server MUST return
    an introspection response with the 'active' field set to 'false'", and RFC
    7009 §2.2 "invalid tokens do not cause an error response". The verifier
    refuses oversized tokens before decoding them; the body limit bounds the rest.
    """
    value = _text(form, "token")
    if not value:
        raise InvalidRequest("token is required")  # RFC 7009 §2.1 / RFC 7662 §2.1: REQUIRED
    return value
