"""Loopback emulators of two OpenID Connect identity providers: Okta and Microsoft Entra ID.

These are test emulators, not identity providers: there is no sign-in, no
authorization or token endpoint; they sign an ID token or access token for any
user they are asked for. What they reproduce is what a relying party checks -
the discovery document, the JWKS, and the claim layouts that differ between
the two vendors:

* :class:`OktaIdentityProvider` - an Okta custom authorization server named
  ``default``: ``iss`` = ``{url}/oauth2/default`` (the shape in
  standards_peers.md §2.2, ``https://{yourOktaDomain}/oauth2/default``), keys at
  ``{iss}/v1/keys``. ID tokens have ``aud`` = the OIDC client id and ``sub`` =
  the Okta user id. Access tokens have ``aud`` = ``api://default``, ``cid`` =
  the client id, ``uid`` = the user id and ``scp`` as a JSON array
  (standards_peers.md §2.2: "``sub`` = user, ``uid``, ``cid`` = API1's client
  id, ``scp`` as an array, and no ``act`` claim"), ``ver: 1``. Their ``sub`` is
  the user's login (Okta's default access-token subject; from Okta's token
  reference, not re-verified here), which is why an IdP configured for Okta
  access tokens matches users on ``uid``.
* :class:`EntraIdentityProvider` - a Microsoft Entra ID tenant's v2.0
  endpoint: ``iss`` = ``{url}/{tid}/v2.0``, keys at
  ``{url}/{tid}/discovery/v2.0/keys``. Tokens carry ``tid`` and ``oid``
  (provider_quirks.md: the Entra ``id_token`` has ``tid``, ``oid`` [M4]; OBO
  tokens carry ``oid``, ``upn``, ``sub``, ``scp`` - standards_peers.md §2.1),
  ``ver: "2.0"`` and ``preferred_username``. ``sub`` is pairwise: the same
  user has a different ``sub`` for every application (Microsoft's ID-token
  claims reference, not re-verified here), so only ``oid`` identifies a user
  across applications; access tokens have ``scp`` as a space-separated string
  and ``azp`` = the calling client.

Both sign RS256 by default with a random ``kid``, publish ``use: sig`` keys and
count requests with fault injection like the other sandbox issuers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from control_plane.sandbox._jose import IssuerKey, b64url, compact_jws, generate_key, merge
from control_plane.sandbox._loopback import LoopbackServer, json_response

__all__ = ["EntraIdentityProvider", "OktaIdentityProvider", "OKTA_API_AUDIENCE"]

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
OKTA_AUTH_SERVER = "/oauth2/default"
#: The default custom authorization server's audience for access tokens.
OKTA_API_AUDIENCE = "api://default"
_ALNUM = string.ascii_letters + string.digits


def _okta_id(prefix: str) -> str:
    """Okta object ids: a 3-character type prefix (``00u`` users, ``0oa`` apps) + 17."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(17))


class _OidcProvider(LoopbackServer):
    """Keys, discovery and JWKS; subclasses give paths, header shape and claims."""

    _discovery_path: str
    _jwks_path: str
    _typ: str | None = None  # the ``typ`` header the vendor puts on its tokens

    def __init__(self, *, algorithm: str = "RS256", clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.algorithm = algorithm
        self._clock = clock
        self._keys: list[IssuerKey] = [generate_key(algorithm)]
        self._fault_paths = frozenset({self._discovery_path, self._jwks_path})

    @property
    def issuer(self) -> str:
        raise NotImplementedError

    @property
    def discovery_url(self) -> str:
        return self.url + self._discovery_path

    @property
    def jwks_uri(self) -> str:
        return self.url + self._jwks_path

    @property
    def key_id(self) -> str:
        return self._keys[-1].kid

    def rotate_key(self) -> str:
        """Sign with a new key from now on; the old one stays published."""
        self._keys.append(generate_key(self.algorithm))
        return self.key_id

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**k.public_jwk(), "use": "sig", "alg": k.alg} for k in self._keys]}

    def discovery_document(self) -> dict[str, Any]:
        raise NotImplementedError

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """Sign arbitrary ``claims``; ``headers`` overrides the header (``None`` removes)."""
        key = self._keys[-1]
        base: dict[str, Any] = {"kid": key.kid, "alg": key.alg}
        if self._typ is not None:
            base["typ"] = self._typ
        return compact_jws(key, merge(base, headers), claims)

    def _times(self, ttl: int) -> dict[str, int]:
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds")
        now = int(self._clock())
        return {"iat": now, "exp": now + ttl}

    async def _discovery(self, _: web.Request) -> web.Response:
        return json_response(self.discovery_document())

    async def _jwks(self, _: web.Request) -> web.Response:
        return json_response(self.jwks())

    def _routes(self) -> list[web.RouteDef]:
        return [
            web.get(self._discovery_path, self._discovery),
            web.get(self._jwks_path, self._jwks),
        ]


class OktaIdentityProvider(_OidcProvider):
    """Okta's ``default`` custom authorization server on loopback."""

    _discovery_path = OKTA_AUTH_SERVER + DISCOVERY_SUFFIX
    _jwks_path = OKTA_AUTH_SERVER + "/v1/keys"

    def __init__(
        self,
        *,
        client_id: str | None = None,
        algorithm: str = "RS256",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(algorithm=algorithm, clock=clock)
        self.client_id = client_id or _okta_id("0oa")
        self._users: dict[str, str] = {}

    @property
    def issuer(self) -> str:
        return self.url + OKTA_AUTH_SERVER

    def user_id(self, login: str) -> str:
        """The stable Okta user id (``00u…``) of ``login``: the ID token's ``sub``."""
        return self._users.setdefault(login, _okta_id("00u"))

    def discovery_document(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/v1/authorize",
            "token_endpoint": self.issuer + "/v1/token",
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["code", "id_token", "code id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.algorithm],
            "grant_types_supported": [
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ],
        }

    def id_token(
        self,
        login: str,
        *,
        ttl: int = 3600,
        name: str = "",
        extra_claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """An ID token for ``login``: ``aud`` = the client id, ``sub`` = the user id."""
        claims = {
            "sub": self.user_id(login),
            "name": name or login,
            "email": login,
            "ver": 1,
            "iss": self.issuer,
            "aud": self.client_id,
            **self._times(ttl),
            "jti": "ID." + secrets.token_urlsafe(15),
            "amr": ["pwd"],
            "idp": _okta_id("00o"),
            "preferred_username": login,
            "auth_time": int(self._clock()),
        }
        return self.sign(merge(claims, extra_claims), headers)

    def access_token(
        self,
        login: str,
        *,
        scopes: Sequence[str] = ("openid", "profile"),
        ttl: int = 3600,
        audience: str = OKTA_API_AUDIENCE,
        extra_claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """An access token: ``aud`` = ``api://default``, ``cid``, ``uid``, ``scp`` list."""
        claims = {
            "ver": 1,
            "jti": "AT." + secrets.token_urlsafe(30),
            "iss": self.issuer,
            "aud": audience,
            **self._times(ttl),
            "cid": self.client_id,
            "uid": self.user_id(login),
            "scp": list(scopes),
            "auth_time": int(self._clock()),
            "sub": login,
        }
        return self.sign(merge(claims, extra_claims), headers)


class EntraIdentityProvider(_OidcProvider):
    """One Microsoft Entra ID tenant's v2.0 endpoint on loopback."""

    _typ = "JWT"

    def __init__(
        self,
        *,
        tenant_id: str | None = None,
        client_id: str | None = None,
        algorithm: str = "RS256",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self._discovery_path = f"/{self.tenant_id}/v2.0{DISCOVERY_SUFFIX}"
        self._jwks_path = f"/{self.tenant_id}/discovery/v2.0/keys"
        super().__init__(algorithm=algorithm, clock=clock)
        self.client_id = client_id or str(uuid.uuid4())
        self._oids: dict[str, str] = {}
        self._pairwise_salt = secrets.token_bytes(32)

    @property
    def issuer(self) -> str:
        return f"{self.url}/{self.tenant_id}/v2.0"

    def object_id(self, upn: str) -> str:
        """The user's ``oid``: one id across every application of the tenant."""
        return self._oids.setdefault(upn, str(uuid.uuid4()))

    def pairwise_sub(self, upn: str, app_id: str) -> str:
        """The user's ``sub`` as application ``app_id`` sees it (43 base64url chars)."""
        msg = f"{app_id}:{self.object_id(upn)}".encode()
        return b64url(hmac.new(self._pairwise_salt, msg, hashlib.sha256).digest())

    def discovery_document(self) -> dict[str, Any]:
        base = f"{self.url}/{self.tenant_id}/oauth2/v2.0"
        return {
            "issuer": self.issuer,
            "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/token",
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": [self.algorithm],
        }

    def _user_claims(self, upn: str, app_id: str, ttl: int) -> dict[str, Any]:
        times = self._times(ttl)
        return {
            "aud": self.client_id,
            "iss": self.issuer,
            "iat": times["iat"],
            "nbf": times["iat"],
            "exp": times["exp"],
            "oid": self.object_id(upn),
            "preferred_username": upn,
            "sub": self.pairwise_sub(upn, app_id),
            "tid": self.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "2.0",
        }

    def id_token(
        self,
        upn: str,
        *,
        ttl: int = 3600,
        name: str = "",
        extra_claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A v2.0 ID token for the app ``client_id``."""
        claims = {**self._user_claims(upn, self.client_id, ttl), "name": name or upn}
        return self.sign(merge(claims, extra_claims), headers)

    def access_token(
        self,
        upn: str,
        *,
        scopes: Sequence[str] = ("access_as_user",),
        client_app: str | None = None,
        ttl: int = 3600,
        extra_claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """A v2.0 access token for the API app ``client_id``, requested by ``client_app``."""
        claims = {
            **self._user_claims(upn, self.client_id, ttl),
            "azp": client_app or str(uuid.uuid4()),
            "scp": " ".join(scopes),
        }
        return self.sign(merge(claims, extra_claims), headers)
