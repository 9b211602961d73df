"""Token signing keys: generation, rotation, taint, JWKS, and the signing capability.

Like SPIRE's KeyManager, private keys never leave this module: they are
generated here, sealed by the vault barrier (AAD bound to the key's row) before
they touch the database, unsealed into memory by :meth:`SigningKeyManager.load`,
and used only inside :meth:`SigningKeyManager.sign`. No method returns a
private key object or its bytes.

The lifecycle (pending -> active -> retired, or tainted) is derived from the
row's timestamps by :mod:`control_plane.tokens.lifecycle`; see there for the
rules. Operational consequences:

* Replicas pick up keys created elsewhere (another replica, the CLI) on their
  next :meth:`~SigningKeyManager.load`, so a new key is in every replica's JWKS
  only ``publish_lag`` (the reload interval) after it is stored. It starts to
  sign ``publish_lag + jwks_cache_ttl`` after that: a verifier may have fetched
  the JWKS from a replica that had not reloaded yet just before it did, and must
  have let that copy expire before the first token under the new kid arrives.
* Storage is untrusted (the barrier's model): the published JWK is derived
  from the unsealed private key on every load, and the stored ``public_jwk``
  must agree, so someone who can write the table still cannot get a key of
  theirs into our JWKS without the KEK.
* ``kid`` is the RFC 7638 JWK thumbprint rather than random bytes: derived
  from the public key, so any verifier can recompute it, two keys cannot share
  one, it reveals nothing, and a row cannot pair a kid with another key.
* Mutations run under one lock per deployment - ``pg_advisory_xact_lock`` on
  PostgreSQL (it also covers the empty table, which a row lock cannot), the
  database write lock taken up front on SQLite - and re-read the rows inside
  it, so concurrent replicas never double-rotate or double-bootstrap.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NoReturn

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from control_plane.clock import Clock
from control_plane.domain.errors import Internal, NotFound
from control_plane.storage.db import Database
from control_plane.storage.signing_keys import KeyRow, KeyTimes
from control_plane.storage.units import PlatformTx
from control_plane.tokens import lifecycle
from control_plane.tokens.encoding import b64url_encode
from control_plane.tokens.jwk import JwkSet, load_jwks, public_jwk_from_key, thumbprint
from control_plane.tokens.lifecycle import KeyState
from control_plane.vault.barrier import PLATFORM, Barrier

__all__ = ["Algorithm", "KeySummary", "SigningKeyManager"]

Algorithm = Literal["ES256", "EdDSA"]
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_TABLE = "signing_keys"
_FIELD = "private_key"
_Times = KeyTimes


@dataclass(frozen=True, slots=True)
class _Key:
    """A loaded key. Private to this module; its private half is never handed out."""

    kid: str
    alg: Algorithm
    public_jwk: Mapping[str, str]
    create_time: dt.datetime
    publish_time: dt.datetime
    activate_time: dt.datetime
    taint_time: dt.datetime | None
    private: PrivateKey = field(repr=False, compare=False)

    def __reduce__(self) -> NoReturn:
        raise TypeError("signing keys cannot be pickled or copied")


@dataclass(frozen=True, slots=True)
class KeySummary:
    """What an operator may see about a key (CLI listing). No secrets."""

    kid: str
    alg: str
    state: KeyState
    published: bool
    create_time: dt.datetime
    publish_time: dt.datetime
    activate_time: dt.datetime
    retire_time: dt.datetime | None
    taint_time: dt.datetime | None


def _generate(alg: Algorithm) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _compact_jws(key: _Key, header: Mapping[str, Any], claims: Mapping[str, Any]) -> str:
    """RFC 7515 §7.1 compact serialization of a JWS signed by ``key``.

    JSON without whitespace (header members sorted); ES256 signatures as the
    64-octet ``R || S`` of RFC 7518 §3.4, EdDSA as RFC 8037 §3.1.
    """
    head = b64url_encode(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
    body = b64url_encode(json.dumps(dict(claims), separators=(",", ":")).encode())
    signing_input = f"{head}.{body}".encode("ascii")
    private = key.private
    if isinstance(private, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = private.sign(signing_input)
    return f"{head}.{body}.{b64url_encode(signature)}"


def _corrupt(kid: str, problem: str) -> Internal:
    return Internal(reason="SIGNING_KEY_CORRUPT", debug=f"signing key {kid}: {problem}")


class SigningKeyManager:
    """Owns the deployment's token signing keys. See the module docstring."""

    def __init__(
        self,
        db: Database,
        barrier: Barrier,
        *,
        clock: Clock,
        algorithm: Algorithm = "ES256",
        jwks_cache_ttl: dt.timedelta = dt.timedelta(minutes=5),
        max_token_ttl: dt.timedelta = dt.timedelta(minutes=15),
        publish_lag: dt.timedelta = dt.timedelta(0),
    ) -> None:
        if algorithm not in ("ES256", "EdDSA"):
            raise ValueError("algorithm must be ES256 or EdDSA")
        if jwks_cache_ttl <= dt.timedelta(0) or max_token_ttl <= dt.timedelta(0):
            raise ValueError("jwks_cache_ttl and max_token_ttl must be positive")
        if publish_lag < dt.timedelta(0):
            raise ValueError("publish_lag must not be negative")
        self._db = db
        self._barrier = barrier
        self._clock = clock
        self._algorithm: Algorithm = algorithm
        self._cache_ttl = jwks_cache_ttl
        #: From storing a key to its first signature (see the module docstring).
        self._activation_delay = publish_lag + jwks_cache_ttl
        self._max_token_ttl = max_token_ttl
        self._keys: tuple[_Key, ...] = ()
        self._loaded = False
        # Serializes load(): the snapshot read last is the one installed last.
        self._load_lock = asyncio.Lock()
        self._published_memo: tuple[tuple[str, ...], str, JwkSet | None] | None = None

    def __repr__(self) -> str:
        return f"<SigningKeyManager alg={self._algorithm} keys={len(self._keys)}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("the signing key manager holds private keys and cannot be copied")

    @property
    def loaded(self) -> bool:
        return self._loaded

    @property
    def algorithm(self) -> Algorithm:
        return self._algorithm

    # ------------------------------------------------------------- loading

    async def load(self) -> None:
        """Read every key row and unseal the private keys we do not hold yet."""
        async with self._load_lock:
            await self._load()

    async def _load(self) -> None:
        async with self._db.platform_tx() as tx:
            snapshot = await tx.signing_keys.rows()
        held = {k.kid: k for k in self._keys}
        keys: list[_Key] = []
        for row in snapshot:
            kid, alg, public_jwk, sealed = row.kid, row.alg, row.public_jwk, row.sealed_private_key
            create, publish, activate, taint = (
                row.create_time,
                row.publish_time,
                row.activate_time,
                row.taint_time,
            )
            known = held.get(kid)
            if known is not None and known.alg == alg:
                # kid is the public key's thumbprint, so the private key cannot differ.
                keys.append(
                    replace(known, publish_time=publish, activate_time=activate, taint_time=taint)
                )
                continue
            # Unseal outside the transaction: a KMS round trip must not hold a connection.
            private = await self._unseal(kid, alg, sealed)
            keys.append(
                self._checked_key(kid, alg, public_jwk, private, create, publish, activate, taint)
            )
        # Python's order, not the database collation's, so every backend agrees on ties.
        self._keys = tuple(sorted(keys, key=lambda k: (k.activate_time, k.kid)))
        self._published_memo = None
        self._loaded = True

    async def _unseal(self, kid: str, alg: str, sealed: bytes) -> PrivateKey:
        der = await self._barrier.open(PLATFORM, _TABLE, kid, _FIELD, sealed)
        try:
            private = serialization.load_der_private_key(der, password=None)
        except (ValueError, TypeError):
            raise _corrupt(kid, "sealed key is not PKCS#8") from None
        finally:
            del der
        if alg == "ES256" and isinstance(private, ec.EllipticCurvePrivateKey):
            if isinstance(private.curve, ec.SECP256R1):
                return private
        if alg == "EdDSA" and isinstance(private, ed25519.Ed25519PrivateKey):
            return private
        raise _corrupt(kid, "key type does not match alg")

    def _checked_key(
        self,
        kid: str,
        alg: str,
        public_jwk: str,
        private: PrivateKey,
        create: dt.datetime,
        publish: dt.datetime,
        activate: dt.datetime,
        taint: dt.datetime | None,
    ) -> _Key:
        # Derive the public JWK from the private key; the stored copy must agree.
        public = public_jwk_from_key(private.public_key())
        if thumbprint(public) != kid:
            raise _corrupt(kid, "kid is not the key's thumbprint")
        jwk = {**public, "kid": kid, "alg": alg, "use": "sig"}
        try:
            stored = json.loads(public_jwk)
        except ValueError:
            stored = None
        if stored != jwk:
            raise _corrupt(kid, "stored public JWK does not match the private key")
        checked_alg: Algorithm = "ES256" if alg == "ES256" else "EdDSA"
        return _Key(kid, checked_alg, jwk, create, publish, activate, taint, private)

    # ------------------------------------------------------------- mutations

    @asynccontextmanager
    async def _locked(self) -> AsyncIterator[PlatformTx]:
        """A platform transaction holding the deployment-wide signing-key lock."""
        async with self._db.platform_tx() as tx:
            await tx.signing_keys.lock()
            yield tx

    async def _times(self, tx: PlatformTx) -> list[_Times]:
        return await tx.signing_keys.times()

    async def _create(self, tx: PlatformTx, *, publish: dt.datetime, activate: dt.datetime) -> str:
        private = _generate(self._algorithm)
        public = public_jwk_from_key(private.public_key())
        kid = thumbprint(public)
        jwk = {**public, "kid": kid, "alg": self._algorithm, "use": "sig"}
        der = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            sealed = await self._barrier.seal(PLATFORM, _TABLE, kid, _FIELD, der, tx=tx)
        finally:
            del der
        await tx.signing_keys.insert(
            KeyRow(
                kid=kid,
                alg=self._algorithm,
                public_jwk=json.dumps(jwk, sort_keys=True, separators=(",", ":")),
                sealed_private_key=sealed,
                create_time=self._clock.now(),
                publish_time=publish,
                activate_time=activate,
                taint_time=None,
            )
        )
        return kid

    async def ensure_initial_key(self) -> str | None:
        """Bootstrap: when nothing can sign now, create a key published and active at once.

        Publishing ahead is pointless here - no verifier can have cached a JWKS
        that predates the first key. Also covers "only pending keys exist".
        Returns the new kid, or None when a signer already exists.
        """
        async with self._locked() as tx:
            now = self._clock.now()
            kid = None
            if lifecycle.active_signer(await self._times(tx), now) is None:
                kid = await self._create(tx, publish=now, activate=now)
        await self.load()
        return kid

    async def rotate(self) -> str:
        """Add the next key: published now (by every replica within ``publish_lag``),
        signing ``publish_lag`` + one JWKS cache TTL from now."""
        async with self._locked() as tx:
            now = self._clock.now()
            kid = await self._create(tx, publish=now, activate=now + self._activation_delay)
        await self.load()
        return kid

    async def maybe_rotate(self, interval: dt.timedelta) -> str | None:
        """Scheduled rotation: rotate when the newest key activated >= ``interval`` ago.

        Does nothing while a key is pending, or when there are no untainted keys
        (that is :meth:`ensure_initial_key`'s job). The check runs under the
        lock, so replicas calling this together rotate once.
        """
        async with self._locked() as tx:
            now = self._clock.now()
            live = [t for t in await self._times(tx) if not lifecycle.is_tainted(t, now)]
            newest = max(live, key=lambda t: (t.activate_time, t.kid), default=None)
            if (
                newest is None
                or newest.activate_time > now
                or now - newest.activate_time < interval
            ):
                kid = None
            else:
                kid = await self._create(tx, publish=now, activate=now + self._activation_delay)
        if kid is not None:
            await self.load()
        return kid

    async def taint(self, kid: str) -> None:
        """Emergency removal: the key leaves the JWKS and stops signing at once.

        If it was the active signer and nothing else can sign, a replacement is
        created that is published *and* active immediately. That skips the
        publish-ahead rule on purpose: availability beats the refetch it costs,
        because verifiers (our TokenValidator included) refetch the JWKS when
        they meet an unknown kid. Tainting an already tainted key is a no-op.
        """
        async with self._locked() as tx:
            now = self._clock.now()
            times = await self._times(tx)
            target = next((t for t in times if t.kid == kid), None)
            if target is None:
                raise NotFound("signing key not found")
            if not lifecycle.is_tainted(target, now):
                signer = lifecycle.active_signer(times, now)
                await tx.signing_keys.taint(kid, now)
                after = [replace(t, taint_time=now) if t.kid == kid else t for t in times]
                if (
                    signer is not None
                    and signer.kid == kid
                    and lifecycle.active_signer(after, now) is None
                ):
                    await self._create(tx, publish=now, activate=now)
        await self.load()

    async def prune(self) -> list[str]:
        """Delete keys whose publication has ended (see :func:`lifecycle.prunable`)."""
        async with self._locked() as tx:
            now = self._clock.now()
            ended = lifecycle.prunable(await self._times(tx), now, self._max_token_ttl)
            if ended:
                await tx.signing_keys.delete(ended)
        await self.load()
        return ended

    # ------------------------------------------------------------- reading

    def _require_loaded(self) -> None:
        if not self._loaded:
            raise Internal(reason="SIGNING_KEYS_NOT_LOADED", debug="load() was never called")

    def _published(self, now: dt.datetime) -> list[_Key]:
        keys = self._keys
        return [k for k in keys if lifecycle.is_published(k, keys, now, self._max_token_ttl)]

    def _published_forms(self) -> tuple[str, JwkSet | None]:
        published = self._published(self._clock.now())
        kids = tuple(k.kid for k in published)
        memo = self._published_memo
        if memo is None or memo[0] != kids:
            body = {"keys": [dict(k.public_jwk) for k in published]}
            text_form = json.dumps(body, sort_keys=True, separators=(",", ":"))
            key_set = load_jwks(body) if published else None
            memo = self._published_memo = (kids, text_form, key_set)
        return memo[1], memo[2]

    def jwks(self) -> dict[str, Any]:
        """RFC 7517 §5 key set of the keys published now, ordered by activate_time."""
        self._require_loaded()
        return {"keys": [dict(k.public_jwk) for k in self._published(self._clock.now())]}

    def jwks_json(self) -> str:
        """:meth:`jwks` as canonical JSON: HTTP and gRPC serve these exact bytes."""
        self._require_loaded()
        return self._published_forms()[0]

    def verification_keys(self) -> JwkSet:
        """The published keys, validated once, for in-process ``verify_compact``."""
        self._require_loaded()
        key_set = self._published_forms()[1]
        if key_set is None:
            raise Internal(reason="SIGNING_KEY_UNAVAILABLE", debug="no published key")
        return key_set

    def sign(self, claims: Mapping[str, Any], *, typ: str = "at+jwt") -> str:
        """Compact JWS over ``claims`` by the key active now; header {alg, kid, typ}."""
        self._require_loaded()
        signer = lifecycle.active_signer(self._keys, self._clock.now())
        if signer is None:
            raise Internal(reason="SIGNING_KEY_UNAVAILABLE", debug="no active signing key")
        return _compact_jws(signer, {"alg": signer.alg, "kid": signer.kid, "typ": typ}, claims)

    def keys_summary(self) -> list[KeySummary]:
        """Every loaded key with its state now, for operators. No key material."""
        self._require_loaded()
        now, keys = self._clock.now(), self._keys
        return [
            KeySummary(
                kid=k.kid,
                alg=k.alg,
                state=lifecycle.state(k, keys, now),
                published=lifecycle.is_published(k, keys, now, self._max_token_ttl),
                create_time=k.create_time,
                publish_time=k.publish_time,
                activate_time=k.activate_time,
                retire_time=lifecycle.retire_time(k, keys),
                taint_time=k.taint_time,
            )
            for k in keys
        ]
