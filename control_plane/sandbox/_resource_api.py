"""What every connector emulator shares: serving a connector's real URLs on loopback.

A tool's ``https://host/path/{id}`` is served at ``/host/path/<segment>``
(:func:`route`), the way :mod:`control_plane.connectors.sandbox_routing` rewrites
it; each call seen is kept as an :class:`ApiRequest` with its credential redacted.
Used by the OAuth emulator (:mod:`.oauth_provider`) and the API-key one
(:mod:`.api_key_provider`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, unquote

from aiohttp import web

from control_plane.connectors.model import Connector, Tool
from control_plane.connectors.sandbox_routing import rewrite_for_sandbox, sandbox_url
from control_plane.sandbox._loopback import LoopbackServer, json_response

#: status, JSON body (bytes: sent raw), headers
Reply = tuple[int, Any, Mapping[str, str]]
REDACTED = "[redacted]"
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True, slots=True)
class Route:
    kind: str  # authorize | token | revoke | tool | extra
    pattern: re.Pattern[str]
    names: tuple[str, ...]  # placeholder per regex group
    tool: Tool | None = None
    url: str = ""

    def values(self, path: str) -> dict[str, str]:
        """Every placeholder's value in a matching raw path (``{client_id}`` too)."""
        m = self.pattern.fullmatch(path)
        return {} if m is None else dict(zip(self.names, map(unquote, m.groups()), strict=True))

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


def route(kind: str, url: str, tool: Tool | None = None) -> Route:
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
    return Route(kind, re.compile(regex), names, tool, url)


def tool_routes(tools: tuple[Tool, ...]) -> list[Route]:
    """One route per tool, the most literal pattern first: /files/search before /files/{id}."""
    routes = [route("tool", t.http.url, t) for t in tools]
    routes.sort(key=lambda r: (len(r.names), -len(r.pattern.pattern)))
    return routes


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One resource-API call the sandbox saw (credentials redacted)."""

    tool: str
    method: str
    url: str  # the real provider URL it stands for
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any  # parsed JSON, a form dict, text, or None
    status: int
    authorized: bool
    #: :func:`fingerprint` of the credential presented ("" when none or not recorded).
    credential: str = ""


def fingerprint(secret: str) -> str:
    """A short one-way tag of a credential, to tell which one a call carried."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def redact(values: Mapping[str, str], names: frozenset[str]) -> dict[str, str]:
    """``values`` with the ones named (any letter case) replaced by ``[redacted]``."""
    return {k: (REDACTED if k.lower() in names else v) for k, v in values.items()}


class CallbackServer(LoopbackServer):
    """A loopback server whose routes come from a callable (the emulator's dispatch)."""

    def __init__(self, routes: Callable[[], list[web.RouteDef]]) -> None:
        super().__init__()
        self._route_factory = routes

    def _routes(self) -> list[web.RouteDef]:
        return self._route_factory()


def reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    if isinstance(body, bytes):
        return web.Response(body=body, status=status, headers=dict(headers or {}))
    return json_response(body, status=status, headers=dict(headers or {}))


async def request_body(request: web.Request) -> Any:
    """The body as the provider would read it: JSON, a form dict, text, or None."""
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


class ServedConnector:
    """The loopback server's life cycle and URLs, shared by the emulators of a connector
    (OAuth and API-key): ``async with`` starts and stops it; ``connector_for_sandbox``
    points a copy of the connector here."""

    connector: Connector
    server: LoopbackServer

    async def start(
        self, *, host: str = "127.0.0.1", port: int = 0, expose_as: str | None = None
    ) -> str:
        return await self.server.start(host=host, port=port, expose_as=expose_as)

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

    def sandbox_url(self, real_url: str) -> str:
        """``https://host/path?q`` -> ``{base_url}/host/path?q``."""
        return sandbox_url(self.base_url, real_url)

    def connector_for_sandbox(self, connector: Connector | None = None) -> Connector:
        """A copy of the connector whose endpoints and tool URLs point here."""
        return rewrite_for_sandbox(connector or self.connector, self.base_url)
