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

``python -m control_plane.sandbox kubernetes|spiffe`` runs one from a shell.
"""

from control_plane.sandbox.kubernetes_issuer import KubernetesIssuer
from control_plane.sandbox.spiffe_id import SpiffeId, parse_spiffe_id
from control_plane.sandbox.spiffe_issuer import SpiffeIssuer

__all__ = ["KubernetesIssuer", "SpiffeId", "SpiffeIssuer", "parse_spiffe_id"]
