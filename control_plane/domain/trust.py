"""Trust-policy rules: what a valid policy looks like and how workload claims match it.

Pure functions; the service layer does the I/O. Modelled on GCP Workload Identity
Federation attribute conditions and AWS IRSA trust policies: a policy names one
issuer and audience, and pins the subject (exactly, by pattern, or by claims), so
an issuer's other workloads are never admitted by accident.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from control_plane.domain.errors import field_error

KINDS = ("WORKLOAD_TOKEN", "PRIVATE_KEY_JWT")


@dataclass(frozen=True, slots=True)
class TrustPolicySpec:
    """A trust policy as requested, before validation."""

    kind: str
    issuer: str = ""
    discovery_url: str = ""
    jwks_json: str = ""
    audience: str = ""
    subject: str = ""
    subject_pattern: str = ""
    claim_equals: dict[str, str] = field(default_factory=dict)
    algorithms: list[str] = field(default_factory=list)
    service_accounts: list[str] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    audiences: list[str] = field(default_factory=list)


EXTERNAL_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"})
DEFAULT_ALGORITHMS = ("RS256", "ES256")
# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")
CLAIM_PATH = re.compile(r"^[A-Za-z0-9_:/-]+(\.[A-Za-z0-9_:/-]+){0,7}$")
AUDIENCE = re.compile(r"^[\x21-\x7e]{1,512}$")
MAX_ITEMS = 64
LOOPBACK_HOSTS = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_scopes(values: list[str], field: str) -> list[str]:
    if len(values) > MAX_ITEMS:
        raise field_error(field, f"at most {MAX_ITEMS} entries")
    for v in values:
        if not SCOPE_TOKEN.fullmatch(v):
            raise field_error(field, "each scope must be an RFC 6749 scope-token")
    return sorted(set(values))


def check_audiences(values: list[str], field: str) -> list[str]:
    if not values:
        raise field_error(field, "at least one audience is required", "FIELD_REQUIRED")
    if len(values) > MAX_ITEMS:
        raise field_error(field, f"at most {MAX_ITEMS} entries")
    for v in values:
        if not AUDIENCE.fullmatch(v) or "*" in v:
            raise field_error(field, "audiences are exact printable strings, no wildcards")
    return sorted(set(values))


def check_claim_equals(values: Mapping[str, str], field: str) -> dict[str, str]:
    if len(values) > 16:
        raise field_error(field, "at most 16 conditions")
    for k, v in values.items():
        if not CLAIM_PATH.fullmatch(k):
            raise field_error(field, "keys are dotted claim paths")
        if not v or len(v) > 256:
            raise field_error(field, "values are 1-256 characters")
    return dict(values)


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """``*`` matches within one ``/``-separated segment, ``**`` across segments."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("^" + "".join(out) + "$")


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """``kubernetes.io.namespace`` → claims["kubernetes.io"]["namespace"].

    Claim names may contain dots themselves (Kubernetes' ``kubernetes.io``), so
    every way of splitting the path is tried. When more than one reading finds a
    value (say a top-level claim literally named ``kubernetes.io.namespace`` next
    to the nested one), the path is ambiguous and matches nothing.
    """
    found = _resolve(claims, path.split("."))
    return found[0] if len(found) == 1 else None


def _resolve(node: Any, parts: list[str]) -> list[Any]:
    if not parts:
        return [node]
    if not isinstance(node, Mapping):
        return []
    out: list[Any] = []
    for j in range(1, len(parts) + 1):
        key = ".".join(parts[:j])
        if key in node:
            out += _resolve(node[key], parts[j:])
    return out


def subject_matches(
    claims: Mapping[str, Any],
    subject: str,
    pattern: re.Pattern[str] | None,
    equals: Mapping[str, str],
) -> bool:
    """All of the policy's conditions hold (a policy always has at least one)."""
    sub = claims.get("sub")
    if not isinstance(sub, str):
        return False
    if subject and sub != subject:
        return False
    if pattern is not None and not pattern.fullmatch(sub):
        return False
    return claims_equal(claims, equals)


def claims_equal(claims: Mapping[str, Any], equals: Mapping[str, str]) -> bool:
    """Every dotted claim path in ``equals`` holds exactly that string."""
    for path, expected in equals.items():
        value = claim_at(claims, path)
        if not isinstance(value, str) or value != expected:
            return False
    return True
