"""Provider profiles of the loopback OAuth emulator: each provider's token-response
shape, error bodies and API replies, as documented (shared/reference/provider_quirks.md).

:mod:`control_plane.sandbox.oauth_provider` serves them; a new provider is a new
:class:`ProviderProfile` entry here.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from control_plane.connectors.model import Connector, Tool

if TYPE_CHECKING:
    from control_plane.sandbox.oauth_provider import SandboxProvider

_T = TypeVar("_T")
_Reply = tuple[int, Any, Mapping[str, str]]  # status, JSON body (bytes: raw), headers

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
        revoke_reply=(204, b"", {}),  # DELETE /applications/{client_id}/token [GH3]
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
