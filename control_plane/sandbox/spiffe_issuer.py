"""A loopback emulator of a SPIFFE trust domain that issues JWT-SVIDs.

This is a test emulator, not an identity provider: it signs any SPIFFE ID in
its trust domain on request. It mirrors what a SPIRE server hands out and
publishes:

* JWT-SVIDs per the SPIFFE JWT-SVID spec: header ``{alg, kid, typ: "JWT"}``,
  claims ``sub`` (the SPIFFE ID), ``aud`` (a list, at least one value), ``exp``
  and ``iat``; ``iss`` only when an issuer is configured, like SPIRE's
  ``jwt_issuer`` setting. ES256 by default (SPIRE's default JWT key type).
* The trust bundle in its JWKS form (SPIFFE Trust Domain and Bundle §4):
  ``use: jwt-svid`` keys with a ``kid``, an ``x509-svid`` CA entry with ``x5c``
  (which JWT validators must skip), ``spiffe_sequence`` (bumped on every key
  change) and ``spiffe_refresh_hint``. Served at ``GET /bundle`` like a SPIFFE
  bundle endpoint (the "https_web" profile, but plain HTTP on loopback).
* ``GET /keys``: the same JWT keys as a plain JWKS (``use: sig``, ``alg``), for
  consumers that ignore ``use: jwt-svid`` entries (PyJWT's ``PyJWKClient``).
"""

from __future__ import annotations

import base64
import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from control_plane.sandbox._jose import IssuerKey, PrivateKey, compact_jws, generate_key, merge
from control_plane.sandbox._loopback import LoopbackServer, json_response
from control_plane.sandbox.spiffe_id import SpiffeId, validate_path, validate_trust_domain

__all__ = ["BUNDLE_PATH", "KEYS_PATH", "SpiffeIssuer"]

BUNDLE_PATH = "/bundle"
KEYS_PATH = "/keys"
_CA_LIFETIME = dt.timedelta(days=1)


class SpiffeIssuer(LoopbackServer):
    """A trust domain's JWT-SVID signer and bundle endpoint on loopback."""

    _fault_paths = frozenset({BUNDLE_PATH, KEYS_PATH})

    def __init__(
        self,
        trust_domain: str = "example.org",
        *,
        algorithm: str = "ES256",
        clock: Callable[[], float] = time.time,
        issuer: str | None = None,
        refresh_hint: int = 300,
    ) -> None:
        super().__init__()
        self.trust_domain = validate_trust_domain(trust_domain)
        self.algorithm = algorithm
        self.issuer = issuer
        self.refresh_hint = refresh_hint
        self._clock = clock
        self._keys: list[IssuerKey] = [generate_key(algorithm)]
        self._sequence = 1
        self._ca_key = generate_key("ES256")
        self._ca_cert = self._make_x509_authority(self._ca_key.private_key)

    def _make_x509_authority(self, key: PrivateKey) -> x509.Certificate:
        """A self-signed CA like SPIRE's X.509 root: URI SAN = the trust domain ID."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sandbox SPIFFE CA")])
        now = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + _CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(f"spiffe://{self.trust_domain}")]
                ),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )

    @property
    def key_id(self) -> str:
        """The kid of the key new JWT-SVIDs are signed with."""
        return self._keys[-1].kid

    @property
    def sequence(self) -> int:
        return self._sequence

    @property
    def bundle_url(self) -> str:
        return self.url + BUNDLE_PATH

    def spiffe_id(self, path: str) -> str:
        """``spiffe://<trust domain><path>``; ``path`` gets a leading ``/`` if it lacks one."""
        if path and not path.startswith("/"):
            path = "/" + path
        if not validate_path(path):
            raise ValueError("a workload SPIFFE ID needs a non-empty path")
        return str(SpiffeId(self.trust_domain, path))

    def _x509_entry(self) -> dict[str, Any]:
        # X.509 authorities are matched by certificate, not kid: no kid member.
        der = self._ca_cert.public_bytes(serialization.Encoding.DER)
        jwk = merge(self._ca_key.public_jwk(), {"kid": None})
        return {"use": "x509-svid", **jwk, "x5c": [base64.b64encode(der).decode("ascii")]}

    def bundle(self) -> dict[str, Any]:
        """The trust bundle as SPIRE's bundle endpoint serves it."""
        jwt_keys = [{"use": "jwt-svid", **k.public_jwk()} for k in self._keys]
        return {
            "keys": [self._x509_entry(), *jwt_keys],
            "spiffe_sequence": self._sequence,
            "spiffe_refresh_hint": self.refresh_hint,
        }

    def jwks(self) -> dict[str, Any]:
        """The JWT-SVID keys as a plain RFC 7517 JWK Set."""
        return {"keys": [{"use": "sig", **k.public_jwk(), "alg": k.alg} for k in self._keys]}

    def rotate_key(self) -> str:
        """Sign with a new key; the old one stays in the bundle (SPIRE keeps a
        JWT key published until it has expired). Returns the new kid."""
        self._keys.append(generate_key(self.algorithm))
        self._sequence += 1
        return self.key_id

    def drop_old_keys(self) -> None:
        """Remove every key but the current one from the bundle."""
        if len(self._keys) > 1:
            del self._keys[:-1]
            self._sequence += 1

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """Sign arbitrary ``claims``; ``headers`` adds/overrides (``None`` removes)
        header members, but the signature always uses the real key and alg."""
        key = self._keys[-1]
        header = merge({"alg": key.alg, "kid": key.kid, "typ": "JWT"}, headers)
        return compact_jws(key, header, claims)

    def issue(
        self,
        path: str,
        audiences: Sequence[str],
        ttl: int = 300,
        extra_claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A JWT-SVID for ``spiffe://<trust domain><path>``.

        JWT-SVID §3: "The aud claim MUST be present, containing one or more
        values", and ``exp`` "MUST be set". ``extra_claims`` adds or overrides
        claims (``None`` removes one), e.g. a foreign ``sub`` for attack tests.
        """
        subject = self.spiffe_id(path)
        if isinstance(audiences, str) or not audiences:
            raise ValueError("a JWT-SVID needs at least one audience")
        if not all(isinstance(a, str) and a for a in audiences):
            raise ValueError("audiences must be non-empty strings")
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds")
        now = int(self._clock())
        claims: dict[str, Any] = {"aud": list(audiences), "exp": now + ttl, "iat": now}
        if self.issuer is not None:
            claims["iss"] = self.issuer
        claims["sub"] = subject
        return self.sign(merge(claims, extra_claims), headers)

    async def _bundle(self, _: web.Request) -> web.Response:
        return json_response(self.bundle())

    async def _keys_handler(self, _: web.Request) -> web.Response:
        return json_response(self.jwks(), content_type="application/jwk-set+json")

    def _routes(self) -> list[web.RouteDef]:
        return [web.get(BUNDLE_PATH, self._bundle), web.get(KEYS_PATH, self._keys_handler)]
