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
* revocation endpoint (when the connector has ``revoke_url``): RFC 7009 ones
  take the token from the ``token`` parameter (body or query) or the bearer
  header; a connector's own ``auth.revoke`` (Dropbox bearer, GitHub ``DELETE``
  with Basic and JSON, Notion Basic and JSON) is enforced as written. The whole
  grant is revoked.
* resource API: a request matching a tool's method and URL answers 200 with a
  small JSON body once the access token, where the connector's ``token_header``
  puts it (``Authorization: Bearer <token>`` by default), is live, the URL's
  ``{connection.x}`` values are the grant's and the tool's scopes were
  granted; otherwise the provider's 401 (or insufficient-scope) reply. Every
  call is recorded in :attr:`SandboxProvider.requests` with credentials
  redacted. Nothing here logs a token or a secret.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
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
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit, urlunsplit

from aiohttp import web

from control_plane.connectors.model import Connector, Tool
from control_plane.sandbox._loopback import LoopbackServer, json_response
from control_plane.sandbox._resource_api import (
    ApiRequest,
    CallbackServer,
    Reply,
    ServedConnector,
    request_body,
    tool_routes,
)
from control_plane.sandbox._resource_api import Route as _Route
from control_plane.sandbox._resource_api import reply as _reply
from control_plane.sandbox._resource_api import route as _route
from control_plane.sandbox.oauth_profiles import (
    PROFILES,
    IssuedToken,
    ProviderProfile,
    TokenIssue,
    _Pair,
    _Refused,
    _token_fields,
    profile_for,
    rfc_errors,
)

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

_Reply = Reply
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
CODE_TTL = 600  # RFC 6749 §4.1.2: "A maximum authorization code lifetime of 10 minutes"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1
_CREDENTIAL_HEADERS = frozenset({"authorization", "x-shopify-access-token", "cookie"})


# --- routing -----------------------------------------------------------------------------


def _same_connection(grant: Mapping[str, str], url: Mapping[str, str]) -> bool:
    """The URL's connection values are the grant's; ``field|host`` compares with the host
    of the kept URL (Salesforce's ``instance_url``). Fields the grant never saw match."""
    for key, value in url.items():
        field, _, filter_ = key.partition("|")
        expected = grant.get(field)
        if expected is None:
            continue
        if filter_ == "host":
            expected = urlsplit(expected).netloc
        if expected != value:
            return False
    return True


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
    * ``reply_delay`` - seconds to wait after a token request is processed (codes
      spent, refresh tokens rotated) and before its reply: a caller that dies
      meanwhile has lost a rotation that did happen.
    """

    next_token_status: int | None = None
    garbage_body: bool = False
    drop_connection: bool = False
    lose_response: bool = False
    next_api_status: int | None = None
    retry_after: int = 1
    delay: float = 0.0
    reply_delay: float = 0.0


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


def _stringify(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class SandboxProvider(ServedConnector):
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
        self._credential_headers = _CREDENTIAL_HEADERS | {connector.auth.token_header.name.lower()}
        self.server: LoopbackServer = CallbackServer(
            lambda: [web.route("*", "/{tail:.*}", self._dispatch)]
        )

    # --- URLs (life cycle and the others: ServedConnector) ---------------------------

    @property
    def issuer(self) -> str:
        """The RFC 9207 ``iss`` sent: the connector's issuer mapped onto the sandbox."""
        issuer = self.connector.auth.issuer
        return self.sandbox_url(issuer) if issuer else self.base_url

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
        return routes + tool_routes(self.connector.tools)

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
                return await self._revoke(request, route.values(path))
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
        if faults.reply_delay:
            await asyncio.sleep(faults.reply_delay)
        body = self.profile.shape(self, issue) if self.profile.shape else issue.body
        grant = self._grants[issue.grant_id]
        for path in self.connector.auth.keep_fields:  # API URLs built from them are checked
            value = body.get(path) if isinstance(body, dict) else None
            if isinstance(value, str):
                grant.connection[path] = value
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

    async def _revoke(self, request: web.Request, values: Mapping[str, str]) -> web.Response:
        """RFC 7009 §2: the grant of any token presented is revoked; unknown tokens are fine.

        A connector with the RFC 7009 shorthand (``revoke_url``) is served leniently:
        the token from ``token`` in the body or query, else the bearer header. One that
        spells out ``auth.revoke`` is served exactly as described: its method, its
        ``{client_id}`` in the path, its client authentication (or the bearer access
        token), its body format and token field.
        """
        how = self.connector.auth.revocation
        raw = await request.read()
        fields: dict[str, str] = dict(request.query)
        if raw and request.content_type == "application/json":
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = None
            if isinstance(doc, dict):
                fields |= {k: v for k, v in doc.items() if isinstance(v, str)}
        elif raw:
            fields |= dict(parse_qsl(raw.decode("utf-8", "replace")))
        if not how.explicit:
            value = fields.get("token") or self._presented_token(request)
        else:
            if request.method != how.method:
                return json_response(
                    {"error": "method_not_allowed"}, status=405, headers={"Allow": how.method}
                )
            if values.get("client_id", self.client_id) != self.client_id:
                return json_response({"message": "Not Found"}, status=404)
            client = self.connector.auth.client_auth if how.auth == "client" else how.auth
            if client == "bearer":
                token, refusal = self._live_token(request)
                if token is None:
                    assert refusal is not None
                    return _reply(*refusal)
                value = token.value
            else:
                if not self._revoking_client(request, client, fields):
                    return json_response({"error": "invalid_client"}, status=401)
                value = fields.get(how.token_field)
        token = self._tokens.get(value or "")
        if token is not None:
            self._revoke_grant(self._grants[token.grant_id])
        status, body, headers = self.profile.revoke_reply
        return _reply(status, body, headers)

    def _revoking_client(
        self, request: web.Request, method: str, fields: Mapping[str, str]
    ) -> bool:
        if method == "client_secret_basic":
            try:
                basic = _parse_basic(request.headers.get("Authorization", ""))
            except _Refused:
                return False
            if basic is None:
                return False
            client_id, secret = basic
        else:
            client_id, secret = fields.get("client_id", ""), fields.get("client_secret", "")
        return client_id == self.client_id and hmac.compare_digest(
            secret.encode(), self.client_secret.encode()
        )

    # --- resource API ------------------------------------------------------------------

    def _presented_token(self, request: web.Request) -> str | None:
        """The access token where the connector says the provider reads it: a connector
        with its own ``token_header`` (Shopify) is read there only, a Bearer is ignored."""
        spec = self.connector.auth.token_header
        if spec.name.lower() != "authorization" or spec.prefix.lower() != "bearer ":
            value = request.headers.get(spec.name, "")
            if not value.startswith(spec.prefix):
                return None
            return value.removeprefix(spec.prefix).strip() or None
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
            if not _same_connection(grant.connection, connection):
                token, reply = None, self.profile.unauthorized("unknown", 0)
        body = await request_body(request)
        # GraphQL tools share one URL: the document sent names the tool
        sent = body.get("query") if isinstance(body, dict) else None
        named = [t for t in tools if t.http.graphql is not None and t.http.graphql.query == sent]
        tools = named or tools
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
                    k: ("[redacted]" if k.lower() in self._credential_headers else v)
                    for k, v in request.headers.items()
                },
                body=body,
                status=status,
                authorized=token is not None,
            )
        )
        return _reply(status, payload, headers)
