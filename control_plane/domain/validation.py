"""Input rules shared by every use case. Pure: no I/O."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Any

from control_plane.domain.errors import field_error

MAX_DISPLAY_NAME = 200
MAX_DESCRIPTION = 2000
MAX_EXTERNAL_ID = 255
MAX_EMAIL = 320
MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
PURPOSE_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
EXTERNAL_ID_RE = re.compile(r"^[\x21-\x7e]{1,255}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
#: A group a user is in (tool policy rules can apply per group): lower case, so
#: "Admins" and "admins" cannot be two groups that look alike in a console.
GROUP_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_GROUPS = 64


def _no_control_chars(value: str) -> bool:
    return not any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co"} for ch in value)


def text(
    value: str, field: str, *, max_len: int, required: bool = False, allow_newlines: bool = False
) -> str:
    """A human-readable string: bounded, no control characters, trimmed."""
    if value != value.strip():
        raise field_error(field, "must not start or end with whitespace")
    if required and not value:
        raise field_error(field, "is required", "FIELD_REQUIRED")
    if len(value) > max_len:
        raise field_error(field, f"must be at most {max_len} characters", "FIELD_TOO_LONG")
    check = value.replace("\n", "") if allow_newlines else value
    if not _no_control_chars(check):
        raise field_error(field, "must not contain control characters")
    return value


def display_name(value: str, field: str = "display_name", *, required: bool = True) -> str:
    return text(value, field, max_len=MAX_DISPLAY_NAME, required=required)


def external_id(value: str, field: str = "user.external_id") -> str:
    if not value:
        raise field_error(field, "is required", "FIELD_REQUIRED")
    if len(value) > MAX_EXTERNAL_ID:
        raise field_error(field, f"must be at most {MAX_EXTERNAL_ID} characters", "FIELD_TOO_LONG")
    if not EXTERNAL_ID_RE.fullmatch(value):
        raise field_error(field, "must be printable ASCII without spaces")
    return value


def email(value: str, field: str = "user.email") -> str:
    if not value:
        return value
    if len(value) > MAX_EMAIL:
        raise field_error(field, f"must be at most {MAX_EMAIL} characters", "FIELD_TOO_LONG")
    if not EMAIL_RE.fullmatch(value) or not _no_control_chars(value):
        raise field_error(field, "is not an email address")
    return value


def purpose(value: str, field: str = "service_account.purpose") -> str:
    if not value:
        raise field_error(field, "is required", "FIELD_REQUIRED")
    if not PURPOSE_RE.fullmatch(value):
        raise field_error(field, "must be lowercase letters, digits and '-', at most 63")
    return value


def groups(values: list[str], field: str) -> list[str]:
    """Group names (GROUP_RE), at most MAX_GROUPS: sorted, without duplicates."""
    if len(values) > MAX_GROUPS:
        raise field_error(field, f"at most {MAX_GROUPS} groups")
    for value in values:
        if not GROUP_RE.fullmatch(value):
            raise field_error(
                field, "a group is 1-63 of [a-z0-9._-], starting with a letter or digit"
            )
    return sorted(set(values))


def request_id(value: str, field: str = "request_id") -> str | None:
    """Optional idempotency key; None when absent."""
    if not value:
        return None
    if not REQUEST_ID_RE.fullmatch(value):
        raise field_error(field, "must be 1-64 characters of [A-Za-z0-9._:-]")
    return value


def page_size(value: int, field: str = "page_size") -> int:
    """AIP-158: 0 → default; larger than the maximum → the maximum; negative → error."""
    if value < 0:
        raise field_error(field, "must not be negative")
    if value == 0:
        return DEFAULT_PAGE_SIZE
    return min(value, MAX_PAGE_SIZE)


def fingerprint(payload: dict[str, Any]) -> str:
    """Stable digest of a create request, to tell a retry from a conflicting reuse."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
