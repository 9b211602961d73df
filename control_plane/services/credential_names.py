"""Names and input rules shared by the vault's configuration RPCs.

OAuth apps and developer secrets exist for the deployment
(``{collection}/{connector}``, platform admins only) and per org
(``orgs/{org}/{collection}/{connector}``). Secrets are checked as typed:
present, bounded, printable, of the provider's shape; messages never echo them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from control_plane.connectors.loader import Catalog
from control_plane.connectors.model import Connector
from control_plane.domain import names
from control_plane.domain.errors import NotFound, PermissionDenied, field_error
from control_plane.domain.principals import Principal
from control_plane.vault.barrier import PLATFORM, Scope

CONNECTOR_ID = r"[a-z][a-z0-9_]{1,39}"
_HEX = r"[0-9a-f]{32}"
MAX_SECRET = 4096
MAX_CLIENT_ID = 512
PRINTABLE = re.compile(r"^[\x21-\x7e]+$")


def mask(secret: str) -> str:
    """The last four characters behind a fixed mask; nothing of a short secret."""
    return "••••" + (secret[-4:] if len(secret) >= 12 else "")


def check_secret(value: str, field_name: str, *, pattern: str = "") -> str:
    """A secret as typed: present, bounded, printable, and of the provider's shape."""
    if not value:
        raise field_error(field_name, "is required", "FIELD_REQUIRED")
    if len(value.encode()) > MAX_SECRET:
        raise field_error(field_name, f"is longer than {MAX_SECRET} bytes", "FIELD_TOO_LONG")
    if not PRINTABLE.fullmatch(value):
        # The message never echoes the value, nor where the bad character was.
        raise field_error(field_name, "contains whitespace or control characters")
    if pattern and not re.fullmatch(pattern, value):
        raise field_error(field_name, "does not have this provider's key format")
    return value


@dataclass(frozen=True, slots=True)
class CredentialName:
    """``{collection}/{connector}`` (deployment) or ``orgs/{org}/{collection}/{connector}``."""

    org_id: str | None
    connector_id: str


def parse_credential_name(value: str, collection: str, field_name: str = "name") -> CredentialName:
    if not value or len(value) > names.MAX_NAME_LEN:
        raise field_error(field_name, "is required", "FIELD_REQUIRED")
    found = re.fullmatch(rf"(?:orgs/({_HEX})/)?{collection}/({CONNECTOR_ID})", value)
    if not found:
        raise field_error(
            field_name,
            f"must look like {collection}/{{connector}} or orgs/{{org}}/{collection}/{{connector}} "
            f"{names.IDS_ARE}",
            "INVALID_RESOURCE_NAME",
        )
    return CredentialName(found.group(1), found.group(2))


def parse_org_connector(name: str) -> tuple[str, str]:
    """``orgs/{org}/connectors/{connector}`` → (org id, connector id)."""
    if not name or len(name) > names.MAX_NAME_LEN:
        raise field_error("name", "is required", "FIELD_REQUIRED")
    found = re.fullmatch(rf"orgs/({_HEX})/connectors/({CONNECTOR_ID})", name)
    if not found:
        raise field_error(
            "name",
            f"must look like orgs/{{org}}/connectors/{{connector}} {names.IDS_ARE}",
            "INVALID_RESOURCE_NAME",
        )
    return found.group(1), found.group(2)


class CredentialLevels:
    """Who may touch which level: deployment credentials are the platform's."""

    collection: str

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def _resolve(self, principal: Principal, name: str) -> tuple[CredentialName, Scope, Connector]:
        n = parse_credential_name(name, self.collection)
        scope: Scope
        if n.org_id is None:
            if not principal.is_platform_admin:
                raise PermissionDenied()
            scope = PLATFORM
        else:
            scope = principal.scope_for(n.org_id)
        c = self.catalog.get(n.connector_id)
        if c is None:
            raise NotFound()
        return n, scope, c

    def _render(self, n: CredentialName) -> str:
        prefix = f"orgs/{n.org_id}/" if n.org_id else ""
        return f"{prefix}{self.collection}/{n.connector_id}"
