"""A loopback OAuth 2.0 provider that emulates any ``oauth2`` connector of the catalog.

This is a test emulator, not an authorization server: one user consents to
anything, and it keeps everything in memory. What it reproduces is the wire
format a client meets at each provider - the authorization response, the token
endpoint's client authentication, request and reply formats, the refresh-token
policy, error bodies and the resource API's 401 - so that agentauth's connect,
refresh and ExecuteTool paths are exercised against realistic replies.
Provider facts come from ``shared/reference/provider_quirks.md``; where that
file marks a body "unverified", the reply here is an educated default (see
:data:`PROFILES`).

Endpoints. Every real URL of the connector is served under its host, so
``https://oauth2.googleapis.com/token`` is ``{base_url}/oauth2.googleapis.com/token``
(:meth:`SandboxProvider.sandbox_url`, :meth:`SandboxProvider.connector_for_sandbox`);
``{connection.x}`` host placeholders match any value, which the grant then
remembers. ``/authorize``, ``/token`` and ``/revoke`` are short aliases.

* authorization endpoint (RFC 6749 §4.1.1): ``GET`` checks the client and
  ``redirect_uri`` (errors there get an HTML page, never a redirect:
  §4.1.2.1), then shows a consent page without JavaScript. Its form ``POST``
  with ``decision=allow`` redirects with a one-time ``code`` bound to the
  client, ``redirect_uri``, scope and PKCE ``code_challenge`` (S256 only),
  plus ``state`` and, when the connector ``sends_iss``, RFC 9207 ``iss``;
  ``decision=deny`` redirects with ``error=access_denied``.
* token endpoint: ``authorization_code`` and ``refresh_token`` grants. Client
  authentication is exactly the connector's ``client_auth`` (credentials in
  the other place are refused), the body exactly its ``token_request_format``.
  Replies and errors are shaped per provider. Refresh tokens follow
  ``auth.refresh``: non-rotating (the same one keeps working), rotating (a new
  one each time; the old one stays valid unless ``single_use``), single-use
  (reuse after ``reuse_leeway_seconds`` is refused), plus inactivity and
  absolute expiry. Google adds two limits [G1]: a cap on live refresh tokens
  per user and client (``refresh_token_cap``: one more silently revokes the
  oldest) and, with ``testing_mode``, refresh tokens that die after 7 days
  unless only sign-in scopes were granted. A refresh token is only issued when
  the provider would issue one: the connector supports refresh, a
  ``refresh_scopes`` scope was granted, and the provider's offline switch was
  sent (Google ``access_type=offline``, Dropbox ``token_access_type=offline``,
  Shopify ``expiring=1``).
* revocation endpoint (when the connector has ``revoke_url``): the token comes
  from the ``token`` parameter (body or query) or the bearer header; the whole
  grant is revoked.
* resource API: a request matching a tool's method and URL answers 200 with a
  small JSON body once ``Authorization: Bearer <token>`` is live, the URL's
  ``{connection.x}`` values are the grant's and the tool's scopes were
  granted; otherwise the provider's 401 (or insufficient-scope) reply. Every
  call is recorded in :attr:`SandboxProvider.requests` with credentials
  redacted. Nothing here logs a token or a secret.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import hmac
import html
import json
import random
import re
import secrets
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, unquote, unquote_plus, urlencode, urlsplit, urlunsplit

from aiohttp import web

from control_plane.connectors.model import Connector, Tool
from control_plane.sandbox._loopback import LoopbackServer, json_response
from control_plane.sandbox.routing import rewrite_for_sandbox, sandbox_url

__all__ = [
    "PROFILES",
    "ApiRequest",
    "Faults",
    "IssuedToken",
    "ProviderProfile",
    "SandboxProvider",
    "TokenIssue",
    "profile_for",
    "rfc_errors",
]

_T = TypeVar("_T")
_Reply = tuple[int, Any, Mapping[str, str]]  # status, JSON body (bytes: raw), headers
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
CODE_TTL = 600  # RFC 6749 §4.1.2: "A maximum authorization code lifetime of 10 minutes"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1
_CREDENTIAL_HEADERS = frozenset({"authorization", "x-shopify-access-token", "cookie"})


# --- token-endpoint refusals --------------------------------------------------------------
# A refusal has a reason "<family>[.<detail>]"; a profile maps it to the provider's reply,
# falling back to the family. Families map to RFC 6749 §5.2 codes.
_RFC_CODES = {
    "code": "invalid_grant",
    "refresh": "invalid_grant",
    "client": "invalid_client",
    "request": "invalid_request",
    "grant_type": "unsupported_grant_type",
    "scope": "invalid_scope",
}
_DESCRIPTIONS = {
    "code.unknown": "The authorization code is invalid or expired.",
    "code.replayed": "The authorization code was already redeemed.",
    "code.redirect_uri": "The redirect_uri does not match the authorization request.",
    "code.verifier": "The code_verifier does not match the code_challenge.",
    "refresh.unknown": "The refresh token is invalid.",
    "refresh.revoked": "The refresh token was revoked.",
    "refresh.expired": "The refresh token expired.",
    "refresh.reused": "The refresh token was already used.",
    "client.unknown": "Unknown client.",
    "client.secret": "Client authentication failed.",
    "client.method": "The client authenticated with a method it is not registered for.",
    "request": "The request is malformed.",
    "grant_type": "The grant type is not supported.",
    "scope": "The requested scope exceeds the grant.",
}


def _family(reason: str) -> str:
    return reason.split(".", 1)[0]


def _pick(table: Mapping[str, _T], reason: str) -> _T | None:
    """``table[reason]``, else ``table[family]``, else None."""
    return table.get(reason, table.get(_family(reason)))


class _Refused(Exception):
    def __init__(self, reason: str, description: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.description = description or _DESCRIPTIONS[reason]


TokenErrorFn = Callable[[str, str], tuple[int, Any]]  # (reason, description) -> status, body


def rfc_errors(
    status: Mapping[str, int] | None = None,
    codes: Mapping[str, str] | None = None,
    text: Mapping[str, str] | None = None,
) -> TokenErrorFn:
    """RFC 6749 §5.2 ``{"error", "error_description"}``: 400, or 401 for ``invalid_client``."""

    def reply(reason: str, description: str) -> tuple[int, Any]:
        code = _pick(codes or {}, reason) or _RFC_CODES[_family(reason)]
        default = 401 if _family(reason) == "client" else 400
        body = {"error": code, "error_description": _pick(text or {}, reason) or description}
        return _pick(status or {}, reason) or default, body

    return reply


_SLACK_CODES = {  # [S2]; PKCE mismatch is not documented: invalid_code
    "code": "invalid_code",
    "code.redirect_uri": "bad_redirect_uri",
    "refresh": "invalid_refresh_token",
    "client.unknown": "invalid_client_id",
    "client": "bad_client_secret",
    "grant_type": "invalid_grant_type",
    "request": "invalid_arguments",
    "scope": "invalid_scope",
}


def _slack_error(reason: str, _: str) -> tuple[int, Any]:
    return 200, {"ok": False, "error": _pick(_SLACK_CODES, reason) or "invalid_arguments"}


_GITHUB_CODES = {  # [GH2][GH8]; PKCE mismatch is not documented: bad_verification_code
    "code": ("bad_verification_code", "The code passed is incorrect or expired."),
    "code.redirect_uri": (
        "redirect_uri_mismatch",
        "The redirect_uri MUST match the registered callback URL for this application.",
    ),
    "refresh": ("bad_refresh_token", "The refresh token passed is incorrect or expired."),
    "client": (
        "incorrect_client_credentials",
        "The client_id and/or client_secret passed are incorrect.",
    ),
}


def _github_error(reason: str, description: str) -> tuple[int, Any]:
    code, text = _pick(_GITHUB_CODES, reason) or (_RFC_CODES[_family(reason)], description)
    uri = (
        "https://docs.github.com/apps/managing-oauth-apps/"
        "troubleshooting-oauth-app-access-token-request-errors/#" + code.replace("_", "-")
    )
    return 200, {"error": code, "error_description": text, "error_uri": uri}


_AADSTS: Mapping[str, tuple[str, int, str]] = {  # [M3]; reason -> error, AADSTS code, message
    "code.replayed": (
        "invalid_grant",
        54005,
        "OAuth2 Authorization code was already redeemed, please retry with a new valid code "
        "or use an existing refresh token.",
    ),
    "code.verifier": (
        "invalid_grant",
        501481,
        "The Code_Verifier does not match the code_challenge supplied in the authorization "
        "request.",
    ),
    "refresh.expired": (
        "invalid_grant",
        700082,
        "The refresh token has expired due to inactivity.",
    ),
    "refresh.revoked": (
        "invalid_grant",
        50173,
        "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
    ),
    "client.unknown": (
        "unauthorized_client",
        700016,
        "Application with identifier was not found in the directory.",
    ),
    "client.secret": ("invalid_client", 7000215, "Invalid client secret provided."),
    "client.method": (
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or "
        "'client_secret'.",
    ),
    "grant_type": ("unsupported_grant_type", 70003, "The app requested an unsupported grant type."),
    "scope": (
        "invalid_scope",
        70011,
        "The provided value for the input parameter 'scope' is not valid.",
    ),
}


def _microsoft_error(reason: str, _: str) -> tuple[int, Any]:
    """The AADSTS envelope: ``error_codes``, ``trace_id``, ``correlation_id``, ``timestamp``."""
    error, code, message = _pick(_AADSTS, reason) or (
        _RFC_CODES[_family(reason)],
        9002313,
        "Invalid request. Request is malformed or invalid.",
    )
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return (401 if error == "invalid_client" else 400), {
        "error": error,
        "error_description": f"AADSTS{code}: {message} Trace ID: {trace} "
        f"Correlation ID: {correlation} Timestamp: {stamp}",
        "error_codes": [code],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }


_HUBSPOT_STATUS = {  # [H1][X-airbyte-79592] BAD_REFRESH_TOKEN, BAD_CLIENT_ID; others unverified
    "refresh": ("BAD_REFRESH_TOKEN", "refresh token is invalid, expired or revoked"),
    "code": ("BAD_AUTH_CODE", "missing or invalid auth code"),
    "code.redirect_uri": ("BAD_REDIRECT_URI", "redirect_uri does not match"),
    "client.unknown": ("BAD_CLIENT_ID", "missing or invalid client_id"),
    "client": ("BAD_CLIENT_SECRET", "missing or invalid client_secret"),
    "grant_type": ("BAD_GRANT_TYPE", "unsupported grant_type"),
}


def _hubspot_error(reason: str, description: str) -> tuple[int, Any]:
    status, text = _pick(_HUBSPOT_STATUS, reason) or ("BAD_REQUEST", description)
    return 400, {
        "status": status,
        "message": text,
        "correlationId": str(uuid.uuid4()),
        "error": _RFC_CODES[_family(reason)],
        "error_description": text,
    }


_ZOOM_REASONS = {  # "Invalid Token!" [ZM2]; the others unverified
    "refresh": (400, "invalid_request", "Invalid Token!"),
    "code": (400, "invalid_request", "Invalid authorization code"),
    "client": (401, "invalid_client", "Invalid client_id or client_secret"),
}


def _zoom_error(reason: str, description: str) -> tuple[int, Any]:
    default = (400, _RFC_CODES[_family(reason)], description)
    status, error, text = _pick(_ZOOM_REASONS, reason) or default
    return status, {"reason": text, "error": error}


# --- API replies ----------------------------------------------------------------------------


def _rid() -> str:
    return secrets.token_hex(8)


def _bearer_401(state: str, _: int) -> _Reply:
    """RFC 6750 §3.1: no error code when the request carried no token."""
    if state == "missing":
        return 401, {"error": "invalid_request"}, {"WWW-Authenticate": 'Bearer realm="sandbox"'}
    body = {"error": "invalid_token", "error_description": f"The access token is {state}."}
    return 401, body, {"WWW-Authenticate": 'Bearer realm="sandbox", error="invalid_token"'}


def _bearer_403(needed: Sequence[str], _: Sequence[str]) -> _Reply:
    scope = " ".join(needed)
    header = f'Bearer realm="sandbox", error="insufficient_scope", scope="{scope}"'
    return 403, {"error": "insufficient_scope", "scope": scope}, {"WWW-Authenticate": header}


def _generic_429(retry_after: int, _: float) -> _Reply:
    return 429, {"error": "rate_limited"}, {"Retry-After": str(retry_after)}


def _fixed(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Any:
    """A reply that ignores its arguments."""
    return lambda *_: (status, body, headers or {})


_GOOGLE_REALM = 'Bearer realm="https://accounts.google.com/"'
_GOOGLE_401 = {
    "error": {
        "code": 401,
        "message": "Request had invalid authentication credentials. Expected OAuth 2 access "
        "token, login cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project.",
        "errors": [
            {
                "message": "Invalid Credentials",
                "domain": "global",
                "reason": "authError",
                "location": "Authorization",
                "locationType": "header",
            }
        ],
        "status": "UNAUTHENTICATED",
    }
}


def _google_403(needed: Sequence[str], _: Sequence[str]) -> _Reply:
    body = {
        "error": {
            "code": 403,
            "message": "Request had insufficient authentication scopes.",
            "errors": [
                {
                    "message": "Insufficient Permission",
                    "domain": "global",
                    "reason": "insufficientPermissions",
                }
            ],
            "status": "PERMISSION_DENIED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                    "domain": "googleapis.com",
                }
            ],
        }
    }
    header = f'{_GOOGLE_REALM}, error="insufficient_scope", scope="{" ".join(needed)}"'
    return 403, body, {"WWW-Authenticate": header}


def _google_429(retry_after: int, _: float) -> _Reply:
    reason = {"message": "User-rate limit exceeded.", "domain": "usageLimits"}
    body = {
        "error": {
            "code": 429,
            "message": "User-rate limit exceeded.",
            "errors": [{**reason, "reason": "userRateLimitExceeded"}],
            "status": "RESOURCE_EXHAUSTED",
        }
    }
    return 429, body, {"Retry-After": str(retry_after)}


def _slack_401(state: str, _: int) -> _Reply:
    errors = {"missing": "not_authed", "expired": "token_expired", "revoked": "token_revoked"}
    return 200, {"ok": False, "error": errors.get(state, "invalid_auth")}, {}


def _slack_403(needed: Sequence[str], granted: Sequence[str]) -> _Reply:
    body = {"ok": False, "error": "missing_scope", "needed": ",".join(needed)}
    return 200, {**body, "provided": ",".join(granted)}, {}


def _graph_401(state: str, _: int) -> _Reply:
    message = {
        "missing": "Access token is empty.",
        "unknown": "CompactToken parsing failed with error code: 80049217",
    }.get(state, "Access token has expired or is not yet valid.")
    inner = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": str(uuid.uuid4()),
    }
    body = {
        "error": {"code": "InvalidAuthenticationToken", "message": message, "innerError": inner}
    }
    return 401, body, {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'}


def _hubspot_401(state: str, ago: int) -> _Reply:
    base = {"status": "error", "correlationId": str(uuid.uuid4())}
    if state == "expired":  # [H4]
        message = f"The OAuth token used to make this call expired {max(ago, 1)} second(s) ago."
        return 401, {**base, "message": message, "category": "EXPIRED_AUTHENTICATION"}, {}
    message = (
        "Authentication credentials not found. This API supports OAuth 2.0 authentication "
        "and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
    )
    return 401, {**base, "message": message, "category": "INVALID_AUTHENTICATION"}, {}


def _hubspot_403(needed: Sequence[str], _: Sequence[str]) -> _Reply:
    body = {
        "status": "error",
        "message": "This app hasn't been granted all required scopes to make this call.",
        "correlationId": str(uuid.uuid4()),
        "errors": [
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredScopes": list(needed)},
            }
        ],
        "category": "MISSING_SCOPES",
    }
    return 403, body, {}


def _hubspot_429(retry_after: int, _: float) -> _Reply:
    body = {
        "status": "error",
        "message": "You have reached your secondly limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": "SECONDLY",
    }
    return 429, body, {"Retry-After": str(retry_after)}


def _github_401(state: str, _: int) -> _Reply:
    message = "Requires authentication" if state == "missing" else "Bad credentials"
    body = {
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": "401",
    }
    return 401, body, {}


def _github_429(retry_after: int, now: float) -> _Reply:
    body = {
        "message": "API rate limit exceeded for user.",
        "documentation_url": "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api",
    }
    reset = str(int(now) + retry_after)
    return 429, body, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}


def _notion_401(state: str, _: int) -> _Reply:
    body = {"object": "error", "status": 401, "code": "unauthorized"}
    return 401, {**body, "message": "API token is invalid.", "request_id": str(uuid.uuid4())}, {}


def _notion_429(retry_after: int, _: float) -> _Reply:
    body = {"object": "error", "status": 429, "code": "rate_limited"}
    message = "You have been rate limited. Please try again in a few minutes."
    return 429, {**body, "message": message}, {"Retry-After": str(retry_after)}


def _dropbox_401(state: str, _: int) -> _Reply:
    tag = "expired_access_token" if state == "expired" else "invalid_access_token"
    return 401, {"error_summary": f"{tag}/..", "error": {".tag": tag}}, {}


def _dropbox_403(needed: Sequence[str], _: Sequence[str]) -> _Reply:
    error = {".tag": "missing_scope", "required_scope": needed[0]}
    return 401, {"error_summary": "missing_scope/..", "error": error}, {}  # a 401 [D2]


def _dropbox_429(retry_after: int, _: float) -> _Reply:
    error = {"reason": {".tag": "too_many_requests"}, "retry_after": retry_after}
    body = {"error_summary": "too_many_requests/..", "error": error}
    return 429, body, {"Retry-After": str(retry_after)}


def _zoom_401(state: str, _: int) -> _Reply:
    message = "Access token is expired." if state == "expired" else "Invalid access token."
    return 401, {"code": 124, "message": message}, {}


def _zoom_403(needed: Sequence[str], _: Sequence[str]) -> _Reply:
    message = f"Invalid access token, does not contain scopes:[{', '.join(needed)}]."
    return 400, {"code": 4711, "message": message}, {}


def _intercom_401(state: str, _: int) -> _Reply:
    error = {"code": "unauthorized", "message": "Access Token Invalid"}
    return 401, {"type": "error.list", "request_id": str(uuid.uuid4()), "errors": [error]}, {}


def _intercom_429(retry_after: int, now: float) -> _Reply:
    error = {"code": "rate_limit_exceeded", "message": "Exceeded rate limit of 10000 in 60 seconds"}
    reset = str(int(now) + retry_after)
    return 429, {"type": "error.list", "errors": [error]}, {"X-RateLimit-Reset": reset}


def _shopify_403(needed: Sequence[str], _: Sequence[str]) -> _Reply:
    message = f"[API] This action requires merchant approval for {needed[0]} scope."
    return 403, {"errors": message}, {}


def _shopify_429(retry_after: int, _: float) -> _Reply:
    message = (
        "Exceeded 2 calls per second for api client. Reduce request rates to resume "
        "uninterrupted service."
    )
    return 429, {"errors": message}, {"Retry-After": f"{float(retry_after):.1f}"}


def _salesforce_429(retry_after: int, _: float) -> _Reply:  # the org's daily limit is a 403 [SF6]
    body = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    return 403, body, {}


def _linear_401(state: str, _: int) -> _Reply:  # exact body and status unverified
    error = {
        "message": "Authentication required, not authenticated",
        "extensions": {"code": "AUTHENTICATION_ERROR", "type": "authentication error"},
    }
    return 401, {"errors": [error]}, {}


def _linear_403(needed: Sequence[str], _: Sequence[str]) -> _Reply:  # unverified
    error = {
        "message": f"Invalid scope: {','.join(needed)} required",
        "extensions": {"code": "FORBIDDEN"},
    }
    return 403, {"errors": [error]}, {}


def _ok(tool: Tool) -> Any:
    return {"id": _rid(), "tool": tool.name}


# --- provider profiles ---------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class IssuedToken:
    """One token the sandbox issued (the value is kept out of ``repr``)."""

    value: str = field(repr=False)
    kind: str  # "access" | "refresh"
    chain: str  # "default"; Slack: "bot" | "user"
    grant_id: str
    scopes: tuple[str, ...]
    issued_at: float
    expires_at: float | None
    revoked: bool = False
    used_at: float | None = None  # refresh tokens: first exchange
    last_used: float = 0.0  # refresh tokens: the inactivity clock


@dataclass(slots=True)
class _Pair:
    access: IssuedToken
    refresh: IssuedToken | None  # the refresh token this reply carries
    scopes: tuple[str, ...]


@dataclass(slots=True)
class TokenIssue:
    """What one successful token request produced, for a profile's ``shape``."""

    grant_type: str
    grant_id: str
    chains: dict[str, _Pair]
    body: dict[str, Any]  # RFC 6749 §5.1 fields of the first chain


def _token_fields(p: SandboxProvider, pair: _Pair) -> dict[str, Any]:
    out: dict[str, Any] = {"access_token": pair.access.value}
    if pair.access.expires_at is not None and p.profile.send_expires_in:
        out["expires_in"] = round(pair.access.expires_at - pair.access.issued_at)
    if pair.refresh is not None:
        out["refresh_token"] = pair.refresh.value
    if pair.scopes:
        out["scope"] = (p.profile.scope_reply_separator or p.connector.auth.scope_separator).join(
            pair.scopes
        )
    return out


def _slack_shape(p: SandboxProvider, issue: TokenIssue) -> dict[str, Any]:
    """``oauth.v2.access``: bot token at the top, user token under ``authed_user`` [S2]."""
    body: dict[str, Any] = {
        "ok": True,
        "app_id": p.ident("app", "A"),
        "team": {"id": p.ident("team", "T"), "name": "Sandbox"},
        "enterprise": None,
        "is_enterprise_install": False,
    }
    if issue.grant_type == "refresh_token":  # a flat reply for whichever token was refreshed
        ((chain, pair),) = issue.chains.items()
        return {**body, **_token_fields(p, pair), "token_type": chain}
    body["authed_user"] = {"id": p.ident("user", "U")}
    if "bot" in issue.chains:
        body.update(_token_fields(p, issue.chains["bot"]), token_type="bot")
        body["bot_user_id"] = p.ident("bot", "U")
    if "user" in issue.chains:
        body["authed_user"].update(_token_fields(p, issue.chains["user"]), token_type="user")
    return body


def _salesforce_shape(p: SandboxProvider, issue: TokenIssue) -> dict[str, Any]:
    """No ``expires_in``; ``instance_url``, ``id``, ``issued_at`` (ms), ``signature`` [SF1].

    ``signature`` is what Salesforce documents: base64 HMAC-SHA256 of ``id`` +
    ``issued_at`` keyed with the client secret. ``instance_url`` is a real-looking
    host: :meth:`SandboxProvider.connector_for_sandbox` rewrites tool URLs, so the
    runtime's host substitution lands on the sandbox.
    """
    org, user = p.ident("org", "00D"), p.ident("sf_user", "005")
    login = urlsplit(p.connector.auth.token_url).netloc or "login.salesforce.com"
    identity = f"https://{login}/id/{org}/{user}"
    issued_at = str(int(p.clock() * 1000))
    mac = hmac.new(p.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256)
    return {
        **issue.body,
        "instance_url": f"https://{p.ident('instance', 'sandbox-').lower()}.my.salesforce.com",
        "id": identity,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": base64.b64encode(mac.digest()).decode(),
    }


def _hubspot_shape(p: SandboxProvider, issue: TokenIssue) -> dict[str, Any]:
    body = {**issue.body, "hub_id": int(p.ident("hub", "", digits=True)), "token_type": "bearer"}
    if "/oauth/20" in p.connector.auth.token_url:  # dated (2026-03) endpoints add scopes [H3]
        body["scopes"] = list(issue.chains[next(iter(issue.chains))].scopes)
    return body


def _github_shape(p: SandboxProvider, issue: TokenIssue) -> dict[str, Any]:
    body = {**issue.body, "token_type": "bearer"}
    body.setdefault("scope", "")
    if "refresh_token" in body:  # GitHub App user tokens: 6-month refresh tokens [GH2]
        body["refresh_token_expires_in"] = p.profile.refresh_ttl
    return body


def _notion_shape(p: SandboxProvider, issue: TokenIssue) -> dict[str, Any]:
    owner = {"type": "user", "user": {"object": "user", "id": p.ident("notion_user", "", uid=True)}}
    return {
        **issue.body,
        "token_type": "bearer",
        "bot_id": p.ident("bot", "", uid=True),
        "workspace_id": p.ident("workspace", "", uid=True),
        "workspace_name": "Sandbox workspace",
        "workspace_icon": None,
        "owner": owner,
        "duplicated_template_id": None,
    }


def _dropbox_shape(p: SandboxProvider, issue: TokenIssue) -> dict[str, Any]:
    body = {**issue.body, "token_type": "bearer"}
    if issue.grant_type == "authorization_code":
        body["account_id"] = "dbid:" + p.ident("dropbox", "AA")
        body["uid"] = p.ident("uid", "", digits=True)
    return body


def _asana_shape(p: SandboxProvider, issue: TokenIssue) -> dict[str, Any]:
    gid = p.ident("asana_user", "", digits=True)
    user = {"id": int(gid), "gid": gid, "name": "Sandbox User", "email": p.user}
    return {**issue.body, "token_type": "bearer", "data": user}


def _figma_shape(p: SandboxProvider, issue: TokenIssue) -> dict[str, Any]:
    if issue.grant_type == "refresh_token":  # only access_token + expires_in [F1][X-arctic]
        return {k: v for k, v in issue.body.items() if k in ("access_token", "expires_in")}
    uid = p.ident("figma_user", "", digits=True)
    return {**issue.body, "token_type": "bearer", "user_id": int(uid), "user_id_string": uid}


def _intercom_shape(p: SandboxProvider, issue: TokenIssue) -> dict[str, Any]:
    return {**issue.body, "token_type": "Bearer", "token": issue.body["access_token"]}


def _expiring_refresh_shape(p: SandboxProvider, issue: TokenIssue) -> dict[str, Any]:
    """Zendesk: ``refresh_token_expires_in`` next to the refresh token [Z2]."""
    body = dict(issue.body)
    if "refresh_token" in body and p.profile.refresh_ttl:
        body["refresh_token_expires_in"] = p.profile.refresh_ttl
    return body


def _shopify_shape(p: SandboxProvider, issue: TokenIssue) -> dict[str, Any]:
    """Expiring offline tokens [SH1]; the reply has no ``token_type`` [SH4]."""
    body = _expiring_refresh_shape(p, issue)
    body.pop("token_type", None)
    return body


def _microsoft_shape(p: SandboxProvider, issue: TokenIssue) -> dict[str, Any]:
    body = {**issue.body, "token_type": "Bearer"}
    if "expires_in" in body:
        body["ext_expires_in"] = body["expires_in"]
    return body


def _prefixes(access: str, refresh: str = "", expiring: str | None = None) -> Any:
    def prefix(kind: str, chain: str, has_refresh: bool) -> str:
        if kind == "refresh":
            return refresh
        return expiring if has_refresh and expiring is not None else access

    return prefix


def _slack_prefix(kind: str, chain: str, has_refresh: bool) -> str:
    if kind == "refresh":
        return "xoxe-1-"
    token = "xoxb-" if chain == "bot" else "xoxp-"
    return "xoxe." + token if has_refresh else token  # rotation on: xoxe.xoxb- / xoxe.xoxp- [S1]


def _atlassian_resources(p: SandboxProvider, scopes: Sequence[str]) -> Any:
    """``GET https://api.atlassian.com/oauth/token/accessible-resources`` [A1]."""
    site = {"id": p.ident("cloud", "", uid=True), "url": "https://sandbox.atlassian.net"}
    return [{**site, "name": "sandbox", "scopes": list(scopes), "avatarUrl": ""}]


@dataclass(frozen=True, slots=True)
class ProviderProfile:
    """How one provider's wire format differs from plain RFC 6749 / RFC 6750."""

    name: str
    #: Access-token lifetime in seconds (None: never expires).
    access_ttl: int | None = 3600
    #: Extra random seconds on top of ``access_ttl`` (Microsoft: 60-90 min [M2]).
    ttl_jitter: int = 0
    #: The reply carries ``expires_in`` (Salesforce: no [SF1]).
    send_expires_in: bool = True
    #: Grants without a refresh token get non-expiring access tokens (GitHub OAuth apps).
    static_without_refresh: bool = False
    #: Refresh-token lifetime (``refresh_token_expires_in``) in seconds, if any.
    refresh_ttl: int | None = None
    #: A non-rotating refresh reply repeats the refresh token (HubSpot).
    echo_refresh_token: bool = False
    #: Refreshing kills the previous access token too (GitHub [GH2], Zendesk [Z2]).
    refresh_kills_old_access: bool = False
    #: Reusing a spent refresh token outside the leeway revokes the whole grant (Atlassian [A2]).
    reuse_revokes_family: bool = False
    #: Live refresh tokens per user and client; one more silently revokes the oldest (Google).
    refresh_token_cap: int | None = None
    #: Refresh-token lifetime of an app in Testing mode (Google: 7 days), unless every
    #: granted scope is in ``testing_exempt_scopes``.
    testing_refresh_ttl: int | None = None
    testing_exempt_scopes: frozenset[str] = frozenset()
    #: Authorization parameter without which no refresh token is issued.
    offline_param: tuple[str, str] | None = None
    #: Token-request parameter (body or query) without which no refresh token is issued.
    token_offline_param: tuple[str, str] | None = None
    #: Token-request parameter that sets the access-token lifetime, with its bounds (Zendesk).
    ttl_param: tuple[str, int, int] | None = None
    #: Authorization parameters that carry scopes, and the token chain each one yields (Slack).
    chain_params: Mapping[str, str] | None = None
    #: Separator of ``scope`` in replies when it differs from the request's (GitHub: comma).
    scope_reply_separator: str | None = None
    #: Form-encoded replies unless ``Accept: application/json`` (GitHub [GH1]).
    form_unless_json_accepted: bool = False
    #: Request headers that carry the bare access token besides ``Authorization: Bearer``.
    token_headers: tuple[str, ...] = ()
    token_type: str = "Bearer"
    prefix: Callable[[str, str, bool], str] = _prefixes("")
    shape: Callable[[SandboxProvider, TokenIssue], dict[str, Any]] | None = None
    token_error: TokenErrorFn = field(default_factory=rfc_errors)
    unauthorized: Callable[[str, int], _Reply] = _bearer_401
    insufficient_scope: Callable[[Sequence[str], Sequence[str]], _Reply] = _bearer_403
    rate_limited: Callable[[int, float], _Reply] = _generic_429
    ok_body: Callable[[Tool], Any] = _ok
    revoke_reply: _Reply = (200, b"", {})
    #: Extra bearer-protected GET endpoints: real URL -> (provider, granted scopes) -> JSON.
    extra_api: Mapping[str, Callable[[SandboxProvider, Sequence[str]], Any]] = field(
        default_factory=dict
    )


_GOOGLE = ProviderProfile(
    name="google",
    access_ttl=3599,
    offline_param=("access_type", "offline"),
    # "There is currently a limit of 100 refresh tokens per Google Account per OAuth 2.0
    # client ID. If the limit is reached, creating a new refresh token automatically
    # invalidates the oldest refresh token without warning." [G1]
    refresh_token_cap=100,
    # "A Google Cloud Platform project with an OAuth consent screen configured for an
    # external user type and a publishing status of 'Testing' is issued a refresh token
    # expiring in 7 days, unless the only OAuth scopes requested are a subset of name,
    # email address, and user profile (through the userinfo.email, userinfo.profile,
    # openid scopes, or their OpenID Connect equivalents)." [G1]
    testing_refresh_ttl=7 * 86400,
    testing_exempt_scopes=frozenset(
        {
            "openid",
            "email",
            "profile",
            "https://www.googleapis.com/auth/userinfo.email",
            "https://www.googleapis.com/auth/userinfo.profile",
        }
    ),
    prefix=_prefixes("ya29.a0", "1//0"),
    token_error=rfc_errors(
        text={
            "refresh": "Token has been expired or revoked.",
            "code": "Bad Request",
            "client.unknown": "The OAuth client was not found.",
            "client": "Unauthorized",
        }
    ),
    unauthorized=_fixed(
        401, _GOOGLE_401, {"WWW-Authenticate": _GOOGLE_REALM + ', error="invalid_token"'}
    ),
    insufficient_scope=_google_403,
    rate_limited=_google_429,
)

#: Provider profiles by connector id; :func:`profile_for` falls back to the token host.
PROFILES: dict[str, ProviderProfile] = {
    "gmail": _GOOGLE,
    "google_calendar": _GOOGLE,
    "google_drive": _GOOGLE,
    "slack": ProviderProfile(
        name="slack",
        access_ttl=43200,  # 12 h with rotation [S1]
        static_without_refresh=True,
        chain_params={"scope": "bot", "user_scope": "user"},
        prefix=_slack_prefix,
        shape=_slack_shape,
        token_error=_slack_error,
        unauthorized=_slack_401,
        insufficient_scope=_slack_403,
        rate_limited=lambda s, _: (
            429,
            {"ok": False, "error": "ratelimited"},
            {"Retry-After": str(s)},
        ),
        ok_body=lambda tool: {"ok": True, "tool": tool.name},
        revoke_reply=(200, {"ok": True, "revoked": True}, {}),
    ),
    "outlook": ProviderProfile(
        name="microsoft",
        access_ttl=3600,
        ttl_jitter=1800,
        shape=_microsoft_shape,
        token_error=_microsoft_error,
        unauthorized=_graph_401,
        insufficient_scope=_fixed(
            403,
            {
                "error": {
                    "code": "ErrorAccessDenied",
                    "message": "Access is denied. Check credentials and try again.",
                }
            },
        ),
        rate_limited=lambda s, _: (
            429,
            {"error": {"code": "TooManyRequests", "message": "Too many requests."}},
            {"Retry-After": str(s)},
        ),
    ),
    "hubspot": ProviderProfile(
        name="hubspot",
        access_ttl=1800,  # [H3]
        echo_refresh_token=True,
        shape=_hubspot_shape,
        token_error=_hubspot_error,
        unauthorized=_hubspot_401,
        insufficient_scope=_hubspot_403,
        rate_limited=_hubspot_429,
    ),
    "salesforce": ProviderProfile(
        name="salesforce",
        access_ttl=7200,  # the session timeout; not sent [SF4]
        send_expires_in=False,
        prefix=_prefixes("00DSANDBOX!"),
        shape=_salesforce_shape,
        token_error=rfc_errors(
            status={"client": 400},
            codes={"client.unknown": "invalid_client_id"},
            text={
                "refresh": "expired access/refresh token",
                "code": "invalid authorization code",
                "code.verifier": "invalid code verifier",
                "client.unknown": "client identifier invalid",
                "client": "invalid client credentials",
            },
        ),
        unauthorized=_fixed(
            401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
        ),
        rate_limited=_salesforce_429,
    ),
    "github": ProviderProfile(
        name="github",
        access_ttl=28800,  # ghu_ user tokens: 8 h; gho_ OAuth-app tokens never expire [GH2][GH3]
        static_without_refresh=True,
        refresh_ttl=15897600,
        refresh_kills_old_access=True,
        scope_reply_separator=",",
        form_unless_json_accepted=True,
        token_type="bearer",
        prefix=_prefixes("gho_", "ghr_", expiring="ghu_"),
        shape=_github_shape,
        token_error=_github_error,
        unauthorized=_github_401,
        insufficient_scope=_fixed(
            403,
            {
                "message": "Resource not accessible by integration",
                "documentation_url": "https://docs.github.com/rest",
                "status": "403",
            },
        ),
        rate_limited=_github_429,
    ),
    "notion": ProviderProfile(
        name="notion",
        static_without_refresh=True,
        prefix=_prefixes("ntn_"),
        shape=_notion_shape,
        unauthorized=_notion_401,
        rate_limited=_notion_429,
        revoke_reply=(200, {}, {}),
    ),
    "linear": ProviderProfile(
        name="linear",
        access_ttl=86399,  # ~24 h [X-cyrus]
        prefix=_prefixes("lin_oauth_"),
        unauthorized=_linear_401,
        insufficient_scope=_linear_403,
        ok_body=lambda tool: {"data": {"id": _rid(), "tool": tool.name}},
    ),
    "jira": ProviderProfile(
        name="atlassian",
        reuse_revokes_family=True,
        token_error=rfc_errors(
            status={"code": 403, "refresh": 403},  # 403, not 400 [A1]
            text={
                "refresh": "Unknown or invalid refresh token.",
                "code": "Invalid authorization code",
            },
        ),
        unauthorized=_fixed(401, {"code": 401, "message": "Unauthorized"}),
        insufficient_scope=_fixed(
            401, {"code": 401, "message": "Unauthorized; scope does not match"}
        ),
        extra_api={
            "https://api.atlassian.com/oauth/token/accessible-resources": _atlassian_resources
        },
    ),
    "zendesk": ProviderProfile(
        name="zendesk",
        access_ttl=1800,  # default; 300 s - 48 h via expires_in [Z2]
        refresh_ttl=2592000,  # 30 days default [Z2]
        refresh_kills_old_access=True,
        ttl_param=("expires_in", 300, 172800),
        token_type="bearer",
        shape=_expiring_refresh_shape,
        unauthorized=_fixed(
            401,
            {
                "error": "invalid_token",
                "error_description": "The access token provided is expired, revoked, malformed "
                "or invalid for other reasons.",
            },
        ),
        insufficient_scope=_fixed(
            403,
            {
                "error": "Forbidden",
                "description": "You do not have access to this page. Please contact the account "
                "owner of this help desk for further help.",
            },
        ),
    ),
    "dropbox": ProviderProfile(
        name="dropbox",
        access_ttl=14400,  # sl. tokens: 4 h [D1]
        offline_param=("token_access_type", "offline"),
        prefix=_prefixes("sl."),
        shape=_dropbox_shape,
        token_error=rfc_errors(
            text={
                "refresh": "refresh token is invalid or revoked",
                "code": "code doesn't exist or has expired",
            }
        ),
        unauthorized=_dropbox_401,
        insufficient_scope=_dropbox_403,
        rate_limited=_dropbox_429,
        revoke_reply=(200, None, {}),
    ),
    "zoom": ProviderProfile(
        name="zoom",
        token_type="bearer",
        token_error=_zoom_error,
        unauthorized=_zoom_401,
        insufficient_scope=_zoom_403,
    ),
    "asana": ProviderProfile(
        name="asana",
        shape=_asana_shape,
        unauthorized=_fixed(401, {"errors": [{"message": "Not Authorized"}]}),
        insufficient_scope=_fixed(403, {"errors": [{"message": "Forbidden"}]}),
        ok_body=lambda tool: {"data": {"gid": _rid(), "tool": tool.name}},
    ),
    "figma": ProviderProfile(
        name="figma",
        access_ttl=7776000,  # commonly ~90 days (unverified)
        shape=_figma_shape,
        unauthorized=_fixed(403, {"status": 403, "err": "Invalid token"}),  # a 403 [F-community]
        insufficient_scope=_fixed(403, {"status": 403, "err": "Invalid scope"}),
        rate_limited=lambda s, _: (
            429,
            {"status": 429, "err": "Rate limit exceeded"},
            {"Retry-After": str(s)},
        ),
    ),
    "intercom": ProviderProfile(
        name="intercom",
        access_ttl=None,  # never expires, no refresh token [ND-intercom]
        shape=_intercom_shape,
        unauthorized=_intercom_401,
        rate_limited=_intercom_429,
    ),
    "shopify": ProviderProfile(
        name="shopify",
        static_without_refresh=True,  # legacy offline tokens never expire [SH1]
        refresh_ttl=7776000,  # 90 days [SH1]
        token_offline_param=("expiring", "1"),
        scope_reply_separator=",",
        token_headers=("X-Shopify-Access-Token",),
        prefix=_prefixes("shpat_", "shprt_"),
        shape=_shopify_shape,
        unauthorized=_fixed(
            401,
            {
                "errors": "[API] Invalid API key or access token "
                "(unrecognized login or wrong password)"
            },
        ),
        insufficient_scope=_shopify_403,
        rate_limited=_shopify_429,
    ),
}
_BY_HOST = {  # token-endpoint host suffix -> profile key, for connectors not listed by id
    "googleapis.com": "gmail",
    "slack.com": "slack",
    "microsoftonline.com": "outlook",
    "hubapi.com": "hubspot",
    "salesforce.com": "salesforce",
    "github.com": "github",
    "notion.com": "notion",
    "linear.app": "linear",
    "atlassian.com": "jira",
    "zendesk.com": "zendesk",
    "dropboxapi.com": "dropbox",
    "zoom.us": "zoom",
    "asana.com": "asana",
    "figma.com": "figma",
    "intercom.io": "intercom",
    "myshopify.com": "shopify",
}
_RFC_PROFILE = ProviderProfile(name="rfc6749")


def profile_for(connector: Connector) -> ProviderProfile:
    """The connector's profile: by id, else by its token host, else plain RFC 6749."""
    if connector.id in PROFILES:
        return PROFILES[connector.id]
    host = urlsplit(connector.auth.token_url).hostname or ""
    for suffix, key in _BY_HOST.items():
        if host == suffix or host.endswith("." + suffix):
            return PROFILES[key]
    return _RFC_PROFILE


# --- routing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Route:
    kind: str  # authorize | token | revoke | tool | extra
    pattern: re.Pattern[str]
    names: tuple[str, ...]  # placeholder per regex group
    tool: Tool | None = None
    url: str = ""

    def match(self, path: str) -> dict[str, str] | None:
        """``{connection field: value}`` of a matching raw path, else None."""
        m = self.pattern.fullmatch(path)
        if m is None:
            return None
        return {
            name.split(".", 1)[1]: unquote(value)
            for name, value in zip(self.names, m.groups(), strict=True)
            if name.startswith("connection.")
        }


def _route(kind: str, url: str, tool: Tool | None = None) -> _Route:
    """Match ``/<host>/<path>`` for ``https://<host>/<path>`` (query ignored).

    A placeholder matches one path segment (or part of one): ``{connection.shop}``
    in a host, ``{id}`` in a path, and a leading placeholder that holds a whole
    base URL (it is filled with a sandbox URL, whose host is one segment).
    """
    base = url.split("?", 1)[0]
    rest = base.removeprefix("https://")
    parts = _PLACEHOLDER.split(rest)
    regex = "/" + "".join(
        re.escape(part) if i % 2 == 0 else "([^/?#]+)" for i, part in enumerate(parts)
    )
    names = tuple(parts[1::2])
    return _Route(kind, re.compile(regex), names, tool, url)


def _alias(kind: str) -> _Route:
    return _Route(kind, re.compile("/" + kind), ())


# --- state -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Grant:
    id: str
    client_id: str
    connection: dict[str, str]
    created_at: float
    offline: bool
    revoked: bool = False


@dataclass(slots=True)
class _Consent:
    client_id: str
    redirect_uri: str
    redirect_sent: bool
    state: str | None
    scopes: dict[str, tuple[str, ...]]
    challenge: str | None
    connection: dict[str, str]
    offline: bool


@dataclass(slots=True)
class _Code:
    consent: _Consent
    expires_at: float
    grant: _Grant | None = None  # set once redeemed


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One resource-API call the sandbox saw (credential headers redacted)."""

    tool: str
    method: str
    url: str  # the real provider URL it stands for
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any  # parsed JSON, a form dict, text, or None
    status: int
    authorized: bool


@dataclass(slots=True)
class Faults:
    """Switchable failures. ``next_*`` and the one-shot flags are consumed by the request
    they hit; ``delay`` and ``retry_after`` stay until changed.

    * ``next_token_status`` - the next token request answers this status with an RFC
      6749-style body (``temporarily_unavailable`` for 503, else ``server_error``).
    * ``garbage_body`` - the next token request answers 200 with an HTML page.
    * ``drop_connection`` - the next token request: the connection is closed before it
      is processed (nothing changes on the server).
    * ``lose_response`` - the next token request is processed (codes are spent, refresh
      tokens rotate), then the connection is closed before the reply.
    * ``next_api_status`` - the next tool call answers this status: 429 gives the
      provider's rate-limit reply (Salesforce: 403 ``REQUEST_LIMIT_EXCEEDED``), others a
      generic JSON body.
    * ``retry_after`` - seconds advertised with injected 429/503 replies.
    * ``delay`` - seconds to wait before answering every token request and tool call.
    """

    next_token_status: int | None = None
    garbage_body: bool = False
    drop_connection: bool = False
    lose_response: bool = False
    next_api_status: int | None = None
    retry_after: int = 1
    delay: float = 0.0


class _Server(LoopbackServer):
    def __init__(self, routes: Callable[[], list[web.RouteDef]]) -> None:
        super().__init__()
        self._route_factory = routes

    def _routes(self) -> list[web.RouteDef]:
        return self._route_factory()


def _parse_basic(header: str) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: ``Basic base64(urlencode(id) ":" urlencode(secret))``."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _Refused("client.method", "Malformed Basic credentials.") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _Refused("client.method", "Malformed Basic credentials.")
    return unquote_plus(client_id), unquote_plus(secret)


def _with_query(uri: str, params: Mapping[str, str]) -> str:
    parts = urlsplit(uri)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body}\n</body></html>\n"
    )
    headers = {
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
    return web.Response(text=text, status=status, content_type="text/html", headers=headers)


def _reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    if isinstance(body, bytes):
        return web.Response(body=body, status=status, headers=dict(headers or {}))
    return json_response(body, status=status, headers=dict(headers or {}))


def _stringify(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class SandboxProvider:
    """A loopback emulator of ``connector``'s OAuth 2.0 provider and resource API.

    ``async with SandboxProvider(catalog.get("gmail")) as provider`` serves on
    ``127.0.0.1:<free port>``. ``provider.connector_for_sandbox()`` is the
    connector with its URLs pointed here; ``provider.issued`` lists the tokens
    issued, ``provider.requests`` the API calls seen, ``provider.faults`` switches
    failures on. ``clock`` (seconds since the epoch) drives every expiry.
    """

    def __init__(
        self,
        connector: Connector,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        redirect_uris: Sequence[str] | None = None,
        user: str = "sandbox-user@example.com",
        require_pkce: bool | None = None,
        access_ttl: int | None = None,
        withhold_scopes: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
        profile: ProviderProfile | None = None,
        refresh_token_cap: int | None = None,
        testing_mode: bool = False,
    ) -> None:
        if connector.auth.type != "oauth2":
            raise ValueError(f"{connector.id} is not an OAuth 2.0 connector")
        self.connector = connector
        self.profile = profile or profile_for(connector)
        self.client_id = client_id or "sandbox-" + secrets.token_hex(8)
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        #: Registered redirect URIs; None accepts any absolute http(s) URI.
        self.redirect_uris = tuple(redirect_uris) if redirect_uris is not None else None
        self.user = user
        self.require_pkce = connector.auth.pkce if require_pkce is None else require_pkce
        #: Overrides the profile's access-token lifetime (seconds) when set.
        self.access_ttl = access_ttl
        #: Scopes the user declines on the consent page (granular consent).
        self.withhold_scopes = set(withhold_scopes)
        #: Live refresh tokens per user and client before the oldest is silently revoked;
        #: overrides the profile's ``refresh_token_cap`` when set.
        self.refresh_token_cap = (
            self.profile.refresh_token_cap if refresh_token_cap is None else refresh_token_cap
        )
        #: The app is in Testing mode with an External audience (the profile's
        #: ``testing_refresh_ttl`` applies).
        self.testing_mode = testing_mode
        self.clock = clock
        self.faults = Faults()
        #: Every token issued, in order.
        self.issued: list[IssuedToken] = []
        #: Every resource-API call seen, in order.
        self.requests: list[ApiRequest] = []
        #: Tool name -> JSON body, or ``f(query, body) -> JSON``, to answer instead of the default.
        self.responses: dict[str, Any] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._grants: dict[str, _Grant] = {}
        self._codes: dict[str, _Code] = {}
        self._consents: dict[str, _Consent] = {}
        self._ids: dict[str, str] = {}
        self._routes = self._build_routes()
        self.server: LoopbackServer = _Server(
            lambda: [web.route("*", "/{tail:.*}", self._dispatch)]
        )

    # --- lifecycle and URLs ----------------------------------------------------------

    async def start(self, *, host: str = "127.0.0.1", port: int = 0) -> str:
        return await self.server.start(host=host, port=port)

    async def stop(self) -> None:
        await self.server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return self.server.url

    @property
    def issuer(self) -> str:
        """The RFC 9207 ``iss`` sent: the connector's issuer mapped onto the sandbox."""
        issuer = self.connector.auth.issuer
        return self.sandbox_url(issuer) if issuer else self.base_url

    def sandbox_url(self, real_url: str) -> str:
        """``https://host/path?q`` -> ``{base_url}/host/path?q`` (see :mod:`.routing`)."""
        return sandbox_url(self.base_url, real_url)

    def connector_for_sandbox(self, connector: Connector | None = None) -> Connector:
        """A copy of the connector whose endpoints, tool URLs and issuer point here."""
        return rewrite_for_sandbox(connector or self.connector, self.base_url)

    # --- test helpers ---------------------------------------------------------------

    def ident(self, name: str, prefix: str, *, digits: bool = False, uid: bool = False) -> str:
        """A stable per-sandbox identifier (team id, org id, hub id, ...)."""
        if name not in self._ids:
            if uid:
                value = str(uuid.uuid4())
            elif digits:
                value = str(secrets.randbelow(9 * 10**8) + 10**8)
            else:
                value = prefix + secrets.token_hex(5).upper()
            self._ids[name] = value
        return self._ids[name]

    def revoke_all(self) -> None:
        """The user removes the app: every grant and token stops working."""
        for grant in self._grants.values():
            grant.revoked = True
        for token in self.issued:
            token.revoked = True

    def token_state(self, value: str) -> str:
        """``live``, ``expired``, ``revoked``, ``used`` (a spent single-use refresh token,
        reusable only within the leeway) or ``unknown``."""
        token = self._tokens.get(value)
        if token is None:
            return "unknown"
        if token.revoked or self._grants[token.grant_id].revoked:
            return "revoked"
        if token.expires_at is not None and self.clock() >= token.expires_at:
            return "expired"
        if token.used_at is not None and self.connector.auth.refresh.single_use:
            return "used"
        return "live"

    # --- dispatch -------------------------------------------------------------------

    def _build_routes(self) -> list[_Route]:
        a = self.connector.auth
        routes = [_route("authorize", a.authorize_url), _route("token", a.token_url)]
        routes += [_alias("authorize"), _alias("token")]
        if a.revoke_url:
            routes += [_route("revoke", a.revoke_url), _alias("revoke")]
        routes += [_route("extra", url) for url in self.profile.extra_api]
        tools = [_route("tool", t.http.url, t) for t in self.connector.tools]
        # the most literal pattern first: /files/search before /files/{id}
        tools.sort(key=lambda r: (len(r.names), -len(r.pattern.pattern)))
        return routes + tools

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.split("?", 1)[0]
        tools: list[Tool] = []
        connection: dict[str, str] = {}
        matched_path = False
        for route in self._routes:
            found = route.match(path)
            if found is None:
                continue
            if route.kind == "authorize":
                return await self._authorize(request, found)
            if route.kind == "token":
                return await self._token(request, found)
            if route.kind == "revoke":
                return await self._revoke(request)
            if route.kind == "extra" and request.method == "GET":
                return self._extra(request, route)
            if route.kind == "tool" and route.tool is not None:
                matched_path = True
                if route.tool.http.method == request.method:
                    tools.append(route.tool)
                    connection = connection or found
        if tools:  # several tools may share one URL (GraphQL): any of them
            return await self._api(request, tools, connection)
        if matched_path:
            return json_response({"error": "method_not_allowed"}, status=405)
        return json_response({"error": "not_found", "path": path}, status=404)

    # --- authorization endpoint --------------------------------------------------------

    async def _authorize(self, request: web.Request, connection: dict[str, str]) -> web.Response:
        if request.method == "POST":
            return await self._decide(request)
        if request.method != "GET":
            return _page("Error", "<p>Method not allowed.</p>", 405)
        q = request.query
        if q.get("client_id") != self.client_id:
            return _page("Error", "<p>invalid_client: unknown client_id.</p>", 400)
        redirect = self._redirect_uri(q.get("redirect_uri"))
        if redirect is None:
            return _page("Error", "<p>invalid_request: redirect_uri is not registered.</p>", 400)
        state = q.get("state")

        def fail(error: str, description: str) -> web.Response:
            params = {"error": error, "error_description": description}
            return self._redirect(redirect, params, state)

        if q.get("response_type") != "code":
            return fail("unsupported_response_type", "Only response_type=code is supported.")
        challenge = q.get("code_challenge")
        if challenge is not None:
            if q.get("code_challenge_method") != "S256":
                return fail("invalid_request", "Only code_challenge_method=S256 is supported.")
            if not _S256_CHALLENGE.fullmatch(challenge):
                return fail("invalid_request", "Malformed code_challenge.")
        elif self.require_pkce:
            return fail("invalid_request", "code_challenge is required.")
        offline = self.profile.offline_param is None or (
            q.get(self.profile.offline_param[0]) == self.profile.offline_param[1]
        )
        ticket = secrets.token_urlsafe(24)
        self._consents[ticket] = _Consent(
            client_id=self.client_id,
            redirect_uri=redirect,
            redirect_sent="redirect_uri" in q,
            state=state,
            scopes=self._requested_scopes(q),
            challenge=challenge,
            connection=connection,
            offline=offline,
        )
        scopes = sorted({s for chain in self._consents[ticket].scopes.values() for s in chain})
        items = "".join(f"<li>{html.escape(s)}</li>" for s in scopes) or "<li>(no scopes)</li>"
        body = (
            f"<h1>{html.escape(self.connector.display_name)} (sandbox)</h1>\n"
            f"<p>Signed in as {html.escape(self.user)}. "
            f"The application {html.escape(self.client_id)} asks for:</p>\n<ul>{items}</ul>\n"
            f'<form method="post" action="{html.escape(request.raw_path.split("?")[0])}">\n'
            f'<input type="hidden" name="consent" value="{ticket}">\n'
            '<button type="submit" name="decision" value="allow">Allow</button>\n'
            '<button type="submit" name="decision" value="deny">Deny</button>\n</form>'
        )
        return _page(f"Authorize {self.connector.display_name}", body)

    def _redirect_uri(self, given: str | None) -> str | None:
        """The redirect URI to use, or None when there is no trustworthy one (§4.1.2.1)."""
        if self.redirect_uris is not None:
            if given is None:
                return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None
            return given if given in self.redirect_uris else None
        if given is None:
            return None
        parts = urlsplit(given)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            return None
        return given

    def _requested_scopes(self, q: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
        params = self.profile.chain_params or {self.connector.auth.scope_param: "default"}
        sep = self.connector.auth.scope_separator
        chains: dict[str, tuple[str, ...]] = {}
        for param, chain in params.items():
            if param in q:
                asked = [s for s in q[param].split(sep) if s]
                chains[chain] = tuple(s for s in asked if s not in self.withhold_scopes)
        if not chains:  # no scopes asked: the token the connector's scope_param would get
            chains[params.get(self.connector.auth.scope_param, "default")] = ()
        return chains

    async def _decide(self, request: web.Request) -> web.Response:
        form = await request.post()
        consent = self._consents.pop(str(form.get("consent", "")), None)
        if consent is None:
            return _page("Error", "<p>This consent page expired; start again.</p>", 400)
        if form.get("decision") != "allow":
            params = {"error": "access_denied", "error_description": "The user denied access."}
            return self._redirect(consent.redirect_uri, params, consent.state)
        code = secrets.token_urlsafe(32)
        self._codes[code] = _Code(consent, self.clock() + CODE_TTL)
        return self._redirect(consent.redirect_uri, {"code": code}, consent.state)

    def _redirect(self, uri: str, params: dict[str, str], state: str | None) -> web.Response:
        if state is not None:
            params["state"] = state
        if self.connector.auth.sends_iss:  # RFC 9207 §2: also on error responses
            params["iss"] = self.issuer
        headers = {"Location": _with_query(uri, params), "Cache-Control": "no-store"}
        return web.Response(status=302, headers=headers)

    # --- token endpoint ----------------------------------------------------------------

    async def _token(self, request: web.Request, connection: dict[str, str]) -> web.StreamResponse:
        if request.method != "POST":
            return json_response(
                {"error": "method_not_allowed"}, status=405, headers={"Allow": "POST"}
            )
        faults = self.faults
        if faults.delay:
            await asyncio.sleep(faults.delay)
        if faults.drop_connection:
            faults.drop_connection = False
            return self._drop(request)
        if faults.next_token_status is not None:
            status, faults.next_token_status = faults.next_token_status, None
            error = "temporarily_unavailable" if status == 503 else "server_error"
            headers = {**_NO_STORE, "Retry-After": str(faults.retry_after)}
            return json_response({"error": error}, status=status, headers=headers)
        if faults.garbage_body:
            faults.garbage_body = False
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            return web.Response(body=page, status=200, content_type="text/html")
        try:
            params = await self._token_params(request)
            client_id = self._authenticate(request, params)
            grant_type = params.get("grant_type")
            if grant_type == "authorization_code":
                issue = self._redeem_code(params, client_id, connection, request)
            elif grant_type == "refresh_token":
                issue = self._refresh(params, client_id, connection, request)
            elif grant_type is None:
                raise _Refused("request", "grant_type is required.")
            else:
                raise _Refused("grant_type")
        except _Refused as refused:
            status, body = self.profile.token_error(refused.reason, refused.description)
            return self._token_reply(request, status, body)
        if faults.lose_response:
            faults.lose_response = False
            return self._drop(request)
        body = self.profile.shape(self, issue) if self.profile.shape else issue.body
        return self._token_reply(request, 200, body)

    @staticmethod
    def _drop(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)  # never written

    def _token_reply(self, request: web.Request, status: int, body: Any) -> web.Response:
        form = self.connector.auth.token_response_format == "form"
        if self.profile.form_unless_json_accepted:
            form = "application/json" not in request.headers.get("Accept", "")
        if form and isinstance(body, dict):
            encoded = urlencode({k: _stringify(v) for k, v in body.items() if v is not None})
            response = web.Response(body=encoded.encode(), status=status, headers=_NO_STORE)
            response.content_type = "application/x-www-form-urlencoded"
            return response
        return json_response(body, status=status, headers=dict(_NO_STORE))

    async def _token_params(self, request: web.Request) -> dict[str, str]:
        """The body, exactly in the connector's ``token_request_format``."""
        raw = await request.read()
        if self.connector.auth.token_request_format == "json":
            if request.content_type != "application/json":
                raise _Refused("request", "The token endpoint takes a JSON body.")
            try:
                doc = json.loads(raw)
            except ValueError:
                raise _Refused("request", "The body is not valid JSON.") from None
            if not isinstance(doc, dict):
                raise _Refused("request", "The body must be a JSON object.")
            return {str(k): _stringify(v) for k, v in doc.items() if v is not None}
        if request.content_type != "application/x-www-form-urlencoded":
            raise _Refused("request", "The token endpoint takes a form-encoded body.")
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(raw))
        except (UnicodeDecodeError, ValueError):
            raise _Refused("request", "Malformed form body.") from None
        params = dict(pairs)
        if len(params) != len(pairs):  # RFC 6749 §3.2: parameters MUST NOT repeat
            raise _Refused("request", "A parameter was repeated.")
        return params

    def _authenticate(self, request: web.Request, params: Mapping[str, str]) -> str:
        """Client authentication exactly as registered (RFC 6749 §2.3.1)."""
        basic = _parse_basic(request.headers.get("Authorization", ""))
        body_id, body_secret = params.get("client_id"), params.get("client_secret")
        if basic is not None and body_secret is not None:
            raise _Refused("client.method", "Only one client authentication method may be used.")
        if self.connector.auth.client_auth == "client_secret_basic":
            if basic is None:
                raise _Refused("client.method", "This client authenticates with HTTP Basic.")
            client_id, secret = basic
            if body_id is not None and body_id != client_id:
                raise _Refused("client.method", "client_id differs from the Basic credentials.")
        else:
            if basic is not None:
                raise _Refused("client.method", "This client sends its credentials in the body.")
            if body_id is None or body_secret is None:
                raise _Refused("client.method", "client_id and client_secret are required.")
            client_id, secret = body_id, body_secret
        if client_id != self.client_id:
            raise _Refused("client.unknown")
        if not hmac.compare_digest(secret.encode(), self.client_secret.encode()):
            raise _Refused("client.secret")
        return client_id

    def _redeem_code(
        self,
        params: Mapping[str, str],
        client_id: str,
        connection: Mapping[str, str],
        request: web.Request,
    ) -> TokenIssue:
        """RFC 6749 §4.1.3 and RFC 7636 §4.6."""
        value = params.get("code")
        if not value:
            raise _Refused("request", "code is required.")
        code = self._codes.get(value)
        now = self.clock()
        if code is None or code.consent.client_id != client_id or now >= code.expires_at:
            raise _Refused("code.unknown")
        consent = code.consent
        if code.grant is not None:
            # "If an authorization code is used more than once, the authorization server
            # MUST deny the request and SHOULD revoke (when possible) all tokens previously
            # issued based on that authorization code." (RFC 6749 §4.1.2)
            self._revoke_grant(code.grant)
            raise _Refused("code.replayed")
        if consent.redirect_sent and params.get("redirect_uri") != consent.redirect_uri:
            raise _Refused("code.redirect_uri")
        if any(consent.connection.get(k, v) != v for k, v in connection.items()):
            raise _Refused("code.unknown", "The code was issued for another account.")
        verifier = params.get("code_verifier")
        if consent.challenge is not None:
            if verifier is None or not _VERIFIER.fullmatch(verifier):
                raise _Refused("code.verifier")
            digest = hashlib.sha256(verifier.encode("ascii")).digest()
            computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if not hmac.compare_digest(computed, consent.challenge):
                raise _Refused("code.verifier")
        elif verifier is not None:  # no challenge was sent: a verifier now is a downgrade
            raise _Refused("code.verifier", "No code_challenge was sent with the authorization.")
        offline = consent.offline and self._offline_at_token(params, request)
        if self.connector.auth.refresh_scopes:
            granted = {s for chain in consent.scopes.values() for s in chain}
            offline = offline and bool(granted & set(self.connector.auth.refresh_scopes))
        grant = _Grant(
            id=secrets.token_hex(8),
            client_id=client_id,
            connection={**consent.connection, **connection},
            created_at=now,
            offline=offline and self.connector.auth.refresh.supported,
        )
        self._grants[grant.id] = grant
        code.grant = grant
        chains = {
            chain: self._mint_pair(grant, chain, scopes, params, new_refresh=grant.offline)
            for chain, scopes in consent.scopes.items()
        }
        return self._issue("authorization_code", grant, chains)

    def _offline_at_token(self, params: Mapping[str, str], request: web.Request) -> bool:
        wanted = self.profile.token_offline_param
        if wanted is None:
            return True
        key, value = wanted
        return params.get(key, request.query.get(key)) == value

    def _refresh(
        self,
        params: Mapping[str, str],
        client_id: str,
        connection: Mapping[str, str],
        request: web.Request,
    ) -> TokenIssue:
        """RFC 6749 §6, with the connector's rotation policy."""
        value = params.get("refresh_token")
        if not value:
            raise _Refused("request", "refresh_token is required.")
        old = self._tokens.get(value)
        if old is None or old.kind != "refresh":
            raise _Refused("refresh.unknown")
        grant = self._grants[old.grant_id]
        if grant.client_id != client_id:
            raise _Refused("refresh.unknown")
        if any(grant.connection.get(k, v) != v for k, v in connection.items()):
            raise _Refused("refresh.unknown", "The refresh token belongs to another account.")
        if old.revoked or grant.revoked:
            raise _Refused("refresh.revoked")
        now = self.clock()
        policy = self.connector.auth.refresh
        days = 86400
        if (
            (old.expires_at is not None and now >= old.expires_at)
            or (
                policy.inactivity_expiry_days
                and now - old.last_used > policy.inactivity_expiry_days * days
            )
            or (
                policy.absolute_expiry_days
                and now - grant.created_at > policy.absolute_expiry_days * days
            )
        ):
            old.revoked = True
            raise _Refused("refresh.expired")
        if policy.single_use and old.used_at is not None:
            if now - old.used_at >= policy.reuse_leeway_seconds:  # leeway 0: never again
                if self.profile.reuse_revokes_family:
                    self._revoke_grant(grant)
                raise _Refused("refresh.reused")
        scopes = old.scopes
        if "scope" in params:  # a narrower access token only (RFC 6749 §6)
            asked = tuple(
                s for s in params["scope"].split(self.connector.auth.scope_separator) if s
            )
            if not set(asked) <= set(old.scopes):
                raise _Refused("scope")
            scopes = asked
        if self.profile.refresh_kills_old_access:
            for token in self.issued:
                if (
                    token.grant_id == grant.id
                    and token.chain == old.chain
                    and token.kind == "access"
                ):
                    token.revoked = True
        if old.used_at is None:
            old.used_at = now
        old.last_used = now
        pair = self._mint_pair(
            grant, old.chain, scopes, params, new_refresh=policy.rotating, refresh_scopes=old.scopes
        )
        if pair.refresh is None and self.profile.echo_refresh_token:
            pair.refresh = old
        return self._issue("refresh_token", grant, {old.chain: pair})

    def _access_ttl(self, grant: _Grant, params: Mapping[str, str]) -> int | None:
        if self.access_ttl is not None:
            return self.access_ttl
        profile = self.profile
        if profile.access_ttl is None or (profile.static_without_refresh and not grant.offline):
            return None
        ttl = profile.access_ttl + (
            random.randint(0, profile.ttl_jitter) if profile.ttl_jitter else 0
        )
        if profile.ttl_param is not None:
            name, low, high = profile.ttl_param
            asked = params.get(name, "")
            if asked.isdigit():
                ttl = min(max(int(asked), low), high)
        return ttl

    def _mint(
        self, grant: _Grant, kind: str, chain: str, scopes: tuple[str, ...], ttl: int | None
    ) -> IssuedToken:
        now = self.clock()
        prefix = self.profile.prefix(kind, chain, grant.offline)
        token = IssuedToken(
            value=prefix + secrets.token_urlsafe(32),
            kind=kind,
            chain=chain,
            grant_id=grant.id,
            scopes=scopes,
            issued_at=now,
            expires_at=None if ttl is None else now + ttl,
            last_used=now,
        )
        self._tokens[token.value] = token
        self.issued.append(token)
        return token

    def _mint_pair(
        self,
        grant: _Grant,
        chain: str,
        scopes: tuple[str, ...],
        params: Mapping[str, str],
        *,
        new_refresh: bool,
        refresh_scopes: tuple[str, ...] | None = None,
    ) -> _Pair:
        access = self._mint(grant, "access", chain, scopes, self._access_ttl(grant, params))
        refresh = None
        if new_refresh and grant.offline:
            granted = refresh_scopes or scopes
            refresh = self._mint(grant, "refresh", chain, granted, self._refresh_ttl(granted))
            self._apply_refresh_cap(grant.client_id)
        return _Pair(access, refresh, scopes)

    def _refresh_ttl(self, scopes: tuple[str, ...]) -> int | None:
        ttl, testing = self.profile.refresh_ttl, self.profile.testing_refresh_ttl
        if (
            self.testing_mode
            and testing is not None
            and not set(scopes) <= self.profile.testing_exempt_scopes
        ):
            ttl = testing if ttl is None else min(ttl, testing)
        return ttl

    def _apply_refresh_cap(self, client_id: str) -> None:
        """Revoke the oldest live refresh tokens of the client beyond the cap, silently.

        The sandbox has one user, so "per Google Account per OAuth 2.0 client ID" is per
        client id. The revoked token's access tokens are left alone.
        """
        if self.refresh_token_cap is None:
            return
        live = [
            t
            for t in self.issued  # oldest first
            if t.kind == "refresh"
            and self._grants[t.grant_id].client_id == client_id
            and self.token_state(t.value) in ("live", "used")
        ]
        for token in live[: max(len(live) - self.refresh_token_cap, 0)]:
            token.revoked = True

    def _issue(self, grant_type: str, grant: _Grant, chains: dict[str, _Pair]) -> TokenIssue:
        first = chains[next(iter(chains))]
        body = {**_token_fields(self, first), "token_type": self.profile.token_type}
        return TokenIssue(grant_type, grant.id, chains, body)

    def _revoke_grant(self, grant: _Grant) -> None:
        grant.revoked = True
        for token in self.issued:
            if token.grant_id == grant.id:
                token.revoked = True

    # --- revocation endpoint -------------------------------------------------------------

    async def _revoke(self, request: web.Request) -> web.Response:
        """RFC 7009 §2: the grant of any token presented is revoked; unknown tokens are fine."""
        raw = await request.read()
        value = request.query.get("token")
        if raw and request.content_type == "application/json":
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and isinstance(doc.get("token"), str):
                value = doc["token"]
        elif raw:
            value = dict(parse_qsl(raw.decode("utf-8", "replace"))).get("token", value)
        if value is None:
            value = self._presented_token(request)
        token = self._tokens.get(value or "")
        if token is not None:
            self._revoke_grant(self._grants[token.grant_id])
        status, body, headers = self.profile.revoke_reply
        return _reply(status, body, headers)

    # --- resource API ------------------------------------------------------------------

    def _presented_token(self, request: web.Request) -> str | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        for name in self.profile.token_headers:
            if request.headers.get(name):
                return request.headers[name]
        return None

    def _live_token(self, request: web.Request) -> tuple[IssuedToken | None, _Reply | None]:
        """The live access token of the request, or the provider's 401 reply."""
        value = self._presented_token(request)
        token = self._tokens.get(value) if value else None
        state = "missing" if value is None else self.token_state(value)
        if token is not None and token.kind != "access":
            state = "unknown"
        if state == "live" and token is not None:
            return token, None
        ago = 0
        if state == "expired" and token is not None and token.expires_at is not None:
            ago = int(self.clock() - token.expires_at)
        return None, self.profile.unauthorized(state, ago)

    def _extra(self, request: web.Request, route: _Route) -> web.Response:
        token, refusal = self._live_token(request)
        if token is None:
            assert refusal is not None
            return _reply(*refusal)
        return _reply(200, self.profile.extra_api[route.url](self, token.scopes))

    async def _api(
        self, request: web.Request, tools: Sequence[Tool], connection: Mapping[str, str]
    ) -> web.Response:
        faults = self.faults
        if faults.delay:
            await asyncio.sleep(faults.delay)
        token, reply = self._live_token(request)
        if token is not None:
            grant = self._grants[token.grant_id]
            if any(grant.connection.get(k, v) != v for k, v in connection.items()):
                token, reply = None, self.profile.unauthorized("unknown", 0)
        # the first tool the token has every scope for; else the first one, and a refusal
        tool = next((t for t in tools if token and set(t.scopes) <= set(token.scopes)), tools[0])
        if faults.next_api_status is not None:
            status, faults.next_api_status = faults.next_api_status, None
            if status == 429:
                reply = self.profile.rate_limited(faults.retry_after, self.clock())
            else:
                extra = {"Retry-After": str(faults.retry_after)} if status == 503 else {}
                reply = (status, {"error": "injected fault", "status": status}, extra)
        elif token is not None:
            missing = [s for s in tool.scopes if s not in token.scopes]
            if missing:
                reply = self.profile.insufficient_scope(missing, token.scopes)
        body = await self._request_body(request)
        query = dict(request.query)
        if reply is None:
            answer = self.responses.get(tool.name)
            if callable(answer):
                answer = answer(query, body)
            reply = (200, answer if answer is not None else self.profile.ok_body(tool), {})
        status, payload, headers = reply
        self.requests.append(
            ApiRequest(
                tool=tool.name,
                method=request.method,
                url="https://" + request.path_qs.removeprefix("/"),
                query=query,
                headers={
                    k: ("[redacted]" if k.lower() in _CREDENTIAL_HEADERS else v)
                    for k, v in request.headers.items()
                },
                body=body,
                status=status,
                authorized=token is not None,
            )
        )
        return _reply(status, payload, headers)

    @staticmethod
    async def _request_body(request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        if request.content_type == "application/json":
            try:
                return json.loads(raw)
            except ValueError:
                return raw.decode("utf-8", "replace")
        if request.content_type == "application/x-www-form-urlencoded":
            return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        return raw.decode("utf-8", "replace")
