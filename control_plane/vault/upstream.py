"""Perform an authenticated HTTP request for a connected account, and give back the response.

The credential boundary's one outward operation: the caller (a service, later
``ExecuteTool``) describes the request — method, URL, query, body — and gets the
provider's status, headers and body. The credential is attached here and never
leaves: the caller cannot set ``Authorization`` or the connector's key header,
and the URL must be on the connector's own API origins (its ``api_base_url`` and
its tools' URLs, with the account's connection parameters filled in), so a
credential can never be sent to a host a caller chose.

On the way it makes the access token fresh (refresh-ahead through the refresh
coordinator's single flight), classifies failures with the connector's rules
(phase ``api``), and when the provider says the access token expired it refreshes
once and retries once; a second rejection means the grant is gone, and the account
becomes REVOKED (the user must reconnect). Every use sets ``last_used_time``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from control_plane.clock import Clock
from control_plane.connectors.authorize import fill_connection
from control_plane.connectors.credentials import credential_slot, place_credential
from control_plane.connectors.loader import Catalog
from control_plane.connectors.model import Connector
from control_plane.domain.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from control_plane.domain.scope import OrgScope
from control_plane.metrics import Metrics
from control_plane.net.bodies import read_capped
from control_plane.storage.db import Database
from control_plane.tracing import CLIENT, Tracing, failed
from control_plane.vault.accounts import open_secret
from control_plane.vault.barrier import Barrier
from control_plane.vault.classify import Failure, classify_response
from control_plane.vault.credentials import DeveloperSecrets
from control_plane.vault.refresh import RefreshCoordinator

MAX_RESPONSE = 4 * 1024 * 1024
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# Never accepted from the caller, never returned to it.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_DROPPED_RESPONSE_HEADERS = frozenset({"set-cookie", "authorization", "www-authenticate"})


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    #: A form body (``application/x-www-form-urlencoded``) instead of JSON.
    form: Mapping[str, str] | None = None
    #: A GraphQL call: a 200 whose ``errors`` left no ``data`` is a failure.
    graphql: bool = False
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    #: The connector's classification of a non-2xx answer (None on success).
    failure: Failure | None = None
    #: The access token was refreshed during this call (refresh-ahead or after a 401).
    refreshed: bool = False


class Upstream:
    def __init__(
        self,
        db: Database,
        barrier: Barrier,
        clock: Clock,
        catalog: Catalog,
        refresher: RefreshCoordinator,
        http: aiohttp.ClientSession,
        developer_secrets: DeveloperSecrets,
        metrics: Metrics,
        tracing: Tracing,
        *,
        max_response: int = MAX_RESPONSE,
    ) -> None:
        self._db = db
        self._barrier = barrier
        self._clock = clock
        self._catalog = catalog
        self._refresher = refresher
        self._http = http
        self._developer_secrets = developer_secrets
        self._metrics = metrics
        self._tracing = tracing
        self._max_response = max_response

    async def perform(
        self, scope: OrgScope, account_id: str, request: UpstreamRequest
    ) -> UpstreamResponse:
        method = request.method.upper()
        if method not in METHODS:
            raise InvalidArgument("unsupported HTTP method", reason="UPSTREAM_METHOD")
        async with self._db.org_tx(scope) as tx:
            row = await tx.accounts.get(account_id)
            if row is None:
                raise NotFound()
            connector = self._catalog.get(row.connector_id)
            if connector is None or connector.auth.type not in ("oauth2", "api_key"):
                raise FailedPrecondition("this account has no usable credential")
            _refuse_credentials(connector, request)
            if row.state not in ("ACTIVE", "EXPIRED") or row.secret is None:
                raise FailedPrecondition(
                    "the account needs the user to (re)connect",
                    reason="ACCOUNT_" + (row.state if row.secret is not None else "PENDING"),
                )
            _check_origin(
                connector, request.url, {**row.provider_metadata, **row.connection_params}
            )
            document = await open_secret(self._barrier, tx, row)
            token: str | None
            if connector.auth.type == "oauth2":
                # Not due: the token just read is used at once (no second read).
                token = self._refresher.ready_token(row, document)
            else:
                token = str(document.get("api_key", ""))
            # Used now, in the same transaction (the call starts).
            await tx.accounts.mark_used(account_id, self._clock.now())

        refreshed = False
        if token is None:  # due: refresh-ahead through the coordinator's single flight
            token = await self._refresher.access_token(scope, account_id)
            refreshed = True
        response = await self._send(connector, method, request, token)
        if response.failure is not None and response.failure.error_class == "expired_access":
            if connector.auth.type == "oauth2":
                # RFC 6750 §3.1 invalid_token: refresh once (single flight), retry once.
                token = await self._refresher.access_token(scope, account_id, force=True)
                refreshed = True
                response = await self._send(connector, method, request, token)
                if (
                    response.failure is not None
                    and response.failure.error_class == "expired_access"
                ):
                    await self._revoke(scope, account_id, "ACCESS_REJECTED_AFTER_REFRESH")
            else:  # a user's key the provider rejects is not coming back by itself
                await self._revoke(scope, account_id, "API_KEY_REJECTED")
        if response.failure is not None and response.failure.error_class == "revoked":
            # The provider says the grant itself is gone: the user must reconnect.
            await self._revoke(scope, account_id, response.failure.reason[:64])
        return UpstreamResponse(
            response.status, response.headers, response.body, response.failure, refreshed
        )

    async def perform_with_developer_secret(
        self,
        scope: OrgScope,
        connector_id: str,
        request: UpstreamRequest,
        admit: Callable[[int, int], Awaitable[None]],
    ) -> UpstreamResponse:
        """The same for a developer_secret connector (Pattern 1): the org's own secret,
        else the deployment's. ``admit(rate_requests, rate_period_seconds)`` runs with
        the secret's per-user limit before anything is sent (it raises to refuse)."""
        method = request.method.upper()
        if method not in METHODS:
            raise InvalidArgument("unsupported HTTP method", reason="UPSTREAM_METHOD")
        connector = self._catalog.get(connector_id)
        if connector is None or connector.auth.type != "developer_secret":
            raise FailedPrecondition("this connector does not use a developer secret")
        _refuse_credentials(connector, request)
        _check_origin(connector, request.url, {})
        found = await self._developer_secrets.reveal(scope, connector.id)
        if found is None:
            raise FailedPrecondition(
                "no developer secret is configured for this connector",
                reason="DEVELOPER_SECRET_MISSING",
            )
        secret, record = found
        await admit(record.rate_requests, record.rate_period_seconds)
        return await self._send(connector, method, request, secret.reveal())

    async def _send(
        self, connector: Connector, method: str, request: UpstreamRequest, credential: str
    ) -> UpstreamResponse:
        try:
            headers, params = place_credential(
                connector.auth, credential, {"Accept": "application/json", **request.headers},
                request.query,
            )  # fmt: skip
        except ValueError:
            raise FailedPrecondition("the connector does not say where its key goes") from None
        attributes = {"agentauth.connector": connector.id, "http.request.method": method}
        with self._tracing.span("upstream", CLIENT, attributes) as span:
            response = await self._exchange(connector, method, request, headers, params)
            if span is not None:
                span.set_attribute("http.response.status_code", response.status)
                if response.failure is not None:
                    failed(span, response.failure.error_class)
            return response

    async def _exchange(
        self,
        connector: Connector,
        method: str,
        request: UpstreamRequest,
        headers: dict[str, str],
        params: dict[str, str],
    ) -> UpstreamResponse:
        try:
            async with self._http.request(
                method,
                request.url,
                params=params or None,
                headers=headers,
                json=request.json if request.form is None else None,
                data=request.form,
                allow_redirects=False,  # a redirect must not carry the credential elsewhere
                timeout=aiohttp.ClientTimeout(total=request.timeout, sock_connect=10),
            ) as resp:
                body = await read_capped(resp.content, self._max_response + 1)
                status = resp.status
                reply = {
                    k: v
                    for k, v in resp.headers.items()
                    if k.lower() not in _DROPPED_RESPONSE_HEADERS
                }
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._metrics.provider_error(connector.id, "unreachable")
            raise Unavailable(
                "the provider is unreachable",
                reason="UPSTREAM_UNAVAILABLE",
                debug=type(exc).__name__,
            ) from None
        if len(body) > self._max_response:
            self._metrics.provider_error(connector.id, "too_large")
            raise Unavailable("the provider's answer is too large", reason="UPSTREAM_TOO_LARGE")
        failure = classify_response(connector, status, reply, body, graphql=request.graphql)
        if failure is not None:
            self._metrics.provider_error(connector.id, failure.error_class)
        return UpstreamResponse(status, reply, body, failure)

    async def _revoke(self, scope: OrgScope, account_id: str, reason: str) -> None:
        now = self._clock.now()
        async with self._db.org_tx(scope) as tx:
            row = await tx.accounts.get_for_update(account_id)
            if row is not None and row.state != "REVOKED":
                row.state, row.state_reason, row.state_change_time = "REVOKED", reason, now
                row.update_time = now
                await tx.account_events.changed(row, now)


def _refuse_credentials(connector: Connector, request: UpstreamRequest) -> None:
    """The caller never sets a credential: not ``Authorization`` or a cookie, and not
    the header or query parameter the connector's own credential goes in."""
    slot = credential_slot(connector.auth)
    name = slot[1] if slot is not None else ""
    refused = _CREDENTIAL_HEADERS | {name.lower()}
    if any(h.lower() in refused for h in request.headers) or any(
        q.lower() == name.lower() for q in request.query
    ):
        raise InvalidArgument("credentials are attached by the vault", reason="UPSTREAM_HEADER")


def _origin(url: str) -> tuple[str, str] | None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    return parts.scheme, parts.netloc.lower()


def _check_origin(connector: Connector, url: str, values: Mapping[str, str]) -> None:
    """The URL must be on one of the connector's API origins (placeholders filled)."""
    wanted = _origin(url)
    allowed: set[tuple[str, str]] = set()
    for template in (connector.api_base_url, *(t.http.url for t in connector.tools)):
        if not template:
            continue
        try:
            origin = _origin(fill_connection(template, values))
        except ValueError:
            continue
        if origin is not None:
            allowed.add(origin)
    if wanted is None or wanted not in allowed:
        raise InvalidArgument(
            "the URL is not on this connector's API", reason="UPSTREAM_URL_NOT_ALLOWED"
        )
