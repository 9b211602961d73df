"""A loopback emulator of the Kubernetes service-account token issuer.

This is a test emulator, not an identity provider: it signs any identity it is
asked for. It mirrors what a kube-apiserver exposes for service-account issuer
discovery (``--service-account-issuer``, KEP-1393) and the projected
service-account tokens it mints through the TokenRequest API (KEP-1205):

* ``GET /.well-known/openid-configuration`` - the discovery document with the
  five members the API server publishes, ``application/json``.
* ``GET /openid/v1/jwks`` - the public verification keys, served as
  ``application/jwk-set+json`` with ``use: sig``, ``alg`` and a ``kid`` derived
  from the key exactly like the API server does. Both responses carry
  ``Cache-Control: public, max-age=3600`` as the API server's do.
* Tokens have the projected layout: ``aud`` always a list, ``iat``/``nbf``/
  ``exp``, ``iss``, ``jti``, ``sub`` = ``system:serviceaccount:<ns>:<name>``
  and the private ``kubernetes.io`` claim naming the namespace, the service
  account (and pod / node when bound) with their UIDs. Header: alg, kid, typ.

Differences from a real cluster, on purpose: any ``ttl`` is accepted (the API
server refuses ``expirationSeconds`` below 600 and caps long ones), there is no
TokenReview (so, as with any offline JWKS check, deleting the bound pod does not
invalidate its token), and legacy Secret-based tokens are not emulated.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from control_plane.sandbox._jose import IssuerKey, compact_jws, der_sha256_kid, generate_key, merge
from control_plane.sandbox._loopback import LoopbackServer, json_response

__all__ = ["DISCOVERY_PATH", "JWKS_PATH", "KubernetesIssuer"]

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"
#: The API server picks the JWS alg from the key: RSA -> RS256, ECDSA by curve.
ALGORITHMS = ("RS256", "ES256", "ES384", "ES512")
_CACHE_CONTROL = {"Cache-Control": "public, max-age=3600"}
#: Namespaces are DNS-1123 labels, service-account and pod names DNS-1123 subdomains.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _check_name(kind: str, value: str, pattern: re.Pattern[str], max_len: int) -> None:
    if not isinstance(value, str) or len(value) > max_len or not pattern.fullmatch(value):
        raise ValueError(f"{kind} {value!r} is not a valid Kubernetes name")


class KubernetesIssuer(LoopbackServer):
    """Service-account issuer discovery + projected token minting on loopback.

    ``async with KubernetesIssuer() as iss`` serves on ``127.0.0.1:<free port>``
    and, unless ``issuer`` was given, makes ``iss.issuer`` that URL. Giving an
    issuer such as ``https://kubernetes.default.svc.cluster.local`` mirrors a
    cluster whose issuer name is not where its keys are fetched from; the
    discovery document then still says ``jwks_uri = issuer + /openid/v1/jwks``
    and ``iss.url`` is where the emulator actually listens.
    """

    _fault_paths = frozenset({DISCOVERY_PATH, JWKS_PATH})

    def __init__(
        self,
        *,
        issuer: str | None = None,
        algorithm: str = "RS256",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"Kubernetes signs with one of {ALGORITHMS}, not {algorithm!r}")
        super().__init__()
        self.algorithm = algorithm
        self._issuer = issuer
        self._clock = clock
        self._keys: list[IssuerKey] = [self._new_key()]
        self._uids: dict[tuple[str, str, str], str] = {}

    def _new_key(self) -> IssuerKey:
        return generate_key(self.algorithm, kid=der_sha256_kid)

    @property
    def issuer(self) -> str:
        """The ``iss`` of every token and the discovery document's ``issuer``:
        the ``issuer`` given, else the server's URL (known once started)."""
        if self._issuer is not None:
            return self._issuer
        try:
            return self.url
        except RuntimeError:
            raise RuntimeError("no issuer yet: pass issuer= or start the server first") from None

    @property
    def jwks_uri(self) -> str:
        return self.issuer.rstrip("/") + JWKS_PATH

    @property
    def key_id(self) -> str:
        """The kid of the key new tokens are signed with."""
        return self._keys[-1].kid

    def discovery_document(self) -> dict[str, Any]:
        """The API server's ``/.well-known/openid-configuration`` body."""
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.algorithm],
        }

    def jwks(self) -> dict[str, Any]:
        """Every published verification key (the API server's ``/openid/v1/jwks``)."""
        return {"keys": [{"use": "sig", **k.public_jwk(), "alg": k.alg} for k in self._keys]}

    def rotate_key(self) -> str:
        """Sign with a new key from now on; the old one stays published.

        Mirrors rotating ``--service-account-signing-key-file`` while the previous
        public key stays listed in ``--service-account-key-file`` so tokens
        already issued keep verifying. Returns the new kid.
        """
        self._keys.append(self._new_key())
        return self.key_id

    def drop_old_keys(self) -> None:
        """Stop publishing every key but the current one (rotation finished)."""
        del self._keys[:-1]

    def uid(self, kind: str, namespace: str, name: str) -> str:
        """The stable UID of an emulated object, as the cluster would keep it."""
        return self._uids.setdefault((kind, namespace, name), str(uuid.uuid4()))

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """Sign arbitrary ``claims`` with the current key.

        The header starts as ``{alg, kid, typ: "JWT"}``; ``headers`` adds or
        overrides members (``None`` removes one). The signature is always made
        with the real key and algorithm, whatever ``alg`` then claims.
        """
        key = self._keys[-1]
        header = merge({"alg": key.alg, "kid": key.kid, "typ": "JWT"}, headers)
        return compact_jws(key, header, claims)

    def issue(
        self,
        *,
        namespace: str,
        service_account: str,
        audiences: Sequence[str],
        ttl: int = 3600,
        pod: str | None = None,
        node: str | None = None,
        extra_claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A projected service-account token, as TokenRequest returns it.

        An empty ``audiences`` falls back to the issuer, like the API server
        defaulting to its own ``--api-audiences``. ``pod`` / ``node`` add the
        bound-object entries. ``extra_claims`` adds or overrides top-level
        claims (``None`` removes one).
        """
        _check_name("namespace", namespace, _DNS1123_LABEL, 63)
        _check_name("service account", service_account, _DNS1123_SUBDOMAIN, 253)
        if isinstance(audiences, str) or not all(isinstance(a, str) and a for a in audiences):
            raise ValueError("audiences must be a sequence of non-empty strings")
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds")
        private: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {
                "name": service_account,
                "uid": self.uid("ServiceAccount", namespace, service_account),
            },
        }
        if pod is not None:
            _check_name("pod", pod, _DNS1123_SUBDOMAIN, 253)
            private["pod"] = {"name": pod, "uid": self.uid("Pod", namespace, pod)}
        if node is not None:
            _check_name("node", node, _DNS1123_SUBDOMAIN, 253)
            private["node"] = {"name": node, "uid": self.uid("Node", "", node)}
        now = int(self._clock())
        claims = {
            "aud": list(audiences) or [self.issuer],
            "exp": now + ttl,
            "iat": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "nbf": now,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
        }
        return self.sign(merge(claims, extra_claims), headers)

    async def _discovery(self, _: web.Request) -> web.Response:
        return json_response(self.discovery_document(), headers=dict(_CACHE_CONTROL))

    async def _jwks(self, _: web.Request) -> web.Response:
        return json_response(
            self.jwks(), content_type="application/jwk-set+json", headers=dict(_CACHE_CONTROL)
        )

    def _routes(self) -> list[web.RouteDef]:
        return [web.get(DISCOVERY_PATH, self._discovery), web.get(JWKS_PATH, self._jwks)]
