"""Talking to a provider's token endpoint (RFC 6749 §4.1.3, §6; RFC 7636 §4.5).

One place knows how a connector authenticates (``client_secret_basic``:
form-urlencoded id and secret in HTTP Basic, RFC 6749 §2.3.1; ``client_secret_post``:
both in the body), how it wants the request (form or JSON) and how it answers
(JSON, or form-encoded like GitHub without ``Accept``), and how providers that
report errors in HTTP 200 bodies (Slack ``{"ok": false}``, GitHub ``{"error": …}``)
are read. Nothing here logs or raises with a token, a code or a secret in it.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote

import aiohttp

from control_plane.connectors.model import Connector
from control_plane.net.bodies import read_capped

MAX_RESPONSE = 256 * 1024
TOKEN_TIMEOUT = 15.0  # a token request, all told (the refresh drain covers it)
CONNECT_TIMEOUT = 5.0  # of which connecting: past it, nothing was sent


class TokenEndpointError(Exception):
    """The exchange failed; ``code`` is safe to show (an RFC 6749 error code or ours).

    ``raw`` and ``headers`` are the provider's answer, for classification only:
    they are never logged or shown (a body may echo a token).
    """

    def __init__(
        self,
        code: str,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        raw: bytes = b"",
        *,
        sent: bool = True,
    ) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.headers: Mapping[str, str] = headers or {}
        self.raw = raw
        # False only when nothing can have reached the provider: the connection was
        # refused, the name did not resolve, the TLS handshake failed, or connecting
        # timed out. A request that left and got no answer has an unknown outcome.
        self.sent = sent

    def __repr__(self) -> str:
        return f"TokenEndpointError({self.code!r}, {self.status!r})"


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_in: int | None
    scope: str | None
    token_type: str
    raw: Mapping[str, Any] = field(repr=False)

    def secret_document(self) -> dict[str, Any]:
        """What the vault seals for the account."""
        doc: dict[str, Any] = {"access_token": self.access_token, "token_type": self.token_type}
        if self.refresh_token:
            doc["refresh_token"] = self.refresh_token
        return doc


def _basic(client_id: str, client_secret: str) -> str:
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def _authenticated(
    connector: Connector, body: dict[str, str], client_id: str, client_secret: str
) -> tuple[dict[str, str], dict[str, str]]:
    """``body`` and headers with the client authenticated as the connector says."""
    headers = {"Accept": "application/json"}
    if connector.auth.client_auth == "client_secret_basic":
        headers["Authorization"] = _basic(client_id, client_secret)
    else:
        body["client_id"] = client_id
        body["client_secret"] = client_secret
    return body, headers


def _safe_code(value: object) -> str:
    text = str(value)[:64]
    return text if text.replace("_", "").replace("-", "").isalnum() else "provider_error"


def dotted(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(doc, Mapping) or part not in doc:
            return None
        doc = doc[part]
    return doc


async def request_token(
    http: aiohttp.ClientSession,
    connector: Connector,
    token_url: str,
    client_id: str,
    client_secret: str,
    params: Mapping[str, str],
) -> TokenSet:
    """POST a token request and read the provider's answer (or raise TokenEndpointError)."""
    auth = connector.auth
    body, headers = _authenticated(connector, dict(params), client_id, client_secret)
    kwargs: dict[str, Any] = (
        {"json": body} if auth.token_request_format == "json" else {"data": body}
    )
    try:
        async with http.post(
            token_url,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=TOKEN_TIMEOUT, sock_connect=CONNECT_TIMEOUT),
            **kwargs,
        ) as resp:
            raw = await read_capped(resp.content, MAX_RESPONSE + 1)
            status = resp.status
            content_type = resp.headers.get("Content-Type", "")
            reply_headers = dict(resp.headers)
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
        raise TokenEndpointError("provider_unreachable", sent=False) from None
    except (aiohttp.ClientError, TimeoutError):
        raise TokenEndpointError("provider_unreachable") from None
    if len(raw) > MAX_RESPONSE:
        raise TokenEndpointError("response_too_large", status, reply_headers)
    doc = _parse(raw, content_type, auth.token_response_format)
    if doc is None:
        raise TokenEndpointError("unreadable_response", status, reply_headers, raw)
    if doc.get("ok") is False or "error" in doc or status >= 400:
        code = _safe_code(doc.get("error", f"http_{status}"))
        raise TokenEndpointError(code, status, reply_headers, raw)
    return _token_set(doc, connector)


def _parse(raw: bytes, content_type: str, declared: str) -> dict[str, Any] | None:
    text = raw.decode("utf-8", errors="strict") if raw else ""
    if "x-www-form-urlencoded" in content_type or (
        declared == "form" and "json" not in content_type
    ):
        try:
            return dict(parse_qsl(text, strict_parsing=True))
        except ValueError:
            return None
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _token_set(doc: dict[str, Any], connector: Connector) -> TokenSet:
    source = doc
    user = doc.get("authed_user")
    if isinstance(user, dict) and isinstance(user.get("access_token"), str):
        # Slack puts the user's token under authed_user (the top level is the bot's):
        # a connector that asks for user scopes acts with the user's token.
        if connector.auth.scope_param == "user_scope" or not isinstance(
            doc.get("access_token"), str
        ):
            source = user
    access = source.get("access_token")
    if not isinstance(access, str) or not access or len(access) > 16384:
        raise TokenEndpointError("no_access_token")
    refresh = source.get("refresh_token")
    expires = source.get("expires_in")
    expires_in: int | None = None
    if isinstance(expires, str) and expires.isdigit():
        expires = int(expires)
    if (
        isinstance(expires, int | float)
        and not isinstance(expires, bool)
        and math.isfinite(expires)
    ):
        expires_in = max(0, int(expires))
    scope = source.get("scope", doc.get("scope"))
    return TokenSet(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_in=expires_in,
        scope=scope if isinstance(scope, str) else None,
        token_type=str(source.get("token_type", "Bearer"))[:32],
        raw=doc,
    )


def granted_scopes(tokens: TokenSet, requested: list[str]) -> list[str]:
    """The scopes the provider says it granted (either separator), else what was asked."""
    if tokens.scope is None:
        return sorted(requested)
    parts = tokens.scope.replace(",", " ").split()
    return sorted(set(parts))


def kept_fields(tokens: TokenSet, connector: Connector) -> dict[str, str]:
    """The connector's keep_fields present in the response, as strings (never tokens)."""
    out: dict[str, str] = {}
    for path in connector.auth.keep_fields:
        value = dotted(tokens.raw, path)
        if isinstance(value, str | int) and not isinstance(value, bool):
            out[path] = str(value)[:2048]
    return out


async def revoke_token(
    http: aiohttp.ClientSession,
    connector: Connector,
    revoke_url: str,
    client_id: str,
    client_secret: str,
    token: str,
    hint: str,
) -> int | None:
    """Revoke ``token`` at the provider; the HTTP status, or None when it was unreachable.

    RFC 7009 §2.1 by default: "The client also includes its authentication
    credentials" and posts ``token`` (and ``token_type_hint``) form-encoded.
    ``connector.auth.revocation`` describes providers that differ (method, how the
    client or the token authenticates, body format and field). A ``{client_id}``
    in the URL is the client's id (GitHub).
    """
    how = connector.auth.revocation
    url = revoke_url.replace("{client_id}", quote(client_id, safe=""))
    headers = {"Accept": "application/json", **how.headers}
    fields: dict[str, str] = {}
    client = connector.auth.client_auth if how.auth == "client" else how.auth
    if client == "bearer":
        headers["Authorization"] = f"Bearer {token}"
    else:
        fields[how.token_field] = token
        if how.token_type_hint:
            fields["token_type_hint"] = hint
        if client == "client_secret_basic":
            headers["Authorization"] = _basic(client_id, client_secret)
        else:
            fields |= {"client_id": client_id, "client_secret": client_secret}
    body: dict[str, Any] = {}
    if how.body == "json":
        body["json"] = fields
    elif how.body == "query":
        body["params"] = fields
    elif how.body == "form":
        body["data"] = fields
    try:
        async with http.request(
            how.method,
            url,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=10),
            **body,
        ) as resp:
            await resp.content.read(MAX_RESPONSE)
            return resp.status
    except (aiohttp.ClientError, TimeoutError):
        return None
