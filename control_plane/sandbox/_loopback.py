"""The loopback HTTP server every sandbox emulator is built on.

An emulator is a small aiohttp app bound to a loopback address only (it holds
signing keys that mint tokens for any identity, so it must never be reachable
from another machine; the one exception, ``expose_as``, is a container whose
port the host publishes on its own loopback), with per-path request counters and fault injection, in
the spirit of SPIRE's fake datastore: the real wire format, plus knobs that
make a relying party's retry and caching behaviour observable.
"""

from __future__ import annotations

import ipaddress
import json
from collections import Counter, deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = [
    "EVERY_INTERFACE",
    "LoopbackServer",
    "json_response",
    "require_loopback",
    "require_loopback_url",
]


#: Where an ``expose_as`` emulator listens: every interface of its container.
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104


def require_loopback(host: str) -> str:
    """Return ``host`` as a loopback IP literal, or raise ValueError.

    ``localhost`` is mapped to ``127.0.0.1`` rather than resolved, because a
    resolver could answer with anything.
    """
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"refusing to bind {host!r}: not a loopback IP address") from None
    if not address.is_loopback:
        raise ValueError(f"refusing to bind {host!r}: sandbox issuers listen on loopback only")
    return str(address)


def json_response(
    body: Any,
    *,
    status: int = 200,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> web.Response:
    """A JSON response with an exact Content-Type (aiohttp would add a charset)."""
    response = web.Response(
        body=json.dumps(body, separators=(",", ":")).encode("utf-8"),
        status=status,
        headers=headers,
    )
    response.content_type = content_type
    return response


def require_loopback_url(url: str) -> str:
    """Return ``url`` (``http://<loopback IP>:<port>``, no path) without a trailing
    slash, or raise ValueError: what an exposed emulator may advertise."""
    parts = urlsplit(url.rstrip("/"))
    try:
        port = parts.port
    except ValueError:
        port = None
    if (
        parts.scheme != "http"
        or port is None
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ValueError(f"expected http://<loopback IP>:<port>, got {url!r}")
    require_loopback(parts.hostname or "")
    return f"http://{parts.netloc}"


class LoopbackServer:
    """Base class: subclasses provide :meth:`_routes` and :attr:`_fault_paths`."""

    #: Paths that :meth:`fail_next_requests` applies to (the published endpoints).
    _fault_paths: frozenset[str] = frozenset()

    def __init__(self) -> None:
        #: Requests received, by path, including the ones answered with a fault.
        self.requests: Counter[str] = Counter()
        self._faults: deque[int] = deque()
        self._extra_routes: list[web.RouteDef] = []
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    def _routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def add_routes(self, routes: Iterable[web.RouteDef]) -> None:
        """Serve more routes (e.g. the CLI's ``POST /issue``); call before :meth:`start`."""
        if self._runner is not None:
            raise RuntimeError("add routes before start()")
        self._extra_routes.extend(routes)

    def fail_next_requests(self, n: int, status: int = 503) -> None:
        """Answer the next ``n`` requests to the published endpoints with ``status``.

        Mirrors an API server or bundle endpoint that is briefly unavailable
        (rolling restart, overload); other paths are unaffected.
        """
        if n < 0 or not 400 <= status <= 599:
            raise ValueError("n must be >= 0 and status an HTTP error status")
        self._faults.extend([status] * n)

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def url(self) -> str:
        """Base URL of the server, ``http://127.0.0.1:<port>`` (the last one after stop)."""
        if self._url is None:
            raise RuntimeError("the server has not been started")
        return self._url

    @web.middleware
    async def _count_and_inject(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests[request.path] += 1
        if request.path in self._fault_paths and self._faults:
            status = self._faults.popleft()
            return json_response({"error": "injected fault", "status": status}, status=status)
        return await handler(request)

    async def start(
        self, *, host: str = "127.0.0.1", port: int = 0, expose_as: str | None = None
    ) -> str:
        """Bind ``host:port`` (port 0 picks a free one) and return the base URL.

        ``expose_as`` is for a container whose port the host publishes on *its*
        loopback (deploy/docker-compose.sandbox.yml): listen on every interface of
        the container instead, and advertise that URL (a loopback URL of the host,
        see :func:`require_loopback_url`) as the base of every URL and ``iss``."""
        if self._runner is not None:
            raise RuntimeError("already started")
        advertised = require_loopback_url(expose_as) if expose_as is not None else None
        host = EVERY_INTERFACE if advertised is not None else require_loopback(host)
        app = web.Application(middlewares=[self._count_and_inject])
        app.add_routes([*self._routes(), *self._extra_routes])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        netloc = f"[{host}]" if ":" in host else host
        self._url = advertised or f"http://{netloc}:{bound_port}"
        return self._url

    async def stop(self) -> None:
        """Close the listener; counters and keys are kept."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

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
