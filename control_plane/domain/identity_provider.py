"""An organization's identity provider: whose ID and access tokens name its users.

Pure rules; the service does the I/O. An org has at most one identity provider,
so a user's subject always belongs to exactly one issuer. Users are matched by
``users.external_id == claims[subject_claim]`` inside the org.

Which claim identifies the user is a small allow-list, not a free path, because
only immutable, issuer-assigned ids are safe to match on (OIDC Core §5.7: "sub"
and "iss" are the only claims a relying party can rely on as a stable
identifier; email and preferred_username are mutable and reassignable):

* ``sub`` - the OIDC subject (Okta ID tokens: the Okta user id ``00u…``);
* ``oid`` - Microsoft Entra's object id, the same for every application of the
  tenant, whereas Entra's ``sub`` is pairwise per application;
* ``uid`` - Okta's user id inside access tokens, whose ``sub`` is the login.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from control_plane.domain.errors import field_error
from control_plane.domain.trust import is_loopback

SUBJECT_CLAIMS = frozenset({"sub", "oid", "uid"})
DEFAULT_SUBJECT_CLAIM = "sub"


@dataclass(frozen=True, slots=True)
class IdentityProviderSpec:
    """An identity provider as requested, before validation."""

    issuer: str = ""
    discovery_url: str = ""
    jwks_json: str = ""
    audience: str = ""
    subject_claim: str = ""
    claim_equals: dict[str, str] = field(default_factory=dict)
    algorithms: list[str] = field(default_factory=list)


def check_issuer(issuer: str, field_name: str) -> str:
    """OIDC Discovery §3: an https URL without query or fragment (http for loopback).

    An identifier compared with ``iss``, never fetched: the keys come from
    ``discovery_url`` (checked by :class:`~control_plane.domain.outbound.OutboundPolicy`)
    or a static ``jwks_json``.
    """
    if not issuer:
        raise field_error(field_name, "is required", "FIELD_REQUIRED")
    if len(issuer) > 2048:
        raise field_error(field_name, "is too long", "FIELD_TOO_LONG")
    parts = urlsplit(issuer)
    host = parts.hostname or ""
    if parts.username or parts.password or not host:
        raise field_error(field_name, "must be an absolute URL without credentials")
    if not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(host))):
        raise field_error(field_name, "must use https (http only for loopback hosts)")
    if parts.query or parts.fragment:
        raise field_error(field_name, "must not have a query or fragment")
    return issuer


def check_subject_claim(value: str, field_name: str) -> str:
    claim = value or DEFAULT_SUBJECT_CLAIM
    if claim not in SUBJECT_CLAIMS:
        raise field_error(field_name, f"must be one of {', '.join(sorted(SUBJECT_CLAIMS))}")
    return claim
