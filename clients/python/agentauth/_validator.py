"""Offline validation of agentauth access tokens (RFC 9068 JWT profile), sync and async.

A service that receives an agentauth token validates it in-process with the
issuer's published keys (``{issuer}/.well-known/jwks.json``)::

    validator = AsyncTokenValidator("https://auth.example.com", "https://api.example.com")
    token = await validator.validate(bearer, required_scopes=["tools.execute"])
    token.org_id, token.subject, token.actor

The order of checks follows RFC 7515 §5.2 and RFC 9068 §4: strict parsing and
the header, the key chosen by ``kid`` from the configured JWKS URL only and
bound to one algorithm, the signature, then the claims, then the per-call org
and scope checks. Parsing, keys, signatures and the registered claims are the
JOSE core the control plane verifies with too (:mod:`agentauth._jose`); the
key-set policy (:mod:`agentauth._validator_keys`, :mod:`agentauth._validator_jwks`)
and the access-token claims (:mod:`agentauth._validator_claims`) are the
validator's. Every failure is a typed
:class:`~agentauth.AgentAuthError` whose ``reason`` is a
:class:`~agentauth.TokenReason`.

Verified tokens are cached, keyed by the token string itself, for as long as
the claims check would still pass (never past ``exp`` + ``leeway``); org and
scopes are checked on every call. The cache is dropped when a key disappears from the
key set. Revocation is seen offline through a :class:`~agentauth.RevocationList`
kept current by a :class:`~agentauth.RevocationWatcher` (``revocations=``):
a listed token — a revoked one or any token exchanged from it — is refused
with ``TOKEN_REVOKED``, on cache hits too. Without a list, a revoked token
stays valid here until it expires (the control plane caps lifetimes).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

from agentauth._validator_claims import VerifiedToken
from agentauth._validator_core import Validator
from agentauth._validator_jwks import Need
from agentauth._validator_keys import VerificationKey

__all__ = ["AsyncTokenValidator", "TokenValidator"]


class TokenValidator(Validator):
    """Validates agentauth access tokens in-process; safe to share between threads.

    Args:
        issuer: the exact ``iss`` to accept (RFC 9068 §4: "MUST exactly match").
        audience: this service's identifier; ``aud`` must contain it exactly.
        jwks_url: where the issuer publishes its keys; defaults to
            ``{issuer}/.well-known/jwks.json``. https only, except loopback.
        algorithms: the accepted ``alg`` values, a subset of ``{"ES256", "EdDSA"}``.
        leeway: clock skew tolerated on ``exp``, ``nbf`` and ``iat``, in seconds.
        clock: returns the current time in epoch seconds (default ``time.time``).
        expected_org: require this ``org_id`` unless a call passes its own.
        max_token_bytes: longer tokens are refused before any decoding.
        max_act_depth: the longest delegation (``act``) chain accepted (at most 64).
        refetch_interval: at most one JWKS fetch per this many seconds for unknown kids.
        jwks_cache_ttl: how long a fetched key set is used before refreshing it.
        cache_size: verified tokens remembered (LRU); 0 disables the cache.
        fetch: ``fetch(url) -> bytes`` replacing the built-in urllib fetcher;
            it must time out (callers needing a fetch wait for it).
        revocations: a :class:`~agentauth.RevocationList` (filled by a
            :class:`~agentauth.RevocationWatcher`); listed tokens are refused
            with ``TOKEN_REVOKED``.
        max_staleness: with ``revocations``, refuse every token with
            ``REVOCATIONS_UNAVAILABLE`` (UNAVAILABLE) while the list has not
            been confirmed current for this many seconds — fail closed when
            the watch is down. ``None`` keeps accepting (fail open).

    A fetch happens inside :meth:`validate` and blocks that caller (callers
    needing the same fetch wait for it; others keep going). In asyncio code
    use :class:`AsyncTokenValidator`.
    """

    def _setup(self) -> None:
        self._lock = threading.Lock()

    def validate(
        self,
        token: str,
        *,
        required_scopes: Iterable[str] = (),
        expected_org: str | None = None,
    ) -> VerifiedToken:
        """Verify ``token`` and return what it proves, or raise a typed error.

        Raises:
            TokenInvalidError: UNAUTHENTICATED; ``reason`` says which check failed.
            TokenForbiddenError: a ``required_scopes`` entry is missing
                (``TOKEN_SCOPE_INSUFFICIENT``) or ``org_id`` is not the expected
                org (``TOKEN_ORG_MISMATCH``).
            JwksUnavailableError: no key set could be fetched yet, or
                (``REVOCATIONS_UNAVAILABLE``) the revocation list is stale.
        """
        now = self._clock()
        # _lookup() inlined: a method call is a good part of a cache hit.
        if type(token) is str and len(token) <= self._cacheable_bytes:
            cache = self._cache
            entry = cache.get(token)
            if entry is not None and entry[1] <= now <= entry[2]:
                try:
                    cache.move_to_end(token)
                except KeyError:  # evicted by another thread meanwhile; still verified
                    pass
                verified = entry[0]
            else:
                verified = self._validate_uncached(token, now, token)
        else:
            verified = self._validate_uncached(token, now, None)
        if self._per_call_checks or required_scopes or expected_org is not None:
            return self._per_call(verified, required_scopes, expected_org)
        return verified

    def _validate_uncached(self, token: str, now: float, cache_key: str | None) -> VerifiedToken:
        parsed = self._parse(token)
        return self._finish(parsed, self._key(parsed.kid, now), now, cache_key)

    def refresh_keys(self) -> bool:
        """Fetch the key set now (e.g. at start-up); True if a key set is available.

        Waits for a fetch already in progress instead of starting another.
        """
        with self._lock:
            self._jwks.begin(self._clock())
            self._adopt(self._jwks.fetch())
        return self._jwks.key_set is not None

    def _key(self, kid: str, now: float) -> VerificationKey:
        key, need = self._jwks.plan(kid, now)
        if key is None and need is Need.NOTHING:
            # No budget for a fetch of our own, but one in flight may bring
            # the key (or the first key set): wait for it rather than fail.
            if self._lock.locked():
                need = Need.FETCH
            else:  # or one may have finished since we looked
                key = self._jwks.plan(kid, self._clock())[0]
        if need is not Need.NOTHING and self._lock.acquire(blocking=need is Need.FETCH):
            # Single flight: whoever waited re-plans, and finds the budget
            # spent by the fetch that just finished.
            try:
                now = self._clock()
                if self._jwks.plan(kid, now)[1] is not Need.NOTHING:
                    self._jwks.begin(now)
                    self._adopt(self._jwks.fetch())
            finally:
                self._lock.release()
            key = self._jwks.plan(kid, self._clock())[0]
        if key is None:
            raise self._missing_key()
        return key


class AsyncTokenValidator(Validator):
    """:class:`TokenValidator` for asyncio: same arguments, ``await validator.validate(...)``.

    The JWKS fetch runs in a worker thread (``asyncio.to_thread``) with the
    same fetcher; concurrent callers needing it await one fetch. Use one
    instance per event loop.
    """

    def _setup(self) -> None:
        self._lock = asyncio.Lock()

    async def validate(
        self,
        token: str,
        *,
        required_scopes: Iterable[str] = (),
        expected_org: str | None = None,
    ) -> VerifiedToken:
        """Verify ``token``; see :meth:`TokenValidator.validate`.

        The signature check (~0.1-0.2 ms) runs on the event loop; only JWKS
        fetches leave it.
        """
        now = self._clock()
        verified = self._lookup(token, now)
        if not isinstance(verified, VerifiedToken):
            parsed = self._parse(token)
            key = await self._key(parsed.kid, now)
            verified = self._finish(parsed, key, now, verified)
        if self._per_call_checks or required_scopes or expected_org is not None:
            return self._per_call(verified, required_scopes, expected_org)
        return verified

    async def refresh_keys(self) -> bool:
        """Fetch the key set now (e.g. at start-up); True if a key set is available."""
        async with self._lock:
            self._jwks.begin(self._clock())
            self._adopt(await asyncio.to_thread(self._jwks.fetch))
        return self._jwks.key_set is not None

    async def _key(self, kid: str, now: float) -> VerificationKey:
        key, need = self._jwks.plan(kid, now)
        if key is None and need is Need.NOTHING and self._lock.locked():
            need = Need.FETCH  # wait for the fetch in flight; see TokenValidator._key
        # A stale-but-known key does not wait for someone else's refresh.
        if need is Need.FETCH or (need is Need.REFRESH and not self._lock.locked()):
            async with self._lock:
                now = self._clock()
                if self._jwks.plan(kid, now)[1] is not Need.NOTHING:
                    self._jwks.begin(now)
                    self._adopt(await asyncio.to_thread(self._jwks.fetch))
            key = self._jwks.plan(kid, self._clock())[0]
        if key is None:
            raise self._missing_key()
        return key
