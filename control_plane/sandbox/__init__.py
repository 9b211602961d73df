"""Loopback emulators of external identity systems, for tests and local trials.

These are test emulators, not identity providers: each one holds signing keys
that mint a token for any identity it is asked for, listens on a loopback
address only, and keeps its keys in memory. They reproduce the real wire
formats (discovery documents, JWKS / trust bundles, token claim layouts) so
that agentauth's workload trust policies are exercised against realistic
tokens, plus fault injection and request counters for testing caching and
retries.

* :class:`KubernetesIssuer` - service-account issuer discovery and projected
  service-account tokens, as a kube-apiserver serves and mints them.
* :class:`SpiffeIssuer` - SPIFFE JWT-SVIDs and the trust bundle, as a SPIRE
  server issues and publishes them.
* :class:`OktaIdentityProvider` / :class:`EntraIdentityProvider` - OIDC
  discovery, JWKS and the ID-token / access-token claim layouts of an Okta
  custom authorization server and a Microsoft Entra ID v2.0 tenant, for an
  org's identity provider (user assertions).
* :class:`SandboxProvider` - the OAuth 2.0 authorization server and resource
  API of any ``oauth2`` connector of the catalog, with each provider's token
  replies, refresh-token rotation and error bodies, for connected accounts.
* :class:`SandboxApiKeyProvider` - the API of a connector authenticated by a key
  (Stripe BYOK, OpenWeatherMap and Brave Search developer secrets), with each
  provider's key check, bodies and documented errors.

``python -m control_plane.sandbox kubernetes|spiffe|okta|entra|oauth|key`` runs one from a
shell.
"""

from control_plane.sandbox.api_key_provider import SandboxApiKeyProvider
from control_plane.sandbox.kubernetes_issuer import KubernetesIssuer
from control_plane.sandbox.oauth_provider import SandboxProvider
from control_plane.sandbox.oidc_idp import EntraIdentityProvider, OktaIdentityProvider
from control_plane.sandbox.spiffe_id import SpiffeId, parse_spiffe_id
from control_plane.sandbox.spiffe_issuer import SpiffeIssuer

__all__ = [
    "EntraIdentityProvider",
    "KubernetesIssuer",
    "OktaIdentityProvider",
    "SandboxApiKeyProvider",
    "SandboxProvider",
    "SpiffeId",
    "SpiffeIssuer",
    "parse_spiffe_id",
]
