"""Who is calling. Org scope always comes from here, never from a request field."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from control_plane.domain.errors import NotFound
from control_plane.domain.scope import OrgScope, _for_principal


class Role(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    ORG_ADMIN = "org_admin"
    SERVICE_ACCOUNT = "service_account"  # a caller holding one of our SA tokens
    CONNECT_LINK = "connect_link"  # a browser holding a hosted connect link (one account)


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    key_id: str
    org_id: str | None = None  # set for org-bound principals

    @property
    def is_platform_admin(self) -> bool:
        return self.role is Role.PLATFORM_ADMIN

    @property
    def rate_key(self) -> str:
        """A stable identity for per-principal limits (a credential's id, not its secret)."""
        return f"{self.role.value}:{self.key_id}"

    def scope_for(self, requested_org: str) -> OrgScope:
        """The org scope this principal may act in for a request naming ``requested_org``.

        An org-bound principal naming another org gets exactly the answer a
        missing resource gets, so other orgs' ids cannot be probed.
        """
        if not self.is_platform_admin and self.org_id != requested_org:
            raise NotFound()
        try:
            return _for_principal(requested_org)
        except ValueError:
            raise NotFound() from None

    @property
    def own_scope(self) -> OrgScope:
        """The caller's own org (org-bound principals only)."""
        if self.org_id is None:
            raise NotFound()
        return _for_principal(self.org_id)

    def log_fields(self) -> dict[str, str]:
        fields = {"principal_role": self.role.value, "principal_key": self.key_id}
        if self.org_id:
            fields["principal_org"] = self.org_id
        return fields
