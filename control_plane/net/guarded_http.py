"""The one client for URLs an organization configures: OIDC discovery, JWKS, and later
SIEM endpoints and client metadata documents.

Such a URL is typed by an org admin and fetched by the server, so it must not
become a way to reach what only the server can reach (OWASP SSRF Prevention
Cheat Sheet, CWE-918). Every fetch of one goes through :class:`GuardedHttp`:

* the URL passes :meth:`OutboundPolicy.url_problem` (https; http only to loopback
  in local mode; no credentials; literal addresses checked);
* the host name is resolved here (``getaddrinfo``) and *every* address it resolves
  to is checked (:meth:`OutboundPolicy.address_allowed`): loopback, private,
  link-local, multicast, reserved, CGNAT and the like are refused unless the
  platform allow-lists them. The connection then goes to exactly the checked
  addresses - aiohttp asks :class:`_PinningResolver` and no one else, with no DNS
  cache - so there is no second lookup for a rebinding answer to slip into. TLS
  still sends SNI and verifies the certificate for the URL's host name;
* no redirects (a 3xx is a refusal), status 200 only, no proxy from the
  environment, no cookies, no compressed bodies, at most ``max_bytes`` of body and
  ``timeout`` seconds for everything, DNS included;
* each organization has a fetch budget (:class:`FetchBudget`, per process);
* whatever goes wrong - a refused URL or address, DNS failure, a closed port, a
  timeout, a bad status, an oversized body, a spent budget - the caller gets the
  same :class:`FetchRefused`, whose text never varies, so nothing tells an org
  whether a port is open. The private reason is logged at info level with the
  org and host only (never the path or query, which may carry secrets).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from ipaddress import ip_address
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from control_plane.domain.outbound import OutboundPolicy
from control_plane.logs import get_logger

__all__ = [
    "MAX_BODY_BYTES",
    "FetchBudget",
    "FetchRefused",
    "GuardedHttp",
    "Lookup",
    "system_lookup",
]

log = get_logger("agentauth.outbound")

MAX_BODY_BYTES = 256 * 1024
DEFAULT_TIMEOUT = 5.0
_CHUNK = 64 * 1024

#: ``(host, port) -> addresses``: the DNS lookup the guard checks (injectable for tests).
Lookup = Callable[[str, int], Awaitable[Sequence[str]]]


class FetchRefused(Exception):
    """An org-configured URL could not be fetched. The text is the same for every cause."""

    MESSAGE = "the URL could not be fetched"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class _Refusal(Exception):
    """A private reason, logged and never shown."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def system_lookup(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class _PinningResolver(AbstractResolver):
    """Resolves, refuses the whole answer if any address is not allowed, and hands
    aiohttp only checked addresses to connect to."""

    def __init__(self, policy: OutboundPolicy, lookup: Lookup) -> None:
        self._policy = policy
        self._lookup = lookup

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            found = await self._lookup(host, port)
        except OSError as exc:
            raise _Refusal(f"no address ({type(exc).__name__})") from None
        if not found:
            raise _Refusal("no address")
        out: list[ResolveResult] = []
        for text in dict.fromkeys(found):
            try:
                ip = ip_address(text.split("%", 1)[0])
            except ValueError:
                raise _Refusal("unparsable address") from None
            # One refused address refuses the answer: a mix of public and internal
            # addresses is what a rebinding or split-horizon attack looks like.
            if not self._policy.address_allowed(host, ip):
                raise _Refusal(f"address {ip} is in a refused range")
            out.append(
                ResolveResult(
                    hostname=host,
                    host=str(ip),
                    port=port,
                    family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        return out

    async def close(self) -> None:
        return None


class FetchBudget:
    """At most ``per_minute`` fetches per organization (a token bucket each, in memory).

    Per process: with N replicas an org can make N times as many. One org spending
    its budget never touches another's.
    """

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_orgs: int = 100_000,
    ) -> None:
        if per_minute < 1:
            raise ValueError("the outbound fetch budget must be at least 1 per minute")
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._max_orgs = max_orgs
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, org_id: str) -> bool:
        now = self._clock()
        tokens, at = self._buckets.pop(org_id, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - at) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[org_id] = (tokens, now)  # most recent last
        if len(self._buckets) > self._max_orgs:
            self._buckets.popitem(last=False)  # the longest idle: a full bucket anyway
        return allowed


class GuardedHttp:
    """GET of org-configured URLs under an :class:`OutboundPolicy`; see the module doc.

    Built once by the composition root and passed to whoever fetches such URLs.
    """

    def __init__(
        self,
        policy: OutboundPolicy,
        budget: FetchBudget,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = MAX_BODY_BYTES,
        lookup: Lookup = system_lookup,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = "agentauth",
    ) -> None:
        self.policy = policy
        self._budget = budget
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._lookup = lookup
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_PinningResolver(self.policy, self._lookup),
                use_dns_cache=False,  # every connection is resolved and checked anew
                ssl=self._ssl,
                limit=64,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,  # no HTTP(S)_PROXY: the checked address is the peer
                cookie_jar=aiohttp.DummyCookieJar(),  # nothing carried between orgs
                auto_decompress=False,
                headers={"User-Agent": self._user_agent, "Accept-Encoding": "identity"},
            )
        return self._session

    async def get(self, org_id: str, url: str) -> bytes:
        """The body of a 200 answer to GET ``url`` on behalf of ``org_id``, or FetchRefused."""
        try:
            problem = self.policy.url_problem(url)
            if problem is not None:
                raise _Refusal(problem)
            if not self._budget.take(org_id):
                raise _Refusal("the organization's fetch budget is spent")
            async with asyncio.timeout(self._timeout):
                return await self._fetch(url)
        except _Refusal as exc:
            reason = exc.reason
        except TimeoutError:
            reason = "timed out"
        except Exception as exc:  # connection refused, reset, TLS, bad HTTP: all alike
            reason = f"failed ({type(exc).__name__})"
        log.info("outbound fetch refused", org_id=org_id, host=_host(url), reason=reason)
        raise FetchRefused() from None

    async def _fetch(self, url: str) -> bytes:
        async with self._client().get(url, allow_redirects=False) as r:
            if r.status != 200:
                raise _Refusal(f"status {r.status}")
            if r.headers.get("Content-Encoding", "identity").lower() not in ("", "identity"):
                raise _Refusal("encoded body")
            if r.content_length is not None and r.content_length > self._max_bytes:
                raise _Refusal("body too large")
            body = bytearray()
            async for chunk in r.content.iter_chunked(_CHUNK):
                body += chunk
                if len(body) > self._max_bytes:
                    raise _Refusal("body too large")
            return bytes(body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "")[:255]
    except ValueError:
        return ""
