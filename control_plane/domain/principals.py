"""Who is calling. Org scope always comes from here, never from a request field."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from control_plane.domain.errors import NotFound


class Role(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    ORG_ADMIN = "org_admin"
    SERVICE_ACCOUNT = "service_account"  # a caller holding one of our SA tokens


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    key_id: str
    org_id: str | None = None  # set for org-bound principals

    @property
    def is_platform_admin(self) -> bool:
        return self.role is Role.PLATFORM_ADMIN

    def scope_for(self, requested_org: str) -> str:
        """The org this principal may act in for a request naming ``requested_org``.

        An org-bound principal naming another org gets exactly the answer a
        missing resource gets, so other orgs' ids cannot be probed.
        """
        if self.is_platform_admin:
            return requested_org
        if self.org_id != requested_org:
            raise NotFound()
        return requested_org

    def log_fields(self) -> dict[str, str]:
        fields = {"principal_role": self.role.value, "principal_key": self.key_id}
        if self.org_id:
            fields["principal_org"] = self.org_id
        return fields
