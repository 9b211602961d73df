"""SPIFFE ID parsing, as strict as the SPIFFE-ID specification (SPIFFE-ID.md §2).

"A SPIFFE ID is a URI comprising a "scheme", "trust domain", and "path"", of the
form ``spiffe://<trust domain>/<path>``. The rules enforced here:

* Scheme exactly ``spiffe`` and then ``//``. (The spec calls scheme and trust
  domain case-insensitive but says they "MUST be normalized to lowercase";
  go-spiffe refuses anything else, and so do we.)
* Trust domain: 1-255 characters from ``[a-z0-9.-_]``. That leaves no room for
  userinfo (``@``), a port (``:``) or percent-encoding.
* Path: empty (the trust domain's own ID) or ``/``-separated segments, each
  non-empty, from ``[a-zA-Z0-9.-_]``, and never ``.`` or ``..``; so no trailing
  slash, no query (``?``) and no fragment (``#``).
* At most 2048 bytes in total.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SpiffeId", "parse_spiffe_id", "validate_path", "validate_trust_domain"]

_SCHEME = "spiffe://"
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
_SEGMENT = re.compile(r"[a-zA-Z0-9._-]+")
MAX_ID_BYTES = 2048


@dataclass(frozen=True, slots=True)
class SpiffeId:
    trust_domain: str
    path: str

    def __str__(self) -> str:
        return f"{_SCHEME}{self.trust_domain}{self.path}"


def validate_trust_domain(trust_domain: str) -> str:
    """Return ``trust_domain`` if it is a valid trust domain name, else raise ValueError."""
    if not isinstance(trust_domain, str) or not _TRUST_DOMAIN.fullmatch(trust_domain):
        raise ValueError(
            f"invalid SPIFFE trust domain {trust_domain!r}: want 1-255 chars of [a-z0-9.-_]"
        )
    return trust_domain


def validate_path(path: str) -> str:
    """Return ``path`` if it is a valid SPIFFE ID path ("" or "/seg/..."), else raise."""
    if not isinstance(path, str):
        raise ValueError("SPIFFE ID path must be a string")
    if path == "":
        return path
    if not path.startswith("/"):
        raise ValueError(f"SPIFFE ID path {path!r} must start with '/'")
    for segment in path[1:].split("/"):
        if segment == "":
            raise ValueError(f"SPIFFE ID path {path!r} has an empty segment or trailing '/'")
        if segment in (".", ".."):
            raise ValueError(f"SPIFFE ID path {path!r} has a dot segment")
        if not _SEGMENT.fullmatch(segment):
            raise ValueError(f"SPIFFE ID path segment {segment!r} has a forbidden character")
    return path


def parse_spiffe_id(value: str) -> SpiffeId:
    """Parse and validate a SPIFFE ID; raise ValueError on anything non-conforming."""
    if not isinstance(value, str):
        raise ValueError("SPIFFE ID must be a string")
    if len(value.encode("utf-8")) > MAX_ID_BYTES:
        raise ValueError(f"SPIFFE ID longer than {MAX_ID_BYTES} bytes")
    if not value.startswith(_SCHEME):
        raise ValueError(f"{value!r} is not a SPIFFE ID: scheme must be exactly 'spiffe://'")
    rest = value[len(_SCHEME) :]
    slash = rest.find("/")
    trust_domain, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    return SpiffeId(validate_trust_domain(trust_domain), validate_path(path))
