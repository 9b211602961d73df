"""Resource names (AIP-122): ``orgs/{org}``, ``orgs/{org}/users/{user}``, ``apiKeys/{key}`` …

Parsing is strict: a name that is not exactly the expected pattern with 32-hex
ids is INVALID_ARGUMENT (reason INVALID_RESOURCE_NAME), before any storage access.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from control_plane.domain.errors import field_error

_HEX = r"[0-9a-f]{32}"
MAX_NAME_LEN = 256
#: Appended to every "must look like" message: a newcomer's first guess is a slug
#: (``orgs/acme``), and the pattern alone does not say that ids are not chosen.
IDS_ARE = "(ids are 32 lower-case hex characters, as the server returned them)"

COLLECTIONS = {
    "users": "users",
    "agents": "agents",
    "serviceAccounts": "serviceAccounts",
    "apiKeys": "apiKeys",
}


@dataclass(frozen=True, slots=True)
class OrgChildName:
    org_id: str
    collection: str
    id: str

    def __str__(self) -> str:
        return f"orgs/{self.org_id}/{self.collection}/{self.id}"


def _check(value: str, field: str) -> None:
    if not value:
        raise field_error(field, "is required", "FIELD_REQUIRED")
    if len(value) > MAX_NAME_LEN:
        raise field_error(field, "is too long", "INVALID_RESOURCE_NAME")


def org_name(org_id: str) -> str:
    return f"orgs/{org_id}"


def child_name(org_id: str, collection: str, id_: str) -> str:
    return f"orgs/{org_id}/{collection}/{id_}"


def platform_key_name(id_: str) -> str:
    return f"apiKeys/{id_}"


def parse_org(value: str, field: str = "name") -> str:
    """``orgs/{org}`` → org id."""
    _check(value, field)
    m = re.fullmatch(rf"orgs/({_HEX})", value)
    if not m:
        raise field_error(field, f"must look like orgs/{{org}} {IDS_ARE}", "INVALID_RESOURCE_NAME")
    return m.group(1)


def parse_child(value: str, collection: str, field: str = "name") -> OrgChildName:
    """``orgs/{org}/{collection}/{id}`` → parts."""
    _check(value, field)
    m = re.fullmatch(rf"orgs/({_HEX})/{re.escape(collection)}/({_HEX})", value)
    if not m:
        raise field_error(
            field,
            f"must look like orgs/{{org}}/{collection}/{{id}} {IDS_ARE}",
            "INVALID_RESOURCE_NAME",
        )
    return OrgChildName(m.group(1), collection, m.group(2))


def parse_platform_key(value: str, field: str = "name") -> str:
    _check(value, field)
    m = re.fullmatch(rf"apiKeys/({_HEX})", value)
    if not m:
        raise field_error(
            field, f"must look like apiKeys/{{key}} {IDS_ARE}", "INVALID_RESOURCE_NAME"
        )
    return m.group(1)


def is_hex_id(value: str) -> bool:
    return bool(re.fullmatch(_HEX, value))


def policy_name(org_id: str, agent_id: str, policy_id: str) -> str:
    return f"orgs/{org_id}/agents/{agent_id}/trustPolicies/{policy_id}"
