"""A loopback emulator of the API behind any API-key connector of the catalog.

For the connectors whose credential is a key rather than an OAuth grant: ``stripe``
(``api_key``: the user's own restricted key, BYOK) and ``weather`` (OpenWeatherMap)
and ``web_search`` (Brave Search), both ``developer_secret`` (the operator's key).
It is a test emulator: it keeps everything in memory and answers every well-formed
id. What it reproduces is what a client meets at each provider:

* every tool's method and URL, served under its host like the OAuth emulator
  (``https://api.stripe.com/v1/customers`` is ``{base_url}/api.stripe.com/v1/customers``;
  :meth:`SandboxApiKeyProvider.connector_for_sandbox`);
* the key read exactly where the connector's ``auth.api_key`` says - header or
  query parameter, with its prefix - and nowhere else, checked against
  :attr:`~SandboxApiKeyProvider.valid_keys`: no key, or an unknown one, gets the
  provider's own refusal (Stripe 401 with the key masked as Stripe masks it,
  OpenWeatherMap 401 ``{"cod":401,...}``, Brave 422 ``SUBSCRIPTION_TOKEN_INVALID``);
* success bodies shaped like the real API and its documented errors
  (:mod:`.api_key_profiles`), with switchable failures (:class:`KeyFaults`).

Every call is kept in :attr:`~SandboxApiKeyProvider.requests` with the key
redacted from headers, query and URL (its :func:`fingerprint` tells which key it
was). Nothing here logs a key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from control_plane.connectors.model import Connector, Tool
from control_plane.sandbox._loopback import LoopbackServer, json_response
from control_plane.sandbox._resource_api import (
    ApiRequest,
    CallbackServer,
    Reply,
    ServedConnector,
    fingerprint,
    redact,
    reply,
    request_body,
    tool_routes,
)
from control_plane.sandbox.api_key_profiles import KeyProfile, profile_for

__all__ = ["ApiRequest", "KeyFaults", "SandboxApiKeyProvider", "fingerprint"]

KEY_AUTH_TYPES = ("api_key", "developer_secret")


@dataclass(slots=True)
class KeyFaults:
    """Switchable failures. ``next_*`` are consumed by the tool call they hit (even one
    without a valid key); ``delay`` and ``retry_after`` stay until changed.

    * ``next_api_status`` - the provider's reply with this status: 401 its invalid-key
      refusal, 429 its rate-limit reply, others a failure in its error envelope.
    * ``next_api_error`` - one of the profile's named, documented errors
      (``provider.profile.errors``: Stripe ``expired_key``, ``lock_timeout``...).
    * ``next_api_reply`` - exactly this ``(status, JSON body, headers)``.
    * ``retry_after`` - seconds advertised with an injected 429, where the provider
      advertises any (Brave's ``X-RateLimit-Reset``; Stripe and OpenWeatherMap send none).
    * ``delay`` - seconds to wait before answering every call.
    """

    next_api_status: int | None = None
    next_api_error: str | None = None
    next_api_reply: Reply | None = None
    retry_after: int = 1
    delay: float = 0.0


class SandboxApiKeyProvider(ServedConnector):
    """A loopback emulator of ``connector``'s API, for connectors authenticated by a key.

    ``async with SandboxApiKeyProvider(catalog.get("stripe"), valid_keys=[key]) as p``
    serves on ``127.0.0.1:<free port>``; ``p.connector_for_sandbox()`` is the connector
    with its URLs pointed here.
    """

    def __init__(
        self,
        connector: Connector,
        *,
        valid_keys: Iterable[str] = (),
        profile: KeyProfile | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        spec = connector.auth.api_key
        if connector.auth.type not in KEY_AUTH_TYPES or spec is None:
            raise ValueError(f"{connector.id} is not an API-key connector")
        self.connector = connector
        self.placement = spec
        self.profile = profile or profile_for(connector)
        #: Keys the provider accepts; add or remove to issue, delete or roll one.
        self.valid_keys: set[str] = set(valid_keys)
        #: Keys rolled with an expiry that has passed (Stripe ``api_key_expired``;
        #: other providers answer them as invalid).
        self.expired_keys: set[str] = set()
        #: Key -> tool names it lacks the permission for (Stripe restricted keys: 403).
        self.missing_permissions: dict[str, set[str]] = {}
        self.clock = clock
        self.faults = KeyFaults()
        #: Every tool call seen, in order.
        self.requests: list[ApiRequest] = []
        #: Tool name -> JSON body, or ``f(query, body) -> JSON``, to answer instead.
        self.responses: dict[str, Any] = {}
        self._routes = tool_routes(connector.tools)
        name = spec.name.lower()
        in_header = spec.location == "header"
        self._secret_headers = frozenset(
            {"authorization", "cookie", *([name] if in_header else [])}
        )
        self._secret_params = frozenset([] if in_header else [name])
        self.server: LoopbackServer = CallbackServer(
            lambda: [web.route("*", "/{tail:.*}", self._dispatch)]
        )

    # --- keys (life cycle and URLs: ServedConnector) ----------------------------------

    def new_key(self) -> str:
        """A fresh key in the provider's format, accepted from now on."""
        key = self.profile.new_key()
        self.valid_keys.add(key)
        return key

    # --- dispatch ---------------------------------------------------------------------

    def _presented_key(self, request: web.Request) -> str | None:
        """The key where the connector says the provider reads it, else None."""
        spec = self.placement
        if spec.location == "query":
            value = request.query.get(spec.name)
        else:
            value = request.headers.get(spec.name)
            if value is not None:
                if not value.startswith(spec.prefix):
                    return None
                value = value.removeprefix(spec.prefix)
        return value.strip() or None if value is not None else None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.split("?", 1)[0]
        matched: list[tuple[Tool, dict[str, str]]] = []
        on_path = False
        for route in self._routes:
            if route.pattern.fullmatch(path) is None or route.tool is None:
                continue
            on_path = True
            if route.tool.http.method == request.method:
                matched.append((route.tool, route.values(path)))
        if not matched:
            if on_path:
                return json_response({"error": "method_not_allowed"}, status=405)
            return json_response({"error": "not_found", "path": path}, status=404)
        tool, values = matched[0]
        return await self._call(request, tool, values)

    async def _call(self, request: web.Request, tool: Tool, values: dict[str, str]) -> web.Response:
        faults, profile, now = self.faults, self.profile, self.clock()
        if faults.delay:
            await asyncio.sleep(faults.delay)
        key = self._presented_key(request)
        body = await request_body(request)
        query = redact(request.query, self._secret_params)  # as recorded
        params = {k: v for k, v in query.items() if k.lower() not in self._secret_params}
        authorized = key is not None and key in self.valid_keys
        answer: Reply
        if faults.next_api_reply is not None:
            answer, faults.next_api_reply = faults.next_api_reply, None
        elif faults.next_api_error is not None:
            name, faults.next_api_error = faults.next_api_error, None
            answer = profile.error(name, key or "", faults.retry_after, now)
        elif faults.next_api_status is not None:
            status, faults.next_api_status = faults.next_api_status, None
            if status == 401:
                answer = profile.invalid_key(key or "", now)
            else:
                answer = profile.status_error(status, faults.retry_after, now)
        elif key is None:
            answer = profile.missing_key(now)
        elif key in self.expired_keys and "expired_key" in profile.errors:
            answer = profile.error("expired_key", key, faults.retry_after, now)
        elif not authorized:
            answer = profile.invalid_key(key, now)
        elif tool.name in self.missing_permissions.get(key, ()):
            answer = profile.permission(key, tool.name, now)
        else:
            answer = self._answer(tool, values, params, body, now)
        status, payload, headers = answer
        url = "https://" + path_of(request) + ("?" + urlencode(query) if query else "")
        self.requests.append(
            ApiRequest(
                tool=tool.name,
                method=request.method,
                url=url,
                query=query,
                headers=redact(request.headers, self._secret_headers),
                body=body,
                status=status,
                authorized=authorized and key not in self.expired_keys,
                credential=fingerprint(key) if key is not None else "",
            )
        )
        return reply(status, payload, headers)

    def _answer(
        self, tool: Tool, values: dict[str, str], query: dict[str, str], body: Any, now: float
    ) -> Reply:
        canned = self.responses.get(tool.name)
        if callable(canned):
            canned = canned(query, body)
        if canned is not None:
            return 200, canned, self.profile.success_headers(now)
        return self.profile.answer(tool, values, query, body, now)


def path_of(request: web.Request) -> str:
    """The real ``host/path`` a sandbox request stands for (no query)."""
    return request.raw_path.split("?", 1)[0].removeprefix("/")
