"""What the sync and async validators share: configuration, the verified-token
cache, and every check that does no I/O. See :mod:`agentauth._validator`.

The verified-token cache maps the exact token string to the
:class:`~agentauth.VerifiedToken` and the window ``[from, until]`` in which
the claims check passes; an entry is used only inside that window, so a hit
answers exactly as a fresh check would, and never past ``exp`` + ``leeway``.
It is a bounded LRU (``cache_size`` entries), cleared when a trusted key is
withdrawn from the key set; revocation, org and scopes are checked on every
call, hits included.

Why the string itself and not a digest of it: a dict lookup hashes the string
(once per string object, then cached by Python) and, on a hit, compares the
whole stored string with the presented one, so only the identical token
hits - exactly as strict as keying by SHA-256, without computing SHA-256 on
every call (that alone capped hits at ~575k/s). The cost is that the cache
holds up to ``cache_size`` token strings (each at most ``max_token_bytes``)
until they expire or are evicted. They are bearer tokens the caller already
holds in memory - it has just passed each one in - so keeping them adds no
secret the process did not have; whoever can read this process's memory can
read the requests it is serving.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final

from agentauth._jose import (
    MAX_JSON_DEPTH,
    MAX_LEEWAY,
    HeaderMemo,
    JoseError,
    ParsedJws,
    Typ,
    algorithm_set,
    parse_claims,
    parse_compact,
)
from agentauth._revocation_list import RevocationList
from agentauth._validator_claims import VerifiedToken, authorize, check_claims
from agentauth._validator_errors import TokenReason, from_jose, token_error
from agentauth._validator_jwks import Fetch, JwksCache, check_jwks_url, urllib_fetch
from agentauth._validator_keys import SUPPORTED_ALGORITHMS, SignatureVerifier, VerificationKey

__all__ = ["Validator"]

_JWKS_PATH: Final = "/.well-known/jwks.json"
_MAX_ACT_DEPTH_LIMIT: Final = 64
_Entry = tuple[VerifiedToken, float, float]


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}")
    return float(value)


def _count(name: str, value: int, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}")
    return value


def _algorithms(algorithms: Iterable[str]) -> frozenset[str]:
    # RFC 8725 §3.1: the caller specifies the algorithms; we only support the
    # asymmetric ones agentauth signs with. HS*, none and the rest are refused
    # here, at configuration time, rather than at the first token.
    if isinstance(algorithms, str | bytes):
        raise TypeError("algorithms must be a collection of algorithm names, e.g. ('ES256',)")
    return algorithm_set(frozenset(algorithms), SUPPORTED_ALGORITHMS)


class Validator:
    """Configuration, the verified-token cache and every check that does no I/O."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks_url: str | None = None,
        algorithms: Iterable[str] = ("ES256",),
        leeway: float = 30.0,
        clock: Callable[[], float] | None = None,
        expected_org: str | None = None,
        max_token_bytes: int = 8192,
        max_act_depth: int = 8,
        refetch_interval: float = 60.0,
        jwks_cache_ttl: float = 300.0,
        cache_size: int = 10_000,
        fetch: Fetch | None = None,
        revocations: RevocationList | None = None,
        max_staleness: float | None = 120.0,
    ) -> None:
        if not isinstance(issuer, str) or not issuer:
            raise ValueError("issuer must be a non-empty string")
        if not isinstance(audience, str) or not audience:
            raise ValueError("audience must be a non-empty string")
        if expected_org is not None and (not isinstance(expected_org, str) or not expected_org):
            raise ValueError("expected_org must be a non-empty string or None")
        if clock is not None and not callable(clock):
            raise TypeError("clock must be a callable returning epoch seconds")
        if fetch is not None and not callable(fetch):
            raise TypeError("fetch must be a callable taking a URL and returning bytes")
        url = jwks_url if jwks_url is not None else issuer.rstrip("/") + _JWKS_PATH
        check_jwks_url(url)
        self._issuer = issuer
        self._audience = audience
        self._algorithms = _algorithms(algorithms)
        self._leeway = _positive("leeway", leeway, allow_zero=True)
        if self._leeway > MAX_LEEWAY:
            # RFC 7519 §4.1.4: "some small leeway, usually no more than a few minutes".
            raise ValueError(f"leeway must be <= {MAX_LEEWAY:g} seconds")
        self._clock: Callable[[], float] = clock if clock is not None else time.time
        self._expected_org = expected_org
        self._max_token_bytes = _count("max_token_bytes", max_token_bytes, minimum=1)
        self._max_act_depth = _count("max_act_depth", max_act_depth, minimum=0)
        if self._max_act_depth > _MAX_ACT_DEPTH_LIMIT:
            # Delegation chains are short by design; a bound also keeps every
            # walk over the claims far from Python's recursion limit.
            raise ValueError(f"max_act_depth must be <= {_MAX_ACT_DEPTH_LIMIT}")
        self._max_json_depth = max(MAX_JSON_DEPTH, self._max_act_depth + 2)
        self._cache_size = _count("cache_size", cache_size, minimum=0)
        # One comparison on the hot path covers both "too long" and "cache off".
        self._cacheable_bytes = self._max_token_bytes if self._cache_size else -1
        self._jwks = JwksCache(
            url,
            fetch if fetch is not None else urllib_fetch,
            self._algorithms,
            ttl=_positive("jwks_cache_ttl", jwks_cache_ttl),
            refetch_interval=_positive("refetch_interval", refetch_interval),
        )
        self._verifier = SignatureVerifier()
        # Headers of this issuer's tokens that passed the checks (JOSE core, bounded).
        self._header_memo: HeaderMemo = {}
        # Plain OrderedDict without a lock: get, move_to_end, setitem and
        # popitem are each one atomic C call; the races between them are
        # handled where they can surface (KeyError).
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._withdrawals = 0
        if revocations is not None and not isinstance(revocations, RevocationList):
            raise TypeError("revocations must be a RevocationList")
        self._revocations = revocations
        self._max_staleness = (
            None if max_staleness is None else _positive("max_staleness", max_staleness)
        )
        # Fixed at construction: whether every call, cache hits included, has
        # checks beyond the window (revocation, an org); one test on the hot path.
        self._per_call_checks = revocations is not None or expected_org is not None
        self._setup()

    def _setup(self) -> None:
        """Create the lock that serialises JWKS fetches (threads or tasks)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(issuer={self._issuer!r}, audience={self._audience!r}, "
            f"jwks_url={self._jwks.url!r}, algorithms={sorted(self._algorithms)!r})"
        )

    @property
    def jwks_url(self) -> str:
        return self._jwks.url

    def _lookup(self, token: str, now: float) -> VerifiedToken | str | None:
        """The cached token if valid at ``now``; else its cache key; None if uncacheable.

        This is the hot path for repeated tokens: one dict lookup, keyed by the
        token itself (see the module docstring).
        """
        if type(token) is not str or len(token) > self._cacheable_bytes:
            return None
        entry = self._cache.get(token)
        if entry is not None and entry[1] <= now <= entry[2]:
            try:
                self._cache.move_to_end(token)
            except KeyError:  # evicted by another thread meanwhile; still verified
                pass
            return entry[0]
        return token

    def _check_revocation(self, verified: VerifiedToken) -> None:
        """With a revocation list: refuse listed tokens, and everything while it is stale."""
        revocations = self._revocations
        if revocations is None:
            return
        if verified.jti in revocations:
            raise token_error(TokenReason.TOKEN_REVOKED)
        if self._max_staleness is not None and not revocations.is_current(self._max_staleness):
            raise token_error(TokenReason.REVOCATIONS_UNAVAILABLE)

    def _per_call(
        self, verified: VerifiedToken, required_scopes: Iterable[str], expected_org: str | None
    ) -> VerifiedToken:
        """What every call checks, cache hits included: revocation, then org and scopes."""
        if self._revocations is not None:
            self._check_revocation(verified)
        if required_scopes or expected_org is not None or self._expected_org is not None:
            org = expected_org if expected_org is not None else self._expected_org
            return authorize(verified, required_scopes, org)
        return verified

    def _remember(self, token: str, entry: _Entry) -> None:
        cache = self._cache
        cache[token] = entry
        try:
            while len(cache) > self._cache_size:
                cache.popitem(last=False)
        except KeyError:  # another thread emptied it first
            pass

    def _parse(self, token: str) -> ParsedJws:
        try:
            return parse_compact(
                token,
                algorithms=self._algorithms,
                max_bytes=self._max_token_bytes,
                typ=Typ.ACCESS_TOKEN,
                header_memo=self._header_memo,
            )
        except JoseError as exc:
            raise from_jose(exc) from None

    def _missing_key(self) -> Exception:
        if self._jwks.key_set is None:
            return token_error(TokenReason.JWKS_UNAVAILABLE)
        return token_error(TokenReason.TOKEN_KEY_UNKNOWN)

    def _adopt(self, raw: bytes | None) -> None:
        if self._jwks.install(raw, self._clock()):
            # A key we trusted was withdrawn: tokens it signed must stop
            # validating now, not when their cache entries expire.
            self._withdrawals += 1
            self._cache.clear()

    def _finish(
        self,
        parsed: ParsedJws,
        key: VerificationKey,
        now: float,
        cache_key: str | None,
    ) -> VerifiedToken:
        withdrawals = self._withdrawals
        if cache_key is not None:
            # An entry outside its window must go even if this check fails.
            self._cache.pop(cache_key, None)
        self._verifier.verify(parsed, key)
        try:
            claims = parse_claims(parsed.payload, max_depth=self._max_json_depth)
        except JoseError as exc:
            raise from_jose(exc) from None
        verified, valid_from, valid_until = check_claims(
            claims,
            issuer=self._issuer,
            audience=self._audience,
            leeway=self._leeway,
            now=now,
            max_act_depth=self._max_act_depth,
        )
        # Not if another thread withdrew a key meanwhile: the entry could
        # outlive the cache clear that withdrawal did.
        if cache_key is not None and withdrawals == self._withdrawals:
            self._remember(cache_key, (verified, valid_from, valid_until))
        return verified
