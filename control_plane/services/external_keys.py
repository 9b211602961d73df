"""Public keys of parties outside agentauth: workload issuers and agents' own keys.

Each key is parsed by the JOSE core (:func:`agentauth._jose.parse_jwk`): RSA of
at least 2048 bits, EC P-256/384/521 or Ed25519, bound to exactly one
algorithm (RFC 8725 §3.1) - its JWK ``alg``, else the one its curve implies,
else RS256 for RSA. A set is all or nothing: one unusable key refuses it (at
policy creation a field error; when discovered, the last good set stays).

Static JWK Sets are parsed strictly at policy creation; discovered ones are
fetched (OIDC discovery → ``jwks_uri``), cached, refetched on an unknown ``kid``
at most once per interval with one fetch in flight, and the last good set is kept
when the issuer is down (perf_security.md §A4 "JWKS behaviour", CVE-2026-48524).
Both documents are fetched through :class:`~control_plane.net.guarded_http.GuardedHttp`
on behalf of the org whose policy names the URL: the org's URL rules, address
checks and fetch budget apply, and each org has its own cache entries, so one
org's failures or spent budget never delay another's keys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from agentauth._jose import (
    PRIVATE_MEMBERS,
    JwkError,
    VerificationKey,
    parse_jwk,
    select_key,
)

from control_plane.domain.errors import field_error
from control_plane.net.guarded_http import GuardedHttp
from control_plane.strict_json import parse_json_object

__all__ = [
    "KEY_TYPES",
    "PRIVATE_MEMBERS",
    "ExternalKey",
    "IssuerKeyCache",
    "KeysUnavailable",
    "parse_public_jwks",
    "single_key",
]

KEY_TYPES = frozenset({"RSA", "EC", "OKP"})
#: SPIFFE trust bundles mark JWT-SVID signing keys ``use: jwt-svid``.
_USES = ("sig", "jwt-svid")

#: A verification key bound to its one algorithm (the JOSE core's type).
ExternalKey = VerificationKey


class KeysUnavailable(Exception):
    """No key set could be had for an issuer (never fetched successfully)."""


def parse_public_jwks(text: str | bytes, field_name: str = "jwks_json") -> dict[str, ExternalKey]:
    """A JWK Set of public RSA/EC/OKP keys → {kid: key}; anything else is refused."""
    try:
        doc = parse_json_object(text)
    except ValueError:
        raise field_error(field_name, "is not a JSON object") from None
    keys = doc.get("keys")
    if not isinstance(keys, list) or not keys or len(keys) > 32:
        raise field_error(field_name, 'must hold 1-32 keys under "keys"')
    out: dict[str, ExternalKey] = {}
    for i, jwk in enumerate(keys):
        if isinstance(jwk, dict) and jwk.get("use") == "x509-svid":
            continue  # SPIFFE bundles carry X.509 authorities too; they never sign JWTs
        if not isinstance(jwk, dict) or jwk.get("kty") not in KEY_TYPES:
            raise field_error(field_name, f"key {i}: kty must be RSA, EC or OKP")
        if PRIVATE_MEMBERS & set(jwk):
            raise field_error(field_name, f"key {i}: private key material is not accepted")
        if jwk.get("use") not in (None, "sig", "jwt-svid"):
            raise field_error(field_name, f"key {i}: use must be sig")
        kid = jwk.get("kid", "")
        if not isinstance(kid, str) or len(kid) > 256 or kid in out:
            raise field_error(field_name, f"key {i}: kid must be a unique string")
        try:
            out[kid] = parse_jwk(jwk, uses=_USES, require_kid=False)
        except JwkError:
            raise field_error(field_name, f"key {i}: not a usable public key") from None
    if not out:
        raise field_error(field_name, "holds no JWT signing key")
    return out


@dataclass
class _Entry:
    keys: dict[str, ExternalKey] = field(default_factory=dict)
    fetched_at: float = float("-inf")
    last_attempt: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class IssuerKeyCache:
    """Keys behind OIDC discovery URLs, per (org, URL)."""

    def __init__(
        self,
        http: GuardedHttp,
        *,
        ttl: float = 300.0,
        refetch_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._ttl = ttl
        self._refetch = refetch_interval
        self._clock = clock
        self._entries: dict[tuple[str, str], _Entry] = {}

    async def key(self, org_id: str, discovery_url: str, kid: str) -> ExternalKey | None:
        entry = self._entries.setdefault((org_id, discovery_url), _Entry())
        now = self._clock()
        stale = now - entry.fetched_at > self._ttl
        missing = kid not in entry.keys if kid else not entry.keys
        # Stale or unknown-kid refetches share one budget: at most one attempt per
        # refetch interval, so a down issuer or a forged-kid storm costs one
        # outbound request per interval, not one per token.
        if (stale or missing) and now - entry.last_attempt >= self._refetch:
            await self._refresh(org_id, discovery_url, entry, seen=entry.last_attempt)
        if not entry.keys:
            raise KeysUnavailable(discovery_url)
        return select_key(entry.keys, kid, allow_single=True)

    async def _refresh(self, org_id: str, url: str, entry: _Entry, *, seen: float) -> None:
        async with entry.lock:
            if entry.last_attempt != seen:  # a caller ahead of us already tried
                return
            entry.last_attempt = self._clock()
            try:
                discovery = parse_json_object(await self._http.get(org_id, url))
                jwks_uri = discovery.get("jwks_uri")
                if not isinstance(jwks_uri, str):
                    return
                body = await self._http.get(org_id, jwks_uri)  # the same rules as url
                entry.keys = parse_public_jwks(body, "jwks_uri")
                entry.fetched_at = self._clock()
            except Exception:  # keep the last good set; the caller sees unknown kid
                return


def single_key(keys: Mapping[str, ExternalKey]) -> ExternalKey | None:
    """A token without ``kid`` is acceptable only when the set has exactly one key."""
    return select_key(keys, "", allow_single=True)
