"""Connector definitions as typed, immutable values (built by :mod:`.loader`).

A connector is data: how a provider authorizes (OAuth 2.0 endpoints, client
authentication, PKCE, scope separator, extra authorize parameters, token-response
fields to keep), how its tokens live (refresh policy), how its failures are
classified, and the tools it offers (JSON Schema arguments, HTTP mapping, minimum
scopes, destructive flag, output trust). No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

AUTH_TYPES = ("oauth2", "api_key", "developer_secret", "service_account", "key_pair_jwt")
ERROR_CLASSES = (
    "expired_access",  # the access token expired: refresh once, retry once
    "revoked",  # the grant is gone: the user must reconnect
    "transient",  # try again later with backoff; keep the refresh token
    "rate_limited",  # wait as the provider says (bounded)
    "insufficient_scope",  # the grant lacks a scope the call needs
    "operator_error",  # our own client credentials are broken: page the operator
    "caller_error",  # the request itself is wrong
    "refresh_race",  # a dead refresh token: re-read the vault before calling it revoked
)


@dataclass(frozen=True, slots=True)
class ConnectionParam:
    name: str
    pattern: str
    description: str = ""


@dataclass(frozen=True, slots=True)
class ApiKeyPlacement:
    location: str  # "header" | "query"
    name: str
    prefix: str = ""
    pattern: str = ""


@dataclass(frozen=True, slots=True)
class TokenHeader:
    """Where an OAuth 2.0 access token goes: RFC 6750 §2.1 ``Authorization: Bearer`` by
    default; Shopify's Admin API reads it from ``X-Shopify-Access-Token`` with no prefix."""

    name: str = "Authorization"
    prefix: str = "Bearer "


@dataclass(frozen=True, slots=True)
class Revocation:
    """How ``revoke_url`` is called. The defaults are RFC 7009 §2.1: ``POST`` a form with
    ``token`` and ``token_type_hint``, the client authenticated as at the token endpoint,
    the refresh token when there is one (it ends the grant), else the access token.

    Providers that differ say how: Dropbox ``POST /2/auth/token/revoke`` with the access
    token as the bearer and no body (``auth: bearer``); GitHub ``DELETE
    /applications/{client_id}/token`` with HTTP Basic and ``{"access_token": ...}``;
    Notion HTTP Basic with a JSON ``{"token": ...}``.
    """

    method: str = "POST"  # POST | DELETE
    #: ``client`` (the connector's ``client_auth``), ``client_secret_basic``,
    #: ``client_secret_post``, or ``bearer`` (no client: the token authenticates the call).
    auth: str = "client"
    body: str = "form"  # form | json | query (the token in the URL's query) | none
    token_field: str = "token"
    token: str = "refresh_first"  # refresh_first | access
    token_type_hint: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The catalog spelled it out (``auth.revoke``) rather than the RFC 7009 ``revoke_url``.
    explicit: bool = False


@dataclass(frozen=True, slots=True)
class RefreshPolicy:
    supported: bool = False
    rotating: bool = False
    single_use: bool = False
    reuse_leeway_seconds: int = 0
    inactivity_expiry_days: int | None = None
    absolute_expiry_days: int | None = None
    refresh_ahead_seconds: int = 300
    default_access_ttl_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class AuthSpec:
    type: str
    authorize_url: str = ""
    token_url: str = ""
    revoke_url: str = ""
    revocation: Revocation = field(default_factory=Revocation)
    client_auth: str = "client_secret_post"
    pkce: bool = False
    scope_separator: str = " "
    scope_param: str = "scope"
    refresh_scopes: tuple[str, ...] = ()
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    token_request_format: str = "form"
    token_response_format: str = "json"
    sends_iss: bool = False
    issuer: str = ""
    keep_fields: tuple[str, ...] = ()
    connection_params: tuple[ConnectionParam, ...] = ()
    api_key: ApiKeyPlacement | None = None
    token_header: TokenHeader = field(default_factory=TokenHeader)
    refresh: RefreshPolicy = field(default_factory=RefreshPolicy)


@dataclass(frozen=True, slots=True)
class ErrorRule:
    reason: str
    error_class: str
    phase: str | None = None
    status: tuple[int, ...] = ()
    body: Mapping[str, Any] = field(default_factory=dict)
    body_contains: str = ""
    header: Mapping[str, str] = field(default_factory=dict)
    retry_after: str | None = None
    retry_after_header: str = "Retry-After"


@dataclass(frozen=True, slots=True)
class GraphQL:
    """A GraphQL tool: the document is fixed here; the arguments are its variables."""

    query: str


@dataclass(frozen=True, slots=True)
class HttpMapping:
    method: str
    url: str
    query: tuple[str, ...] = ()
    body: str = "none"
    headers: Mapping[str, str] = field(default_factory=dict)
    strategy: str | None = None
    #: The body is ``{"query": graphql.query, "variables": {...arguments}}``.
    graphql: GraphQL | None = None


@dataclass(frozen=True, slots=True)
class Pagination:
    """How a paging tool's next page is asked for: pass the cursor found in the answer
    (``next_cursor``, a dotted path into the JSON body; or the ``link_param`` query
    parameter of the RFC 8288 ``Link: <...>; rel="next"`` URL) as ``cursor_argument``.
    With ``has_more`` (a dotted path), only ``true`` there means another page."""

    cursor_argument: str
    next_cursor: str = ""
    has_more: str = ""
    link_param: str = ""


@dataclass(frozen=True, slots=True)
class Output:
    """What of a tool's JSON answer the caller receives: only ``fields`` (dotted paths,
    arrays along a path mapped element by element) when given; at most ``max_bytes``
    (enforced by the caller) when given."""

    fields: tuple[str, ...] = ()
    max_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    input_schema: Mapping[str, Any]
    scopes: tuple[str, ...]
    destructive: bool
    output_trust: str
    http: HttpMapping
    pagination: Pagination | None = None
    output: Output = field(default_factory=Output)


@dataclass(frozen=True, slots=True)
class Connector:
    id: str
    display_name: str
    auth: AuthSpec
    tools: tuple[Tool, ...]
    errors: tuple[ErrorRule, ...] = ()
    description: str = ""
    docs_url: str = ""
    api_base_url: str = ""

    def tool(self, name: str) -> Tool | None:
        for t in self.tools:
            if t.name == name:
                return t
        return None

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tools)
