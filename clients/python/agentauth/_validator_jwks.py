"""Where the keys come from: the JWKS URL, the default fetcher, and when to fetch again.

The policy (:class:`JwksCache`) holds no lock and does no I/O itself, so the
sync and async validators share it and differ only in how they wait:

* The key set is fetched lazily, on the first token, and used for
  ``jwks_cache_ttl`` seconds; after that the next token triggers a refresh
  while every other caller keeps verifying with the current keys.
* A ``kid`` we do not know triggers a refetch, but at most one fetch is
  attempted per ``refetch_interval`` whatever the outcome, so a storm of
  made-up kids costs the issuer one request per interval (PyJWT
  CVE-2026-48524 was the unbounded version of this).
* A failed fetch, or a document without one usable key, leaves the last good
  key set in place. Until a first set has been fetched, retries are allowed
  once a second (at most once per ``refetch_interval``), and tokens fail with
  ``JWKS_UNAVAILABLE``.
* Keys come from the configured URL only. RFC 8725 §3.10: "blindly following
  a "jku" (JWK set URL) or "x5u" (X.509 URL) header, which may contain an
  arbitrary URL, could result in server-side request forgery (SSRF) attacks."
  The validator never reads them (nor ``x5c`` or an embedded ``jwk``), so a
  token cannot make us fetch anything.

The default fetcher uses the standard library only. It refuses plain ``http``
except to a loopback host - the rule RFC 7515 §4.1.2 sets for a JWK Set URL:
"an HTTP GET request to retrieve the JWK Set MUST use Transport Layer Security
(TLS)" - refuses redirects to another origin, times out, and caps the body.
"""

from __future__ import annotations

import enum
import logging
import math
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPMessage
from typing import IO, Final
from urllib.parse import urlsplit

from agentauth._validator_keys import (
    MAX_JWKS_BYTES,
    MAX_KID_LENGTH,
    JwksError,
    VerificationKey,
    parse_jwks,
)
from agentauth._version import __version__

__all__ = ["Fetch", "JwksCache", "Need", "check_jwks_url", "urllib_fetch"]

_log = logging.getLogger("agentauth.validator")

#: ``fetch(url) -> body``: how the validator gets the JWK Set document.
Fetch = Callable[[str], bytes]

FETCH_TIMEOUT: Final = 5.0
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})
#: Retry spacing while no key set has ever been fetched.
_FIRST_FETCH_RETRY: Final = 1.0


def check_jwks_url(url: str) -> None:
    """Refuse a JWKS URL that is not https, except plain http to a loopback host."""
    if not isinstance(url, str):
        raise TypeError("jwks_url must be a string")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.username is not None or parts.password is not None:
        raise ValueError("jwks_url must not carry credentials")
    if not host:
        raise ValueError("jwks_url must be an absolute https URL")
    if parts.scheme == "https":
        return
    if parts.scheme == "http" and host in _LOOPBACK_HOSTS:
        return
    raise ValueError("jwks_url must use https (plain http is allowed for loopback hosts only)")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or ""), parts.port


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only when scheme, host and port stay the same."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if _origin(newurl) != _origin(req.full_url):
            raise urllib.error.HTTPError(
                req.full_url, code, "redirect to another origin refused", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER: Final = urllib.request.build_opener(_SameOriginRedirects())


def urllib_fetch(
    url: str, *, timeout: float = FETCH_TIMEOUT, max_bytes: int = MAX_JWKS_BYTES
) -> bytes:
    """GET ``url`` with the standard library and return the body (the default fetcher)."""
    check_jwks_url(url)
    request = urllib.request.Request(  # noqa: S310 - scheme checked just above
        url,
        headers={"Accept": "application/json", "User-Agent": f"agentauth-python/{__version__}"},
    )
    with _OPENER.open(request, timeout=timeout) as response:
        if response.status != 200:
            raise OSError(f"JWKS endpoint answered HTTP {response.status}")
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise OSError("JWKS document too large")
        body = response.read(max_bytes + 1)
    if not isinstance(body, bytes) or len(body) > max_bytes:
        raise OSError("JWKS document too large")
    return body


class Need(enum.Enum):
    """What a caller must do before it can use the key set for a kid."""

    NOTHING = "nothing"
    #: The set is older than its TTL: refresh it unless someone already is.
    REFRESH = "refresh"
    #: No set yet, or an unknown kid with the refetch budget available: wait for a fetch.
    FETCH = "fetch"


@dataclass(frozen=True, slots=True)
class KeySet:
    keys: dict[str, VerificationKey]
    fetched_at: float


class JwksCache:
    """Fetch policy and the current key set; callers serialise fetches with their own lock."""

    def __init__(
        self,
        url: str,
        fetch: Fetch,
        algorithms: frozenset[str],
        *,
        ttl: float,
        refetch_interval: float,
    ) -> None:
        self.url = url
        self._fetch = fetch
        self._algorithms = algorithms
        self._ttl = ttl
        self._refetch_interval = refetch_interval
        self.key_set: KeySet | None = None
        self._attempted_at = -math.inf

    def _budget(self, now: float) -> bool:
        interval = self._refetch_interval
        if self.key_set is None:
            interval = min(interval, _FIRST_FETCH_RETRY)
        elapsed = now - self._attempted_at
        # A clock that went backwards must not freeze fetching until it catches up.
        return elapsed >= interval or elapsed < 0

    def plan(self, kid: str, now: float) -> tuple[VerificationKey | None, Need]:
        """The key for ``kid`` if we have it, and whether a fetch should happen first."""
        key_set = self.key_set
        if key_set is None:
            return None, Need.FETCH if self._budget(now) else Need.NOTHING
        key = key_set.keys.get(kid)
        if key is not None:
            age = now - key_set.fetched_at
            stale = age >= self._ttl or age < 0
            return key, Need.REFRESH if stale and self._budget(now) else Need.NOTHING
        # A kid longer than any we keep can never match: no fetch for it.
        if len(kid) <= MAX_KID_LENGTH and self._budget(now):
            return None, Need.FETCH
        return None, Need.NOTHING

    def begin(self, now: float) -> None:
        """Spend the budget before the (slow) fetch, so that nobody starts a second one."""
        self._attempted_at = now

    def fetch(self) -> bytes | None:
        """Run the fetcher; any failure is logged and returns None. Safe in a worker thread."""
        try:
            raw = self._fetch(self.url)
        except Exception as exc:  # the fetcher is pluggable: anything it raises is a failed fetch
            _log.warning("fetching the JWKS from %s failed (%s)", self.url, type(exc).__name__)
            return None
        if not isinstance(raw, bytes | bytearray) or len(raw) > MAX_JWKS_BYTES:
            _log.warning("the JWKS from %s is not bytes or exceeds the size limit", self.url)
            return None
        return bytes(raw)

    def install(self, raw: bytes | None, now: float) -> bool:
        """Adopt a fetched document. True if a key we trusted is gone or changed."""
        if raw is None:
            return False
        try:
            keys = parse_jwks(raw, self._algorithms)
        except JwksError as exc:
            _log.warning(
                "the JWKS from %s was refused: %s; keeping the last good keys", self.url, exc
            )
            return False
        previous = self.key_set
        self.key_set = KeySet(keys, now)
        if previous is None:
            return False
        return any(
            kid not in keys or keys[kid].material != key.material
            for kid, key in previous.keys.items()
        )
