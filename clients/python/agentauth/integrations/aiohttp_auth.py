"""An aiohttp middleware that admits only requests with a valid agentauth token.

    validator = AsyncTokenValidator(ISSUER, "https://reports.internal")
    middleware = validator_middleware(
        validator, required_scopes=["reports.read"], public_paths=["/healthz"]
    )
    app = web.Application(middlewares=[middleware])

    async def handler(request):
        token = verified_token(request)   # the VerifiedToken
        ...

Failures follow RFC 6750 §3, "The WWW-Authenticate Response Header Field",
with the reason in a JSON body (``{"error": "TOKEN_EXPIRED"}``):

* no ``Authorization`` header: 401 with a bare ``Bearer`` challenge - §3.1:
  "If the request lacks any authentication information ... the resource
  server SHOULD NOT include an error code or other error information";
* a header that is not ``Bearer <token>``, or sent twice: 400,
  ``error="invalid_request"``;
* a refused token: 401, ``error="invalid_token"`` - "The access token
  provided is expired, revoked, malformed, or invalid for other reasons";
* a missing scope: 403, ``error="insufficient_scope"`` with the ``scope``
  needed - "The request requires higher privileges than provided by the
  access token"; a token of another org: 403 without a challenge (no
  RFC 6750 code fits, and retrying with a token is pointless);
* keys not fetchable yet: 503 with ``Retry-After``.

``public_paths`` are matched exactly against ``request.path``. aiohttp is
imported when :func:`validator_middleware` is called, never at import time.

The token is stored in the request under the name ``"agentauth_token"``: as a
``web.RequestKey`` on aiohttp >= 3.14, which warns (``NotAppKeyWarning``) when
a plain string key is set, and as the plain string before that.
:func:`verified_token` and :func:`request_key` work on both.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from agentauth._errors import AgentAuthError
from agentauth._validator import AsyncTokenValidator
from agentauth._validator_claims import VerifiedToken
from agentauth._validator_errors import (
    JwksUnavailableError,
    TokenForbiddenError,
    TokenReason,
)
from agentauth.integrations._bearer import CREDENTIALS_MISSING, bearer_token

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["REQUEST_KEY_NAME", "request_key", "validator_middleware", "verified_token"]

#: The name under which the middleware stores the :class:`~agentauth.VerifiedToken`.
REQUEST_KEY_NAME: Final = "agentauth_token"
_RETRY_AFTER_SECONDS: Final = "5"

_Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]
_Middleware = Callable[["web.Request", _Handler], Awaitable["web.StreamResponse"]]


@functools.cache
def request_key() -> Any:
    """The key of the token in request storage (``request[request_key()]``)."""
    from aiohttp import web

    key_type = getattr(web, "RequestKey", None)
    if key_type is None:  # aiohttp < 3.14: string keys, and no warning for them
        return REQUEST_KEY_NAME
    return key_type(REQUEST_KEY_NAME, VerifiedToken)


def verified_token(request: web.Request) -> VerifiedToken | None:
    """The token the middleware verified for ``request``; None on a public path."""
    value = request.get(request_key())
    return value if isinstance(value, VerifiedToken) else None


def _refusal(exc: AgentAuthError, scope: str) -> web.Response:
    from aiohttp import web

    body = {"error": exc.reason}
    if isinstance(exc, JwksUnavailableError):
        return web.json_response(body, status=503, headers={"Retry-After": _RETRY_AFTER_SECONDS})
    if isinstance(exc, TokenForbiddenError):
        headers = {}
        if exc.reason == TokenReason.TOKEN_SCOPE_INSUFFICIENT:
            headers["WWW-Authenticate"] = f'Bearer error="insufficient_scope", scope="{scope}"'
        return web.json_response(body, status=403, headers=headers)
    if exc.reason == CREDENTIALS_MISSING:
        return web.json_response(body, status=401, headers={"WWW-Authenticate": "Bearer"})
    if exc.reason.startswith("TOKEN_"):
        challenge = 'Bearer error="invalid_token"'
        return web.json_response(body, status=401, headers={"WWW-Authenticate": challenge})
    challenge = 'Bearer error="invalid_request"'
    return web.json_response(body, status=400, headers={"WWW-Authenticate": challenge})


def validator_middleware(
    validator: AsyncTokenValidator,
    *,
    required_scopes: Iterable[str] = (),
    public_paths: Iterable[str] = (),
) -> _Middleware:
    """Build the middleware; see the module docstring for the responses."""
    from aiohttp import web

    if isinstance(required_scopes, str) or isinstance(public_paths, str):
        raise TypeError("required_scopes and public_paths must be collections of strings")
    scopes = frozenset(required_scopes)
    # RFC 6750 §3: scope = space-delimited scope values, sorted for a stable header.
    scope_text = " ".join(sorted(scopes))
    public = frozenset(public_paths)

    @web.middleware
    async def agentauth_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path in public:
            return await handler(request)
        try:
            token = bearer_token(request.headers.getall("Authorization", []))
            verified = await validator.validate(token, required_scopes=scopes)
        except AgentAuthError as exc:
            return _refusal(exc, scope_text)
        request[request_key()] = verified
        return await handler(request)

    return agentauth_middleware
